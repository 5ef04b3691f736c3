"""Trained weights → one GGUF file that the bot's llama.cpp backend loads.

``trainer.grpo.train`` leaves ``out_dir/final``: a LoRA adapter (peft) or a whole
model, with its tokenizer. ``export_gguf`` merges an adapter into its base
(``merge_and_unload``), saves a plain Hugging Face folder and converts it with
llama.cpp's own ``convert_hf_to_gguf.py``. That converter and the ``gguf-py`` it
was written against come from llama-cpp-python's source distribution of the
installed version, cached once by ``scripts/llama_convert.sh`` (``make setup``
runs it) under ``$AOI_CACHE_DIR/llama-convert/<version>/``; an export never
downloads anything. The converter runs as a child process with that ``gguf-py``
first on its path, so the PyPI ``gguf`` package (which transformers uses to read
GGUF, and whose version may differ) does not matter to it.

Example::

    path = export_gguf("var/train/run1/final", "var/models/observer-run1.gguf")
    LlamaCppModel(path)   # what the bot serves
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from agents.llm import check_gguf
from trainer.grpo import TRAIN_INFO, ConfigError, TrainConfig, load_base

OutType = Literal["f16", "q8_0", "f32", "bf16"]
CONVERTER = "convert_hf_to_gguf.py"
_INNER = Path("vendor") / "llama.cpp"
_OUTPUT_TAIL = 4000


class ExportError(RuntimeError):
    """The export failed; the message says where and what to do."""


def cache_dir() -> Path:
    """The build cache the Makefile and scripts/ use: ``$AOI_CACHE_DIR`` or ``~/.cache/aoi``."""
    configured = os.environ.get("AOI_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "aoi"


def converter_dir(cache: Path | None = None) -> Path:
    """The cached llama.cpp folder holding ``convert_hf_to_gguf.py`` and ``gguf-py``.

    It belongs to the installed llama-cpp-python version; raises ``ExportError``
    naming ``make setup`` when it is not there.
    """
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ExportError(
            "llama-cpp-python is not installed, so there is no converter version to use; "
            "run `make setup`"
        ) from exc
    folder = (cache or cache_dir()) / "llama-convert" / version / _INNER
    if not (folder / CONVERTER).is_file() or not (folder / "gguf-py" / "gguf").is_dir():
        raise ExportError(
            f"llama.cpp's GGUF converter for llama-cpp-python {version} is not cached at "
            f"{folder}: run `make setup` (or `scripts/llama_convert.sh .venv/bin/python`) once"
        )
    return folder


def export_gguf(
    trained_dir: str | Path,
    out_path: str | Path,
    *,
    base: str | None = None,
    outtype: OutType = "f16",
    converter: Path | None = None,
    timeout_s: float = 1800.0,
) -> Path:
    """Write ``trained_dir``'s model as one GGUF file at ``out_path``; returns its path.

    ``trained_dir`` is a run's ``final`` folder (or the run folder holding it). An
    adapter is merged into ``base`` — by default the base it was trained on, as
    ``train`` recorded it; any ``TrainConfig.base`` value otherwise. ``outtype``
    "f16" keeps the trained weights almost exactly; "q8_0" halves the file again.
    ``converter`` is the llama.cpp folder (``converter_dir()`` by default).

    >>> export_gguf("var/train/run1/final", "var/models/run1.gguf", outtype="q8_0")
    PosixPath('var/models/run1.gguf')
    """
    trained = _final_folder(Path(trained_dir).resolve())
    out = Path(out_path).resolve()  # the converter runs in its own folder
    tools = converter or converter_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aoi-export-", dir=out.parent) as scratch:
        hf_dir = Path(scratch) / "merged"
        if (trained / "adapter_config.json").is_file():
            _merge(trained, hf_dir, base or _recorded_base(trained))
        elif (trained / "config.json").is_file():
            hf_dir = trained  # a full fine-tune is a Hugging Face folder already
        else:
            raise ExportError(
                f"{trained} holds neither a LoRA adapter (adapter_config.json) nor a model "
                "(config.json): give the `final` folder of a finished training run"
            )
        partial = Path(scratch) / out.name
        _convert(tools, hf_dir, partial, outtype, timeout_s)
        check_gguf(partial)
        # Moved into place only once whole: a failed export never leaves half a model
        # where the bot would load it.
        os.replace(partial, out)
    return out


def _final_folder(path: Path) -> Path:
    if (path / "final").is_dir() and not (path / "adapter_config.json").is_file():
        path = path / "final"
    if not path.is_dir():
        raise ExportError(f"no trained model at {path}: train first (trainer.grpo.train)")
    return path


def _recorded_base(trained: Path) -> str:
    try:
        info: Any = json.loads((trained / TRAIN_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(
            f"{trained} does not say which base its adapter was trained on ({TRAIN_INFO} is "
            f"missing or unreadable: {exc}); pass base= (--base) with the same base"
        ) from exc
    base = info.get("base") if isinstance(info, dict) else None
    if not isinstance(base, str) or not base:
        raise ExportError(f"{trained / TRAIN_INFO} names no base; pass base= (--base)")
    return base


def _merge(adapter: Path, out: Path, base: str) -> None:
    """The adapter merged into its base, saved with the trained tokenizer as plain weights."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    try:
        model, _ = load_base(TrainConfig(base=base, device="cpu"))
    except ConfigError as exc:
        raise ExportError(f"cannot load the base to merge the adapter into: {exc}") from exc
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(adapter, local_files_only=True).save_pretrained(out)


def _convert(tools: Path, hf_dir: Path, out: Path, outtype: str, timeout_s: float) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(tools / "gguf-py"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        # The converter must never reach for a model hub; everything it needs is local.
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    command = [
        sys.executable,
        str(tools / CONVERTER),
        str(hf_dir),
        "--outfile",
        str(out),
        "--outtype",
        outtype,
    ]
    try:
        done = subprocess.run(
            command,
            cwd=tools,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ExportError(
            f"llama.cpp's converter did not finish within {timeout_s:.0f} s; "
            "raise timeout_s for a large model"
        ) from exc
    if done.returncode != 0 or not out.is_file():
        tail = (done.stderr or done.stdout or "")[-_OUTPUT_TAIL:]
        raise ExportError(
            f"llama.cpp's converter failed (exit {done.returncode}) on {hf_dir}:\n{tail}\n"
            "an unsupported architecture or tokenizer is the usual cause; if the cached "
            f"converter is damaged, remove {tools.parent.parent} and run `make setup`"
        )
