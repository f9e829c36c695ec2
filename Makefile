# TVM — make targets. `make run` and `make test` are the Quick start.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TVM    := $(BIN)/tvm
PORT   ?= 8000

.PHONY: setup deps venv images run test test-unit lint format bench clean help verify-languages

help:
	@echo "make run    install what is missing, build the default images, start TVM on :$(PORT)"
	@echo "make test   the whole test suite (unit, integration, e2e)"
	@echo "make bench  latency/throughput benchmark (table + JSON in bench/results/)"
	@echo "make lint   ruff + mypy"

setup: deps venv

deps:
	@sh scripts/install-deps.sh

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

images: setup
	$(TVM) images build

run: images
	@echo
	@echo "TVM is starting on http://127.0.0.1:$(PORT) — try, from another shell:"
	@echo "  curl -s http://127.0.0.1:$(PORT)/api/v2/execute -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"language\":\"python\",\"version\":\"*\",\"files\":[{\"content\":\"print(input()[::-1])\"}],\"stdin\":\"olleh\"}'"
	@echo
	$(TVM) start --port $(PORT)

test: images
	$(BIN)/pytest -q -ra

test-unit: venv
	$(BIN)/pytest -q tests/unit

# Run every language's test program and record the passing entries in
# tvm/config/verified.toml (only those are offered by /api/v2/runtimes).
verify-languages: images
	TVM_UPDATE_VERIFIED=1 $(BIN)/pytest -q tests/integration/test_languages.py

lint: venv
	$(BIN)/ruff check tvm tests bench
	$(BIN)/ruff format --check tvm tests bench
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format tvm tests bench
	$(BIN)/ruff check --fix tvm tests bench

bench: images
	$(BIN)/python bench/bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
