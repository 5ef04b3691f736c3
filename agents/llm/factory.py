"""Turn the one model setting (AOI_MODEL) into a backend, so callers never branch on it.

`aoi/` reads the setting and passes its parts in; this module only interprets
the spec: `embedded`, a GGUF path, an http(s) URL, or `analyzers` (no model:
the deterministic analyzers answer alone).
"""

from __future__ import annotations

from pathlib import Path

from agents.llm.base import ChatModel
from agents.llm.llamacpp import LlamaCppModel, embedded_model_path
from agents.llm.openai_http import JsonMode, OpenAIHttpModel
from agents.llm.supervised import SupervisedModel


def make_model(
    spec: str,
    *,
    threads: int,
    timeout_s: float,
    api_key: str | None,
    model_name: str,
    n_ctx: int = 4096,
    json_mode: JsonMode = "json_schema",
    in_process: bool = False,
) -> ChatModel | None:
    """The backend `spec` names, or None for `analyzers`.

    >>> make_model("embedded", threads=2, timeout_s=120, api_key=None, model_name="")
    <agents.llm.supervised.SupervisedModel object at ...>

    A local GGUF model runs in a supervised worker process, so a crash in native
    code costs one decision, not the caller; `in_process=True` loads it here
    instead (the bench's baseline). `threads` of 0 or less means one per CPU
    core. A missing or non-GGUF file raises `ModelUnavailable` with the path and
    what to set instead.
    """
    spec = spec.strip()
    if spec == "analyzers":
        return None
    if spec.startswith(("http://", "https://")):
        return OpenAIHttpModel(
            spec, model=model_name, api_key=api_key, timeout_s=timeout_s, json_mode=json_mode
        )
    path = embedded_model_path() if spec == "embedded" else Path(spec)
    if in_process:
        return LlamaCppModel(path, threads=threads, n_ctx=n_ctx)
    return SupervisedModel(path, threads=threads, n_ctx=n_ctx, timeout_s=timeout_s)
