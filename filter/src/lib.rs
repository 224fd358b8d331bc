//! ACP's Envoy filter: every MCP tool call is authenticated (JWT), authorized (tool scopes) and
//! audited (one record per call, batched to the collector).
//!
//! The decisions are plain functions over plain data, unit-tested natively: `config`, `jwks`,
//! `discovery`, `token`, `jwt_authn`, `claims`, `identity`, `policy`, `mcp_request`, `mcp_headers`,
//! `mcp_response`, `decision`, `resource_metadata`, `audit`, `outbox`, `policy_snapshot`.
//! The proxy-wasm contexts (`plugin`, `stream`) only move bytes between Envoy (`host`) and them.

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
