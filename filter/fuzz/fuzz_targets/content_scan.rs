//! Content scanning over arbitrary JSON, with the default input and output rules.
#![no_main]

use acp_filter::config::Config;
use acp_filter::mcp::strict_json;
use acp_filter::scan::content as content_scan;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

thread_local! {
    static CONFIG: Config = common::config();
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = strict_json::parse(data) else {
        return;
    };
    CONFIG.with(|cfg| {
        content_scan::scan(&value, &cfg.scanning.input, "$");
        content_scan::scan(&value, &cfg.scanning.output, "$");
    });
});
