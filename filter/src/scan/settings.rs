//! The `scanning` section of the configuration: which detectors run on tool inputs and outputs,
//! with which action, and what happens to bodies too large to scan.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::content::{Action, Rules};
use super::ssrf::AllowList;
use super::Detector;
use crate::config_error::{at_least, ConfigError};

/// Validated `scanning` settings.
#[derive(Debug)]
pub struct Scanning {
    pub input: Rules,
    pub output: Rules,
    /// Largest body (request or response) that is scanned.
    pub max_scan_bytes: usize,
    pub oversized: Oversized,
}

/// What happens to a body above `maxScanBytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversized {
    /// Refuse it (413 for a request, a JSON-RPC error for an answer).
    Reject,
    /// Let it through unscanned; the record says it was not scanned.
    Pass,
}

/// `scanning` as written in the plugin configuration.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawScanning {
    /// Read by the configuration too, which enforces the platform's immutable rules on it.
    #[serde(default)]
    pub input: BTreeMap<Detector, Action>,
    #[serde(default)]
    output: BTreeMap<Detector, Action>,
    #[serde(default)]
    ssrf_allow_hosts: Vec<String>,
    #[serde(default)]
    max_scan_bytes: Option<usize>,
    #[serde(default)]
    oversized: Option<Oversized>,
}

fn default_input_actions() -> BTreeMap<Detector, Action> {
    use Action::*;
    use Detector::*;
    BTreeMap::from([
        (Ssn, Block),
        (PaymentCard, Block),
        (Ssrf, Block),
        (Secret, Block),
        (Iban, Log),
        (Email, Log),
        (Phone, Log),
    ])
}
fn default_output_actions() -> BTreeMap<Detector, Action> {
    use Action::*;
    use Detector::*;
    BTreeMap::from([
        (Ssn, Redact),
        (PaymentCard, Redact),
        (Secret, Redact),
        (Iban, Redact),
        (Email, Log),
        (Phone, Log),
    ])
}

impl TryFrom<RawScanning> for Scanning {
    type Error = ConfigError;

    fn try_from(raw: RawScanning) -> Result<Scanning, ConfigError> {
        let ssrf_allow = AllowList::new(raw.ssrf_allow_hosts)
            .map_err(|e| ConfigError::invalid("scanning.ssrfAllowHosts", e))?;
        let merge = |mut base: BTreeMap<Detector, Action>, over: BTreeMap<Detector, Action>| {
            base.extend(over);
            base
        };
        let max_scan_bytes = raw.max_scan_bytes.unwrap_or(1 << 20);
        at_least("scanning.maxScanBytes", max_scan_bytes as u64, 1)?;
        Ok(Scanning {
            input: Rules {
                actions: merge(default_input_actions(), raw.input),
                ssrf_allow: ssrf_allow.clone(),
            },
            output: Rules {
                actions: merge(default_output_actions(), raw.output),
                ssrf_allow,
            },
            max_scan_bytes,
            oversized: raw.oversized.unwrap_or(Oversized::Reject),
        })
    }
}
