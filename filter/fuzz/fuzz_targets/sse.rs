//! The answer side: outcomes of JSON and SSE bodies, and the scan/filter rewrite of an answer to
//! a forwarded tool call and a `tools/list`.
#![no_main]

use std::collections::BTreeSet;

use acp_filter::config::Config;
use acp_filter::decide::answer::{self, Plan};
use acp_filter::mcp::response as mcp_response;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

thread_local! {
    static CONFIG: Config = common::config();
}

fuzz_target!(|data: &[u8]| {
    let plan = Plan {
        tool_calls: BTreeSet::from(["1".to_string()]),
        tools_lists: BTreeSet::from(["2".to_string()]),
    };
    let scopes = ["salesforce:read".to_string()];
    for content_type in [Some("text/event-stream"), Some("application/json")] {
        let _ = mcp_response::outcomes(content_type, data);
        CONFIG.with(|cfg| answer::process(cfg, &scopes, &plan, content_type, data));
    }
});
