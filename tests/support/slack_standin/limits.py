"""Block Kit and modal limits the stand-in enforces, as Slack documents them.

`block_errors` and `view_errors` return Slack-style messages
("must be at most 3000 characters [json-pointer:/blocks/0/text/text]"); an empty
list means valid. They check shape and the documented size limits, not rendering.
"""

from __future__ import annotations

from typing import Any

MESSAGE_MAX_BLOCKS = 50
VIEW_MAX_BLOCKS = 100
MESSAGE_TEXT_MAX = 40_000
MARKDOWN_TEXT_MAX = 12_000

KNOWN_BLOCKS = frozenset(
    {
        "actions",
        "context",
        "context_actions",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "plan",
        "rich_text",
        "section",
        "table",
        "task_card",
        "video",
    }
)
TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})


def _text(obj: Any, pointer: str, errors: list[str], *, limit: int, plain: bool = False) -> None:
    if not isinstance(obj, dict):
        errors.append(f"must be a text object [json-pointer:{pointer}]")
        return
    kind = obj.get("type")
    if kind not in TEXT_TYPES or (plain and kind != "plain_text"):
        wanted = "plain_text" if plain else "plain_text or mrkdwn"
        errors.append(f"must be {wanted} [json-pointer:{pointer}/type]")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        errors.append(f"must be more than 0 characters [json-pointer:{pointer}/text]")
    elif len(text) > limit:
        errors.append(f"must be at most {limit} characters [json-pointer:{pointer}/text]")


def _length(value: Any, pointer: str, errors: list[str], *, limit: int) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        errors.append(f"must be a string [json-pointer:{pointer}]")
    elif len(value) > limit:
        errors.append(f"must be at most {limit} characters [json-pointer:{pointer}]")


def _confirm(obj: Any, pointer: str, errors: list[str]) -> None:
    if obj is None:
        return
    if not isinstance(obj, dict):
        errors.append(f"must be a confirmation dialog [json-pointer:{pointer}]")
        return
    _text(obj.get("title"), f"{pointer}/title", errors, limit=100, plain=True)
    _text(obj.get("text"), f"{pointer}/text", errors, limit=300)
    _text(obj.get("confirm"), f"{pointer}/confirm", errors, limit=30, plain=True)
    _text(obj.get("deny"), f"{pointer}/deny", errors, limit=30, plain=True)


def _element(element: Any, pointer: str, errors: list[str], action_ids: set[str]) -> None:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        errors.append(f"must be an element with a type [json-pointer:{pointer}]")
        return
    action_id = element.get("action_id")
    _length(action_id, f"{pointer}/action_id", errors, limit=255)
    if isinstance(action_id, str):
        if action_id in action_ids:
            errors.append(f"duplicate action_id {action_id!r} [json-pointer:{pointer}/action_id]")
        action_ids.add(action_id)
    if element["type"] == "button":
        _text(element.get("text"), f"{pointer}/text", errors, limit=75, plain=True)
        _length(element.get("value"), f"{pointer}/value", errors, limit=2000)
        _length(element.get("url"), f"{pointer}/url", errors, limit=3000)
        style = element.get("style")
        if style is not None and style not in ("primary", "danger"):
            errors.append(f"must be primary or danger [json-pointer:{pointer}/style]")
        _confirm(element.get("confirm"), f"{pointer}/confirm", errors)


