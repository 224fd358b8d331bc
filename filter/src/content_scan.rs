//! Content scanning of decoded JSON: every string (at any depth) goes through the enabled
//! detectors; each hit becomes a finding (detector + JSON path + action, never the value), and
//! two copies of the value come back: one masked for the audit record (every hit), one redacted
//! for what is forwarded or returned (hits whose action is `redact`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::scan::pii::find_pii;
use crate::scan::ssrf::{find_ssrf, AllowList};
use crate::scan::{Detector, Match};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Refuse the call (input) or replace the answer with a JSON-RPC error (output).
    Block,
    /// Mask the value in what is forwarded or returned.
    Redact,
    /// Record the finding only.
    Log,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Redact => "redact",
            Action::Log => "log",
        }
    }
}

/// Detectors to run and what to do with their hits.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub actions: BTreeMap<Detector, Action>,
    pub ssrf_allow: AllowList,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub detector: Detector,
    pub path: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scanned {
    pub hits: Vec<Hit>,
    /// The value with every hit masked: what the audit record keeps.
    pub masked: Value,
    /// The value with `redact` hits masked, when there were any: what goes on.
    pub redacted: Option<Value>,
}

impl Scanned {
    /// The first detector whose action is `block`.
    pub fn blocked_by(&self) -> Option<Detector> {
        self.hits.iter().find(|h| h.action == Action::Block).map(|h| h.detector)
    }
}

pub fn scan(value: &Value, rules: &Rules, root: &str) -> Scanned {
    let mut hits = Vec::new();
    let mut masked = value.clone();
    let mut redacted = value.clone();
    let mut any_redacted = false;
    walk(&mut masked, &mut redacted, root.to_string(), rules, &mut hits, &mut any_redacted);
    Scanned { hits, masked, redacted: any_redacted.then_some(redacted) }
}

fn walk(
    masked: &mut Value,
    redacted: &mut Value,
    path: String,
    rules: &Rules,
    hits: &mut Vec<Hit>,
    any_redacted: &mut bool,
) {
    match (masked, redacted) {
        (Value::String(m), Value::String(r)) => {
            let found = detect(m, rules);
            if found.is_empty() {
                return;
            }
            let redact: Vec<Match> = found
                .iter()
                .filter(|x| rules.actions.get(&x.detector) == Some(&Action::Redact))
                .copied()
                .collect();
            if !redact.is_empty() {
                *r = mask(r, &redact);
                *any_redacted = true;
            }
            *m = mask(m, &found);
            for x in found {
                if let Some(&action) = rules.actions.get(&x.detector) {
                    hits.push(Hit { detector: x.detector, path: path.clone(), action });
                }
            }
        }
        (Value::Array(ms), Value::Array(rs)) => {
            for (i, (m, r)) in ms.iter_mut().zip(rs.iter_mut()).enumerate() {
                walk(m, r, format!("{path}[{i}]"), rules, hits, any_redacted);
            }
        }
        (Value::Object(ms), Value::Object(rs)) => {
            for ((key, m), r) in ms.iter_mut().zip(rs.values_mut()) {
                walk(m, r, child_path(&path, key), rules, hits, any_redacted);
            }
        }
        _ => {}
    }
}

/// The enabled detectors' matches in `text`, sorted and non-overlapping.
fn detect(text: &str, rules: &Rules) -> Vec<Match> {
    let mut found: Vec<Match> = find_pii(text)
        .into_iter()
        .filter(|m| rules.actions.contains_key(&m.detector))
        .collect();
    if rules.actions.contains_key(&Detector::Ssrf) {
        let ssrf = find_ssrf(text, &rules.ssrf_allow);
        found.retain(|m| !ssrf.iter().any(|s| s.start < m.end && m.start < s.end));
        found.extend(ssrf);
    }
    found.sort_by_key(|m| m.start);
    found
}

/// `text` with each match replaced by `[REDACTED:<detector>]`.
fn mask(text: &str, matches: &[Match]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for m in matches {
        if m.start < at || m.end > text.len() {
            continue;
        }
        out.push_str(text.get(at..m.start).unwrap_or_default());
        out.push_str("[REDACTED:");
        out.push_str(m.detector.as_str());
        out.push(']');
        at = m.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{parent}.{key}")
    } else {
        format!("{parent}[{}]", Value::String(key.to_string()))
    }
}

