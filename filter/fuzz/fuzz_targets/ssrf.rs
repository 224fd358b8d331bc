//! The SSRF URL/host parser and the PII detectors on arbitrary text.
#![no_main]

use acp_filter::config::Config;
use acp_filter::scan::pii::find_pii;
use acp_filter::scan::ssrf::find_ssrf;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

thread_local! {
    static CONFIG: Config = common::config();
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    CONFIG.with(|cfg| find_ssrf(&text, &cfg.scanning.input.ssrf_allow));
    let _ = find_pii(&text);
});
