//! Content scanning of decoded JSON: every string (at any depth) goes through the enabled
//! detectors; each hit becomes a finding (detector + JSON path + action, never the value), and
//! two copies of the value come back when anything was found: one masked for the audit record
//! (every hit), one redacted for what is forwarded or returned (hits whose action is `redact`).
//! A value with no hits is never copied.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::gate::Gate;
use super::ssrf::AllowList;
use super::{pii, ssrf, Detector, Match, Normalized};

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
    /// What was normalised before the value matched (see [`Normalized`]).
    pub normalized: Normalized,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scanned {
    pub hits: Vec<Hit>,
    /// The value with every hit masked, when there were any: what the audit record keeps
    /// (`None`: the value itself, nothing to mask).
    pub masked: Option<Value>,
    /// The value with `redact` hits masked, when there were any: what goes on.
    pub redacted: Option<Value>,
}

impl Scanned {
    /// The first detector whose action is `block`.
    pub fn blocked_by(&self) -> Option<Detector> {
        self.hits
            .iter()
            .find(|h| h.action == Action::Block)
            .map(|h| h.detector)
    }
}

pub fn scan(value: &Value, rules: &Rules, root: &str) -> Scanned {
    let mut found = Vec::new();
    find(value, rules, &mut Vec::new(), &mut found);
    // Most values hold nothing: then nothing is copied and no path is written out.
    if found.is_empty() {
        return Scanned {
            hits: Vec::new(),
            masked: None,
            redacted: None,
        };
    }
    let mut hits = Vec::new();
    let mut masked = value.clone();
    let mut redacted: Option<Value> = None;
    for (at, matches) in &found {
        let path = render_path(root, at);
        hits.extend(matches.iter().filter_map(|m| {
            let action = *rules.actions.get(&m.detector)?;
            Some(Hit {
                detector: m.detector,
                path: path.clone(),
                action,
                normalized: m.normalized,
            })
        }));
        if let Some(Value::String(text)) = locate(&mut masked, at) {
            *text = mask(text, matches);
        }
        let redact: Vec<Match> = matches
            .iter()
            .filter(|m| rules.actions.get(&m.detector) == Some(&Action::Redact))
            .copied()
            .collect();
        if !redact.is_empty() {
            if let Some(Value::String(text)) =
                locate(redacted.get_or_insert_with(|| value.clone()), at)
            {
                *text = mask(text, &redact);
            }
        }
    }
    Scanned {
        hits,
        masked: Some(masked),
        redacted,
    }
}

/// One step from a JSON value to a part of it.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Every string of `value` with the detectors' matches in it, by where it is.
fn find<'a>(
    value: &'a Value,
    rules: &Rules,
    at: &mut Vec<Step<'a>>,
    found: &mut Vec<(Vec<Step<'a>>, Vec<Match>)>,
) {
    match value {
        Value::String(text) => {
            let matches = detect(text, rules);
            if !matches.is_empty() {
                found.push((at.clone(), matches));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push(Step::Index(i));
                find(item, rules, at, found);
                at.pop();
            }
        }
        Value::Object(members) => {
            for (key, member) in members {
                at.push(Step::Key(key));
                find(member, rules, at, found);
                at.pop();
            }
        }
        _ => {}
    }
}

fn locate<'v>(value: &'v mut Value, at: &[Step]) -> Option<&'v mut Value> {
    at.iter().try_fold(value, |v, step| match step {
        Step::Key(key) => v.as_object_mut()?.get_mut(*key),
        Step::Index(i) => v.as_array_mut()?.get_mut(*i),
    })
}

/// The JSON path of a finding (`$.customer.notes[0]`, `$["odd key"]`).
fn render_path(root: &str, at: &[Step]) -> String {
    at.iter().fold(root.to_string(), |path, step| match step {
        Step::Key(key) => child_path(&path, key),
        Step::Index(i) => format!("{path}[{i}]"),
    })
}

