#!/usr/bin/env bash
# Installs llama-cpp-python built for a portable CPU baseline, never for this machine's CPU.
#
# Why: llama-cpp-python's default build is `-march=native`. A wheel built that way
# on a machine with AVX-512/AMX segfaults in `decode` on other machines, and pip's
# wheel cache keys wheels by version only, so a native wheel once cached is reused
# silently by every later install. So the wheel is built here with explicit flags,
# without pip's cache, into our own cache under a folder named by the version, the
# Python tag, the architecture and a hash of the flags; the venv then gets exactly
# that wheel (force-reinstalled when anything else is installed), and the result
# is checked: the installed library must report no AVX-512 and no AMX.
#
# Usage: scripts/portable_llama.sh PYTHON   (the venv's interpreter)
# Env:   AOI_CACHE_DIR (default ~/.cache/aoi), AOI_LLAMA_CMAKE_ARGS (override the flags)
set -euo pipefail

py="${1:?usage: $0 PYTHON}"
version=0.3.36
cache="${AOI_CACHE_DIR:-$HOME/.cache/aoi}"

arch=$(uname -m)
case "$arch" in
  x86_64 | amd64)
    # AVX2 level (Haswell, 2013, and every x86-64 server since): fast on all of them,
    # and no AVX-512/AMX code paths that crash where the CPU advertises them.
    default_flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
    ;;
  *)
    default_flags="-DGGML_NATIVE=OFF"
    ;;
esac
flags="${AOI_LLAMA_CMAKE_ARGS:-$default_flags}"
pytag=$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
flag_hash=$(printf '%s' "$flags" | sha256sum | cut -c1-12)
key="llama-cpp-python-$version-$pytag-$arch-$flag_hash"
wheel_dir="$cache/wheels/$key"
marker="$(dirname "$py")/../.llama-wheel"

wheel=$(ls "$wheel_dir"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "== building llama-cpp-python $version for a portable CPU baseline (once, 3-6 minutes)"
  echo "   flags: $flags"
  tmp=$(mktemp -d "$cache/wheels/.build.XXXXXX" 2>/dev/null || { mkdir -p "$cache/wheels" && mktemp -d "$cache/wheels/.build.XXXXXX"; })
  trap 'rm -rf "$tmp"' EXIT
  # --no-cache-dir: neither take a (possibly native) wheel from pip's cache nor put ours there.
  CMAKE_ARGS="$flags" FORCE_CMAKE=1 "$py" -m pip wheel -q --no-deps --no-cache-dir \
    --no-binary llama-cpp-python "llama-cpp-python==$version" -w "$tmp"
  mkdir -p "$wheel_dir"
  printf '%s\n' "$flags" >"$tmp/FLAGS"
  mv "$tmp"/llama_cpp_python-*.whl "$tmp/FLAGS" "$wheel_dir"/
  wheel=$(ls "$wheel_dir"/llama_cpp_python-"$version"-*.whl | head -n1)
fi

if [ "$(cat "$marker" 2>/dev/null || true)" != "$key" ]; then
  echo "== installing $key"
  "$py" -m pip install -q --no-deps --force-reinstall --no-cache-dir "$wheel"
  "$py" -m pip install -q "$wheel" # its dependencies (numpy, diskcache, jinja2)
fi

# The proof, on every setup: what the installed library itself says it was built with.
info=$("$py" -c 'import llama_cpp; print(llama_cpp.llama_print_system_info().decode())')
if grep -qE 'AVX512[A-Z_]* = 1|AMX[A-Z_]* = 1' <<<"$info"; then
  echo "error: the installed llama-cpp-python was built with AVX-512/AMX ($info);" \
    "remove $wheel_dir and $marker and run make setup again" >&2
  rm -f "$marker"
  exit 1
fi
printf '%s\n' "$key" >"$marker"
