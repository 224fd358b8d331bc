//! Content scanning over arbitrary JSON, with the default input and output rules.
#![no_main]

use std::sync::LazyLock;

use acp_filter::config::Config;
use acp_filter::{content_scan, strict_json};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

static CONFIG: LazyLock<Config> = LazyLock::new(common::config);

fuzz_target!(|data: &[u8]| {
    let Ok(value) = strict_json::parse(data) else { return };
    let _ = content_scan::scan(&value, &CONFIG.scanning.input, "$");
    let _ = content_scan::scan(&value, &CONFIG.scanning.output, "$");
});