def _block(block: Any, pointer: str, errors: list[str]) -> None:
    if not isinstance(block, dict):
        errors.append(f"must be an object [json-pointer:{pointer}]")
        return
    kind = block.get("type")
    if kind not in KNOWN_BLOCKS:
        errors.append(f"unsupported type {kind!r} [json-pointer:{pointer}/type]")
        return
    action_ids: set[str] = set()
    if kind == "section":
        text, fields = block.get("text"), block.get("fields")
        if text is None and not fields:
            errors.append(f"must have text or fields [json-pointer:{pointer}]")
        if text is not None:
            _text(text, f"{pointer}/text", errors, limit=3000)
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > 10:
                errors.append(f"must be a list of at most 10 items [json-pointer:{pointer}/fields]")
            else:
                for i, item in enumerate(fields):
                    _text(item, f"{pointer}/fields/{i}", errors, limit=2000)
        if block.get("accessory") is not None:
            _element(block["accessory"], f"{pointer}/accessory", errors, action_ids)
    elif kind == "header":
        _text(block.get("text"), f"{pointer}/text", errors, limit=150, plain=True)
    elif kind in ("context", "actions"):
        limit = 10 if kind == "context" else 25
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= limit:
            errors.append(f"must be a list of 1 to {limit} items [json-pointer:{pointer}/elements]")
        elif kind == "context":
            for i, item in enumerate(elements):
                if isinstance(item, dict) and item.get("type") in TEXT_TYPES:
                    _text(item, f"{pointer}/elements/{i}", errors, limit=3000)
        else:
            for i, item in enumerate(elements):
                _element(item, f"{pointer}/elements/{i}", errors, action_ids)
    elif kind == "input":
        _text(block.get("label"), f"{pointer}/label", errors, limit=2000, plain=True)
        if block.get("hint") is not None:
            _text(block["hint"], f"{pointer}/hint", errors, limit=2000, plain=True)
        _element(block.get("element"), f"{pointer}/element", errors, action_ids)
    elif kind == "markdown":
        _length(block.get("text"), f"{pointer}/text", errors, limit=MARKDOWN_TEXT_MAX)
    elif kind == "image":
        _length(block.get("image_url"), f"{pointer}/image_url", errors, limit=3000)
        _length(block.get("alt_text"), f"{pointer}/alt_text", errors, limit=2000)


def block_errors(blocks: Any, *, max_blocks: int = MESSAGE_MAX_BLOCKS) -> list[str]:
    """What is wrong with a message's (or view's) `blocks`; [] when nothing is."""
    if not isinstance(blocks, list):
        return ["must be a list [json-pointer:/blocks]"]
    errors: list[str] = []
    if len(blocks) > max_blocks:
        errors.append(f"must be at most {max_blocks} items [json-pointer:/blocks]")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        pointer = f"/blocks/{i}"
        _block(block, pointer, errors)
        block_id = block.get("block_id") if isinstance(block, dict) else None
        _length(block_id, f"{pointer}/block_id", errors, limit=255)
        if isinstance(block_id, str):
            if block_id in block_ids:
                errors.append(f"duplicate block_id {block_id!r} [json-pointer:{pointer}/block_id]")
            block_ids.add(block_id)
    return errors


def view_errors(view: Any) -> list[str]:
    """What is wrong with a modal view for views.open; [] when nothing is."""
    if not isinstance(view, dict):
        return ["must be an object [json-pointer:/view]"]
    errors: list[str] = []
    if view.get("type") != "modal":
        errors.append("must be modal [json-pointer:/view/type]")
    _text(view.get("title"), "/view/title", errors, limit=24, plain=True)
    for button in ("submit", "close"):
        if view.get(button) is not None:
            _text(view[button], f"/view/{button}", errors, limit=24, plain=True)
    _length(view.get("private_metadata"), "/view/private_metadata", errors, limit=3000)
    _length(view.get("callback_id"), "/view/callback_id", errors, limit=255)
    _length(view.get("external_id"), "/view/external_id", errors, limit=255)
    blocks = view.get("blocks", [])
    errors.extend(
        e.replace("[json-pointer:/blocks", "[json-pointer:/view/blocks")
        for e in block_errors(blocks, max_blocks=VIEW_MAX_BLOCKS)
    )
    has_input = isinstance(blocks, list) and any(
        isinstance(b, dict) and b.get("type") == "input" for b in blocks
    )
    if has_input and view.get("submit") is None:
        errors.append("must provide submit when there are input blocks [json-pointer:/view/submit]")
    return errors
