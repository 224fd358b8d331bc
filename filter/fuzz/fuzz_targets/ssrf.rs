//! The SSRF URL/host parser and the PII detectors on arbitrary text.
#![no_main]

use std::sync::LazyLock;

use acp_filter::config::Config;
use acp_filter::scan::pii::find_pii;
use acp_filter::scan::ssrf::find_ssrf;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

static CONFIG: LazyLock<Config> = LazyLock::new(common::config);

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = find_ssrf(&text, &CONFIG.scanning.input.ssrf_allow);
    let _ = find_pii(&text);
});