/// The enabled detectors' matches in `text`, sorted and non-overlapping. One pass over the
/// text says which detectors can match at all (`scan::gate`).
fn detect(text: &str, rules: &Rules) -> Vec<Match> {
    let gate = Gate::of(text);
    let mut found: Vec<Match> = pii::find_gated(text, gate)
        .into_iter()
        .filter(|m| rules.actions.contains_key(&m.detector))
        .collect();
    if rules.actions.contains_key(&Detector::Ssrf) {
        let ssrf = ssrf::find_gated(text, &rules.ssrf_allow, gate);
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
        Rules {
            actions: actions.iter().copied().collect(),
            ssrf_allow: AllowList::default(),
        }
    }

    #[test]
    fn nested_strings_are_scanned_with_paths_masks_and_actions() {
        let value = json!({"customer": {"notes": ["ssn 536-22-1987", "ok"], "contact": "bob@acme.com"},
                           "weird key": "call +1 415 555 2671"});
        let r = rules(&[
            (Detector::Ssn, Action::Block),
            (Detector::Email, Action::Redact),
            (Detector::Phone, Action::Log),
        ]);
        let s = scan(&value, &r, "$");
        let hits: Vec<(Detector, &str, Action)> = s
            .hits
            .iter()
            .map(|h| (h.detector, h.path.as_str(), h.action))
            .collect();
        assert_eq!(
            hits,
            [
                (Detector::Email, "$.customer.contact", Action::Redact),
                (Detector::Ssn, "$.customer.notes[0]", Action::Block),
                (Detector::Phone, "$[\"weird key\"]", Action::Log),
            ]
        );
        assert_eq!(s.blocked_by(), Some(Detector::Ssn));
        let masked = s.masked.as_ref().unwrap();
        assert_eq!(masked["customer"]["notes"][0], "ssn [REDACTED:ssn]");
        assert_eq!(masked["customer"]["contact"], "[REDACTED:email]");
        assert_eq!(masked["weird key"], "call [REDACTED:phone]");
        let redacted = s.redacted.unwrap();
        assert_eq!(
            redacted["customer"]["contact"], "[REDACTED:email]",
            "redact hits are masked on the wire"
        );
        assert_eq!(
            redacted["customer"]["notes"][0], "ssn 536-22-1987",
            "block and log hits are not"
        );
        assert_eq!(redacted["weird key"], "call +1 415 555 2671");
    }

    #[test]
    fn detectors_without_an_action_are_not_run_and_clean_values_are_not_copied() {
        let value = json!({"a": "bob@acme.com", "n": 5, "ok": [true, null]});
        let s = scan(&value, &rules(&[(Detector::Ssn, Action::Block)]), "$");
        assert_eq!((s.hits.len(), s.redacted, s.masked), (0, None, None));
    }

    #[test]
    fn ssrf_hits_are_reported_once_over_overlapping_pii() {
        let value = json!({"url": "http://bob@127.0.0.1/admin"});
        let r = rules(&[
            (Detector::Ssrf, Action::Block),
            (Detector::Email, Action::Log),
        ]);
        let s = scan(&value, &r, "$");
        assert_eq!(
            s.hits.iter().map(|h| h.detector).collect::<Vec<_>>(),
            [Detector::Ssrf]
        );
        assert_eq!(s.masked.as_ref().unwrap()["url"], "[REDACTED:ssrf]");
    }

    #[test]
    fn normalised_values_are_masked_in_the_original_and_say_what_was_normalised() {
        let value = json!({"note": "SSN ５３６－２２－１２３４ on file", "url": "http://127.0.0.1.nip.io/x",
                           "plain": "SSN 536-22-1234"});
        let r = rules(&[
            (Detector::Ssn, Action::Redact),
            (Detector::Ssrf, Action::Block),
        ]);
        let s = scan(&value, &r, "$");
        let hits: Vec<(&str, Vec<&str>)> = s
            .hits
            .iter()
            .map(|h| (h.path.as_str(), h.normalized.names().collect()))
            .collect();
        assert_eq!(
            hits,
            [
                ("$.note", vec!["fullwidth_digits", "unicode_separators"]),
                ("$.plain", vec![]),
                ("$.url", vec!["wildcard_dns"]),
            ]
        );
        let redacted = s.redacted.unwrap();
        assert_eq!(redacted["note"], "SSN [REDACTED:ssn] on file");
        assert_eq!(redacted["plain"], "SSN [REDACTED:ssn]");
        assert_eq!(s.masked.as_ref().unwrap()["url"], "[REDACTED:ssrf]");
        assert_eq!(
            s.hits[0].normalized.to_record(),
            Some(vec![
                "fullwidth_digits".to_string(),
                "unicode_separators".to_string()
            ])
        );
        assert_eq!(s.hits[1].normalized.to_record(), None);
    }

    #[test]
    fn risk_score_formula() {
        let hit = |d| Hit {
            detector: d,
            path: "$".into(),
            action: Action::Log,
            normalized: Normalized::NONE,
        };
        assert_eq!(risk_score(&[]), 0.0);
        assert_eq!(risk_score(&[hit(Detector::Ssn)]), 0.9);
        assert_eq!(
            risk_score(&[hit(Detector::Email), hit(Detector::Email)]),
            0.2
        );
        assert_eq!(
            risk_score(&[hit(Detector::Email), hit(Detector::Phone)]),
            0.36
        );
        assert_eq!(
            risk_score(&[
                hit(Detector::Ssn),
                hit(Detector::PaymentCard),
                hit(Detector::Ssrf)
            ]),
            0.999
        );
    }
}
