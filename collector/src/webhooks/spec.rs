//! A webhook's settings as the API and the CLI give them, parsed once into a validated
//! [`Spec`].

use std::collections::BTreeSet;

use serde::Deserialize;

use super::events::Kind;
use super::formats::Format;
use super::ssrf::AllowList;

pub const MAX_URL_CHARS: usize = 2048;
pub const MAX_EVENTS_LIMIT: u32 = 1000;
pub const MAX_WAIT_LIMIT_MS: u64 = 60_000;
const MAX_TOKEN_CHARS: usize = 256;

/// The create request (`POST /{tenant}/api/v1/webhooks`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawSpec {
    pub url: String,
    pub events: Vec<Kind>,
    #[serde(default)]
    pub format: Option<Format>,
    #[serde(default)]
    pub batch: Option<RawBatch>,
    /// The `Authorization: Splunk <token>` of `splunk-hec` endpoints.
    #[serde(default)]
    pub hec_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBatch {
    pub max_events: Option<u32>,
    pub max_wait_ms: Option<u64>,
}

/// How events are grouped into deliveries: up to `max_events` per request, and a partial
/// batch waits at most `max_wait_ms` for more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub max_events: u32,
    pub max_wait_ms: u64,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            max_events: 100,
            max_wait_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub url: String,
    pub events: BTreeSet<Kind>,
    pub format: Format,
    pub batch: Batch,
    pub hec_token: Option<String>,
}

impl RawSpec {
    /// Validates everything but the URL's addresses (see [`AllowList::check_url_resolved`]).
    pub fn validate(self, allow: &AllowList) -> Result<Spec, String> {
        if self.url.len() > MAX_URL_CHARS {
            return Err(format!("`url` is longer than {MAX_URL_CHARS} characters"));
        }
        let url = allow.check_url(&self.url)?.to_string();
        if self.events.is_empty() {
            return Err("`events` must name at least one event type".into());
        }
        let events: BTreeSet<Kind> = self.events.iter().copied().collect();
        if events.len() != self.events.len() {
            return Err("`events` names an event type twice".into());
        }
        let format = self.format.unwrap_or(Format::Json);
        let defaults = Batch::default();
        let raw = self.batch.unwrap_or_default();
        let batch = Batch {
            max_events: raw.max_events.unwrap_or(defaults.max_events),
            max_wait_ms: raw.max_wait_ms.unwrap_or(defaults.max_wait_ms),
        };
        if !(1..=MAX_EVENTS_LIMIT).contains(&batch.max_events) {
            return Err(format!("`batch.maxEvents` must be 1 to {MAX_EVENTS_LIMIT}"));
        }
        if batch.max_wait_ms > MAX_WAIT_LIMIT_MS {
            return Err(format!(
                "`batch.maxWaitMs` must be at most {MAX_WAIT_LIMIT_MS}"
            ));
        }
        if let Some(token) = &self.hec_token {
            if format != Format::SplunkHec {
                return Err("`hecToken` is only for the splunk-hec format".into());
            }
            if token.is_empty()
                || token.len() > MAX_TOKEN_CHARS
                || !token.chars().all(|c| c.is_ascii_graphic())
            {
                return Err(format!(
                    "`hecToken` must be 1 to {MAX_TOKEN_CHARS} printable ASCII characters"
                ));
            }
        }
        Ok(Spec {
            url,
            events,
            format,
            batch,
            hec_token: self.hec_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Result<RawSpec, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_bad_requests() {
        let allow = AllowList::default();
        let spec = raw(r#"{"url":"https://siem.example.com/in","events":["tool.call"]}"#)
            .unwrap()
            .validate(&allow)
            .unwrap();
        assert_eq!((spec.format, spec.batch), (Format::Json, Batch::default()));
        for (json, reason) in [
            (r#"{"url":"https://x.example","events":[]}"#, "at least one"),
            (
                r#"{"url":"https://x.example","events":["tool.call","tool.call"]}"#,
                "twice",
            ),
            (
                r#"{"url":"https://x.example","events":["tool.call"],"batch":{"maxEvents":0}}"#,
                "maxEvents",
            ),
            (
                r#"{"url":"https://x.example","events":["tool.call"],"batch":{"maxWaitMs":60001}}"#,
                "maxWaitMs",
            ),
            (
                r#"{"url":"https://x.example","events":["tool.call"],"hecToken":"t"}"#,
                "splunk-hec",
            ),
            (
                r#"{"url":"https://x.example","events":["tool.call"],"format":"splunk-hec","hecToken":"a b"}"#,
                "printable",
            ),
            (
                r#"{"url":"http://10.0.0.1","events":["tool.call"]}"#,
                "private",
            ),
        ] {
            let err = raw(json).unwrap().validate(&allow).unwrap_err();
            assert!(err.contains(reason), "{json}: {err}");
        }
        for (json, reason) in [
            (
                r#"{"url":"https://x.example","events":["tool.exploded"]}"#,
                "unknown variant",
            ),
            (
                r#"{"url":"https://x.example","events":["tool.call"],"secret":"x"}"#,
                "unknown field",
            ),
            (r#"{"events":["tool.call"]}"#, "missing field `url`"),
        ] {
            let err = raw(json).unwrap_err();
            assert!(err.contains(reason), "{json}: {err}");
        }
    }
}
