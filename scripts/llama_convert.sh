#!/usr/bin/env bash
# Caches llama.cpp's Hugging Face → GGUF converter, once, for `trainer.export`.
#
# Why: exporting trained weights for the bot's llama.cpp backend needs llama.cpp's
# `convert_hf_to_gguf.py` and the `gguf-py` it was written against (the PyPI `gguf`
# package reads and writes GGUF but has no converter, and its version drifts from the
# script's). Both ship in llama-cpp-python's source distribution, the same version the
# venv runs, so this fetches that sdist with pip (no other download, nothing copied into
# the repo) and keeps only the converter's Python parts under
#   $AOI_CACHE_DIR/llama-convert/<version>/vendor/llama.cpp/
# where `trainer.export` looks for them. Nothing is fetched when that folder is complete;
# exports themselves never download anything.
#
# Usage: scripts/llama_convert.sh PYTHON   (the venv's interpreter, with llama-cpp-python)
# Env:   AOI_CACHE_DIR (default ~/.cache/aoi)
set -euo pipefail

py="${1:?usage: $0 PYTHON}"
cache="${AOI_CACHE_DIR:-$HOME/.cache/aoi}"
# The installed version, so the converter matches the llama.cpp that loads its output.
version=$("$py" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
dest="$cache/llama-convert/$version"
inner="vendor/llama.cpp"

if [ -f "$dest/$inner/convert_hf_to_gguf.py" ] && [ -f "$dest/$inner/gguf-py/gguf/__init__.py" ]; then
  exit 0
fi

echo "== caching llama.cpp's GGUF converter from the llama-cpp-python $version sdist (once)"
mkdir -p "$cache/llama-convert"
tmp=$(mktemp -d "$cache/llama-convert/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# --no-binary for this one package only: its build dependencies may stay wheels, which
# keeps pip's metadata step to seconds.
"$py" -m pip download -q --no-deps --no-binary llama-cpp-python \
  "llama-cpp-python==$version" -d "$tmp/dl"
sdist=$(ls "$tmp"/dl/llama_cpp_python-"$version".tar.gz)
top="llama_cpp_python-$version/$inner"
# Only what the converters import or read: the scripts, their model classes, gguf-py,
# chat templates some model classes embed, and the licence.
tar -xzf "$sdist" -C "$tmp" --wildcards \
  "$top/convert_hf_to_gguf.py" "$top/convert_lora_to_gguf.py" "$top/LICENSE" \
  "$top/conversion/*" "$top/gguf-py/*" "$top/requirements/*" "$top/models/templates/*"
test -f "$tmp/$top/convert_hf_to_gguf.py" || {
  echo "error: $sdist has no $inner/convert_hf_to_gguf.py; remove $dest and run make setup again" >&2
  exit 1
}
mkdir -p "$tmp/out/vendor"
mv "$tmp/$top" "$tmp/out/$inner"
rm -rf "$dest"
mv "$tmp/out" "$dest"
echo "   converter at $dest/$inner/convert_hf_to_gguf.py"
