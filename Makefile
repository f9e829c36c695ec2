# TVM — make targets. `make run` and `make test` are the Quick start.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TVM    := $(BIN)/tvm
PORT   ?= 8000

.PHONY: setup deps venv images run test fuzz test-unit lint format bench clean help verify-languages \
	docker-base docker-wheels docker-image docker-image-local docker-postgres \
	test-containers docs playground playground-check

help:
	@echo "make run    install what is missing, build the default images, start TVM on :$(PORT)"
	@echo "make test   the whole test suite (unit, integration, e2e)"
	@echo "make fuzz   schemathesis --checks all against a real tvm start, deep (~40 min)"
	@echo "make bench  latency/throughput benchmark (table + JSON in bench/results/)"
	@echo "make lint   ruff + mypy"
	@echo "make docker-image        the tvm/pyrovm image (docker-image-local: from a local base)"
	@echo "make test-containers     the image and the compose file, tested with a real engine"
	@echo "make docs               the Sphinx docs into docs/build/html (warnings are errors)"
	@echo "make playground         rebuild the web playground's bundle (needs npm; the built one is committed)"

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
	$(BIN)/pytest -q -ra --durations=25

# schemathesis --checks all against a real tvm start, the deep run: `make test` runs the
# same test with a budget of 210 s (~2,000-4,000 cases), this one with 900 s (~9,000 on
# an idle host), plus the execute routes' coverage phase (~25 min). TVM_FUZZ_SEED=n for
# another seed.
FUZZ_SECONDS ?= 900
fuzz: images
	TVM_FUZZ_SECONDS=$(FUZZ_SECONDS) TVM_FUZZ_EXECUTE_COVERAGE=1 $(BIN)/pytest -q -ra -m fuzz

test-unit: venv
	$(BIN)/pytest -q tests/unit

# Run every language's test program and record the passing entries in
# tvm/config/verified.toml (only those are offered by /api/v2/runtimes).
verify-languages: images
	TVM_UPDATE_VERIFIED=1 $(BIN)/pytest -q tests/integration/test_languages.py

lint: venv
	$(BIN)/ruff check tvm tests bench docs/conf.py docs/_ext
	$(BIN)/ruff format --check tvm tests bench docs/conf.py docs/_ext
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format tvm tests bench docs/conf.py docs/_ext
	$(BIN)/ruff check --fix tvm tests bench docs/conf.py docs/_ext

docs: venv
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/build/html
	@echo "docs: docs/build/html/index.html"

bench: images
	$(BIN)/python bench/bench.py

# Containers (docs/deploy.md). docker-base makes a Debian base from Debian packages
# (mmdebstrap + docker import) for hosts that cannot pull from a registry.
DOCKER      ?= docker
IMAGE       ?= tvm/pyrovm
BASE_IMAGE  ?= debian:bookworm-slim
LOCAL_BASE  ?= tvm/base:bookworm
TVM_VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' tvm/__init__.py)

docker-base:
	DOCKER="$(DOCKER)" sh scripts/docker-base.sh $(LOCAL_BASE)

docker-image:
	$(DOCKER) build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) \
		--build-arg TVM_VERSION=$(TVM_VERSION) --build-arg WHEELS_ONLY=$(WHEELS_ONLY) \
		-t $(IMAGE):$(TVM_VERSION) -t $(IMAGE):latest .

# The Python dependencies as wheels, built by the host's pip (its index and CA settings).
docker-wheels: venv
	rm -f docker/wheels/*.whl
	$(BIN)/pip wheel -q -w docker/wheels . 'setuptools>=68'
	rm -f docker/wheels/tvm-*.whl

# Here: no registry (local base) and no index inside the build (host-built wheels).
docker-image-local: docker-base docker-wheels
	$(MAKE) docker-image BASE_IMAGE=$(LOCAL_BASE) WHEELS_ONLY=1

# PostgreSQL for the compose files where the official image cannot be pulled.
docker-postgres: docker-base
	$(DOCKER) build --network host --build-arg BASE_IMAGE=$(LOCAL_BASE) -t tvm/postgres:15 docker/postgres

test-containers:
	bash scripts/ci-containers.sh
# The playground's bundle (tvm/pyroshell/static/playground.*) is committed, so
# that a clone serves the page without npm; this rebuilds it from playground/.
playground:
	cd playground && npm ci --no-audit --no-fund && npm run -s build

# CI: the committed bundle is what its sources build.
playground-check: playground
	git diff --exit-code --stat -- tvm/pyroshell/static

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache docs/build
