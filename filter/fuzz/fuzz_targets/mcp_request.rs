//! The JSON-RPC/MCP request parser, the header consistency check and the whole decision for an
//! authenticated caller, on arbitrary bodies.
#![no_main]

use acp_filter::auth::identity::Identity;
use acp_filter::config::Config;
use acp_filter::decide::request::{self as decision, Request};
use acp_filter::mcp::headers::{check_headers, McpHeaders};
use acp_filter::mcp::request as mcp_request;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

thread_local! {
    static CONFIG: Config = common::config();
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = mcp_request::parse(data) {
        let headers = McpHeaders {
            method: Some("tools/call".into()),
            name: Some("salesforce.query".into()),
            ..McpHeaders::default()
        };
        let _ = check_headers(&req, &headers);
    }
    let identity = Identity {
        sub: "alice".into(),
        email: None,
        tenant: None,
        scopes: vec!["salesforce:read".into()],
        client_id: None,
        client_type: None,
        delegation_chain: None,
        expires_at: u64::MAX,
    };
    let request = Request {
        auth: Ok(&identity),
        headers: &McpHeaders::default(),
        body: Some(data),
        content_encoding: None,
    };
    CONFIG.with(|cfg| decision::decide(cfg, &request, &mut |_| Ok(())));
});
