//! ACP's Envoy filter: every MCP tool call is authenticated (JWT), authorized (tool scopes) and
//! audited (one record per call, batched to the collector).
//!
//! One folder per concern, each depending only on those listed before it:
//! `config_error` (what a configuration section can get wrong), `scan` (PII and SSRF detectors,
//! content scanning), `mcp` (the request, its headers, the answer), `auth` (token, keys, claims,
//! identity), `policy` (tool scopes, rate limits), `config` (assembles the sections each domain
//! validates), `decide` (what happens to a request and to its answer), `audit` (records, outbox,
//! policy document) and `shell`, the only code that touches proxy-wasm: its root and HTTP
//! contexts move bytes between Envoy, reached through the `Host` trait, and the decisions.
//! Everything but `shell` is plain functions over plain data; `shell` is tested through a fake host.

pub mod audit;
pub mod auth;
pub mod config;
pub mod config_error;
pub mod decide;
pub mod mcp;
pub mod policy;
pub mod scan;
mod shell;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(shell::plugin::Plugin::new(shell::host::Envoy))
    });
}}
