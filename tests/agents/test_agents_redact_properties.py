"""Properties of redaction that must hold for any text, not just the corpus: it is
idempotent, it only ever replaces spans with markers, secrets planted among ordinary
lines or inside JSON log records vanish while the ordinary lines stay, generated
secrets under secret keys vanish in every syntax, generated ordinary `key=value` lines
pass untouched, and `redact_json` keeps the shape of what it is given."""

from __future__ import annotations

import base64
import json
import string

from hypothesis import given, settings
from hypothesis import strategies as st
from redaction_corpus import LEAKS, ORDINARY, Leak, leaked

from agents.redact import MARKER, find_secrets, redact, redact_json
from agents.redact_rules import is_placeholder

settings.register_profile("redaction", max_examples=150, deadline=None)
settings.load_profile("redaction")

leaks = st.sampled_from(LEAKS)
ordinary = st.sampled_from(ORDINARY)
lines = st.one_of(ordinary, leaks.map(lambda leak: leak.line), st.text(max_size=60))
texts = st.lists(lines, max_size=8).map("\n".join)


@given(texts)
def test_redaction_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@given(st.text(max_size=300))
def test_redaction_is_idempotent_on_any_characters(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@given(texts)
def test_redaction_only_replaces_spans_with_markers(text: str) -> None:
    spans = find_secrets(text)
    edges = [0, *(edge for start, end, _ in spans for edge in (start, end)), len(text)]
    assert edges == sorted(edges)
    kept = [text[a:b] for a, b in zip(edges[::2], edges[1::2], strict=True)]
    markers = [f"[REDACTED:{kind}]" for _, _, kind in spans]
    expected = "".join(piece + marker for piece, marker in zip(kept, markers, strict=False))
    assert redact(text) == expected + kept[-1]
    assert all(any(c.isalnum() for c in text[start:end]) for start, end, _ in spans)
    assert not [
        m for m in MARKER.finditer(text) if any(s < m.end() and m.start() < e for s, e, _ in spans)
    ]


@given(leaks, st.lists(ordinary, max_size=6), st.lists(ordinary, max_size=6))
def test_a_secret_among_ordinary_lines_goes_and_they_stay(
    leak: Leak, before: list[str], after: list[str]
) -> None:
    text = "\n".join([*before, leak.line, *after])
    out = redact(text)
    assert not [s for s in leak.secrets if leaked(text, s, out)]
    assert out.startswith("".join(f"{line}\n" for line in before))
    if "PRIVATE KEY" not in leak.line:  # a key cut off takes the base64 lines that follow
        assert out.endswith("".join(f"\n{line}" for line in after))


def _escaped(secret: str, times: int) -> str:
    for _ in range(times):
        secret = json.dumps(secret)[1:-1]
    return secret


@given(leaks, st.sampled_from(["log", "message", "msg", "MESSAGE"]), st.integers(1, 2))
def test_a_secret_in_a_json_log_record_goes(leak: Leak, key: str, depth: int) -> None:
    record: object = leak.line
    for level in range(depth):
        record = {key: record, "stream": "stdout"} if level == 0 else json.dumps(record)
    text = json.dumps({"kubernetes": {"pod": "geo-6b4b5d8b9c-x2x9z"}, "record": record})
    out = redact(text)
    assert not [s for s in leak.secrets if leaked(text, _escaped(s, depth), out)], out


@given(ordinary, st.sampled_from(["log", "message"]))
def test_an_ordinary_line_in_a_json_log_record_stays(line: str, key: str) -> None:
    text = json.dumps({key: line, "stream": "stderr", "time": "2024-11-25T10:20:30Z"})
    assert redact(text) == text


SECRET_KEYS = [
    "DB_PASS",
    "MYSQL_PWD",
    "PGPASS",
    "PGPASSWORD",
    "HMAC_KEY",
    "password",
    "db.password",
    "client_secret",
    "api_key",
    "apiKey",
    "X-Api-Key",
    "refresh_token",
    "keyStorePassword",
    "SECRET_KEY_BASE",
    "smtp_pass",
    "AWS_SECRET_ACCESS_KEY",
]
SHAPES = [
    "{k}={v}",
    'export {k}="{v}"',
    "{k}: {v}",
    "  {k}: '{v}'",
    '{{"user": "bob", "{k}": "{v}", "retry": 3}}',
    'ts=2024-11-25T10:20:30Z level=warn msg="login" {k}={v} user=bob',
    "GET /callback?state=af0ifjsldkj&{k}={v}&next=/home HTTP/1.1",
    "<{k}>{v}</{k}>",
]
values = st.text(
    alphabet=string.ascii_letters + string.digits + "!#$*+-_@^~.:/=", min_size=8, max_size=32
).filter(lambda v: not is_placeholder(v) and not v.startswith("=") and any(c.isalnum() for c in v))


@given(st.sampled_from(SECRET_KEYS), values, st.sampled_from(SHAPES))
def test_any_value_under_a_secret_key_goes(key: str, value: str, shape: str) -> None:
    line = shape.format(k=key, v=value)
    out = redact(line)
    assert value not in MARKER.sub("", out)
    assert key in out


NEUTRAL_KEYS = [
    "level",
    "caller",
    "trace_id",
    "span_id",
    "request_id",
    "pod",
    "namespace",
    "status",
    "duration",
    "path",
    "image",
    "digest",
    "uid",
    "resourceVersion",
    "KEY_PREFIX",
    "token_count",
    "max_tokens",
    "secretName",
    "passwordSecretRef",
    "auth_mode",
    "keys",
    "greeting",
]
neutral_values = st.one_of(
    st.uuids().map(str),
    st.binary(min_size=4, max_size=32).map(bytes.hex),
    st.integers(-(10**9), 10**12).map(str),
    st.from_regex(r"[a-z]{3,10}-[bcdf5-9]{9,10}-[b-df-hj-np-tv-z2-9]{5}", fullmatch=True),
    st.from_regex(r"/[a-z]{2,8}(/[a-z0-9.\-]{1,12}){0,4}", fullmatch=True),
    st.from_regex(r"[0-9]{1,4}(ms|s|m|h)", fullmatch=True),
    st.sampled_from(["true", "false", "null", "enabled", "GET", "CrashLoopBackOff", "ok"]),
    st.sampled_from(["hello", "admin", "geo", "orders"]).map(
        lambda w: base64.b64encode(w.encode()).decode()
    ),
    st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True),
)


@given(st.lists(st.tuples(st.sampled_from(NEUTRAL_KEYS), neutral_values), min_size=1, max_size=6))
def test_ordinary_key_value_lines_stay(pairs: list[tuple[str, str]]) -> None:
    line = " ".join(f"{key}={value}" for key, value in pairs)
    assert redact(line) == line


json_keys = st.one_of(st.sampled_from([*SECRET_KEYS, *NEUTRAL_KEYS]), st.text(max_size=8))
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=40),
        lines,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(json_keys, children, max_size=4),
    ),
    max_leaves=20,
)


def _same_shape(before: object, after: object) -> bool:
    if isinstance(before, dict):
        return (
            isinstance(after, dict)
            and list(before) == list(after)
            and all(_same_shape(before[k], after[k]) for k in before)
        )
    if isinstance(before, list):
        return (
            isinstance(after, list)
            and len(before) == len(after)
            and all(_same_shape(b, a) for b, a in zip(before, after, strict=True))
        )
    if isinstance(before, str):
        return isinstance(after, str)
    return before == after or before != before


@given(json_values)
def test_redact_json_keeps_the_shape_and_is_idempotent(value: object) -> None:
    out = redact_json(value)
    assert _same_shape(value, out)
    assert redact_json(out) == out