/// Risk in [0, 1]: `1 - Π(1 - weight)` over the distinct detectors found, so one SSN weighs
/// 0.9 and an email alone 0.2; more kinds of findings push the score towards 1.
pub fn risk_score(hits: &[Hit]) -> f64 {
    let mut seen: Vec<Detector> = hits.iter().map(|h| h.detector).collect();
    seen.sort();
    seen.dedup();
    let keep = seen.iter().fold(1.0, |acc, d| acc * (1.0 - weight(*d)));
    ((1.0 - keep) * 1000.0).round() / 1000.0
}

pub fn weight(detector: Detector) -> f64 {
    match detector {
        Detector::Ssn | Detector::PaymentCard | Detector::Ssrf => 0.9,
        Detector::Secret => 0.8,
        Detector::Iban => 0.6,
        Detector::Email | Detector::Phone => 0.2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(actions: &[(Detector, Action)]) -> Rules {
        Rules { actions: actions.iter().copied().collect(), ssrf_allow: AllowList::default() }
    }

    #[test]
    fn nested_strings_are_scanned_with_paths_masks_and_actions() {
        let value = json!({"customer": {"notes": ["ssn 536-22-1987", "ok"], "contact": "bob@acme.com"},
                           "weird key": "call +1 415 555 2671"});
        let r = rules(&[(Detector::Ssn, Action::Block), (Detector::Email, Action::Redact), (Detector::Phone, Action::Log)]);
        let s = scan(&value, &r, "$");
        let hits: Vec<(Detector, &str, Action)> = s.hits.iter().map(|h| (h.detector, h.path.as_str(), h.action)).collect();
        assert_eq!(hits, [
            (Detector::Email, "$.customer.contact", Action::Redact),
            (Detector::Ssn, "$.customer.notes[0]", Action::Block),
            (Detector::Phone, "$[\"weird key\"]", Action::Log),
        ]);
        assert_eq!(s.blocked_by(), Some(Detector::Ssn));
        assert_eq!(s.masked["customer"]["notes"][0], "ssn [REDACTED:ssn]");
        assert_eq!(s.masked["customer"]["contact"], "[REDACTED:email]");
        assert_eq!(s.masked["weird key"], "call [REDACTED:phone]");
        let redacted = s.redacted.unwrap();
        assert_eq!(redacted["customer"]["contact"], "[REDACTED:email]", "redact hits are masked on the wire");
        assert_eq!(redacted["customer"]["notes"][0], "ssn 536-22-1987", "block and log hits are not");
        assert_eq!(redacted["weird key"], "call +1 415 555 2671");
    }

    #[test]
    fn detectors_without_an_action_are_not_run_and_clean_values_are_untouched() {
        let value = json!({"a": "bob@acme.com", "n": 5, "ok": [true, null]});
        let s = scan(&value, &rules(&[(Detector::Ssn, Action::Block)]), "$");
        assert_eq!((s.hits.len(), s.redacted, s.masked), (0, None, value));
    }

    #[test]
    fn ssrf_hits_are_reported_once_over_overlapping_pii() {
        let value = json!({"url": "http://bob@127.0.0.1/admin"});
        let r = rules(&[(Detector::Ssrf, Action::Block), (Detector::Email, Action::Log)]);
        let s = scan(&value, &r, "$");
        assert_eq!(s.hits.iter().map(|h| h.detector).collect::<Vec<_>>(), [Detector::Ssrf]);
        assert_eq!(s.masked["url"], "[REDACTED:ssrf]");
    }

    #[test]
    fn risk_score_formula() {
        let hit = |d| Hit { detector: d, path: "$".into(), action: Action::Log };
        assert_eq!(risk_score(&[]), 0.0);
        assert_eq!(risk_score(&[hit(Detector::Ssn)]), 0.9);
        assert_eq!(risk_score(&[hit(Detector::Email), hit(Detector::Email)]), 0.2);
        assert_eq!(risk_score(&[hit(Detector::Email), hit(Detector::Phone)]), 0.36);
        assert_eq!(risk_score(&[hit(Detector::Ssn), hit(Detector::PaymentCard), hit(Detector::Ssrf)]), 0.999);
    }
}
