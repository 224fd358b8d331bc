//! What each SOC 2 control's evidence says about a period's records: plain functions over the
//! records' JSON (the stored, canonical form).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::access::AccessReview;

fn text<'a>(record: &'a Value, field: &str) -> &'a str {
    record.get(field).and_then(Value::as_str).unwrap_or("")
}

fn with_result<'a>(records: &'a [Value], results: &[&str]) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| results.contains(&text(r, "result")))
        .collect()
}

fn count_by<'a>(
    records: impl IntoIterator<Item = &'a Value>,
    key: impl Fn(&'a Value) -> Vec<String>,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        for k in key(r) {
            *counts.entry(k).or_insert(0) += 1;
        }
    }
    counts
}

fn reason(r: &Value) -> Vec<String> {
    vec![text(r, "reason").to_owned()]
}

/// Summary and records of CC6.1, CC6.2, CC6.3 and CC7.2, by control id; `review` is the
/// access review of `records`.
pub fn record_controls(records: &[Value], review: &AccessReview) -> Vec<(&'static str, Value)> {
    let failed = with_result(records, &["auth_failed"]);
    let users = &review.users;
    let denied = with_result(records, &["denied"]);
    let flagged = with_result(records, &["blocked", "rate_limited"]);
    let detectors = |r: &Value| -> Vec<String> {
        r.pointer("/contentScan/findings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|f| f.get("action").and_then(Value::as_str) == Some("block"))
            .filter_map(|f| f.get("type").and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    vec![
        (
            "CC6.1",
            json!({
                "title": "Logical access: every call needs a verified token; failed authentications",
                "summary": {"records": records.len(), "failedAuthentications": failed.len(), "byReason": count_by(failed.iter().copied(), reason)},
                "records": failed,
            }),
        ),
        (
            "CC6.2",
            json!({
                "title": "Authentication: distinct users and their emails, from verified tokens",
                "summary": {"users": users.len(), "withoutEmail": users.iter().filter(|u| u.emails.is_empty()).count()},
                "records": users.iter().map(|u| json!({"sub": u.sub, "emails": u.emails})).collect::<Vec<_>>(),
            }),
        ),
        (
            "CC6.3",
            json!({
                "title": "Authorization: denied calls, scopes held vs scopes required; least privilege: held scopes no call required (access-review/)",
                "summary": {"denied": denied.len(), "byTool": count_by(denied.iter().copied(), |r| vec![text(r, "tool").to_owned()]), "byReason": count_by(denied.iter().copied(), reason),
                    "unusedScopeCandidates": {"users": review.user_candidates().count(), "clientTypes": review.client_type_candidates().count()}},
                "records": denied.iter().map(|r| json!({
                    "id": r["id"], "timestamp": r["timestamp"], "sub": r["sub"], "email": r["email"], "tool": r["tool"],
                    "scopes": r["scopes"], "scopeRequired": r["scopeRequired"], "reason": r["reason"],
                })).collect::<Vec<_>>(),
            }),
        ),
        (
            "CC7.2",
            json!({
                "title": "Monitoring: calls blocked by content scanning (PII, secrets, SSRF) and rate limits",
                "summary": {
                    "blocked": with_result(records, &["blocked"]).len(),
                    "rateLimited": with_result(records, &["rate_limited"]).len(),
                    "blockedByDetector": count_by(flagged.iter().copied(), detectors),
                },
                "records": flagged,
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sub: &str, result: &str, tool: &str, ts: &str) -> Value {
        json!({"id": format!("{sub}-{ts}"), "sub": sub, "email": format!("{sub}@x.example"), "result": result, "tool": tool,
               "timestamp": ts, "scopes": [format!("{tool}:read")], "scopeRequired": [format!("{tool}:write")], "reason": "r"})
    }

    #[test]
    fn access_review_and_controls_count_what_they_show() {
        let records = vec![
            record("bob", "success", "crm", "2026-01-02T00:00:00.000Z"),
            record("alice", "denied", "hr", "2026-01-03T00:00:00.000Z"),
            record("alice", "success", "crm", "2026-01-01T00:00:00.000Z"),
            json!({"id": "x", "sub": null, "result": "auth_failed", "reason": "token_expired", "timestamp": "2026-01-04T00:00:00.000Z"}),
            json!({"id": "y", "sub": "bob", "result": "blocked", "tool": "crm", "timestamp": "2026-01-05T00:00:00.000Z",
                   "contentScan": {"findings": [{"type": "ssn", "action": "block"}, {"type": "email", "action": "log"}]}}),
        ];
        let review = crate::evidence::access::review(&records);
        assert_eq!(
            review
                .users
                .iter()
                .map(|a| a.sub.as_str())
                .collect::<Vec<_>>(),
            ["alice", "bob"]
        );
        let alice = &review.users[0];
        assert_eq!(
            alice.tools,
            BTreeMap::from([("crm".into(), 1), ("hr".into(), 1)])
        );
        assert_eq!(
            alice.usage.scopes,
            std::collections::BTreeSet::from(["crm:read".into(), "hr:read".into()])
        );
        assert_eq!(
            (alice.first_seen.as_str(), alice.last_seen.as_str()),
            ("2026-01-01T00:00:00.000Z", "2026-01-03T00:00:00.000Z")
        );
        let controls: BTreeMap<_, _> = record_controls(&records, &review).into_iter().collect();
        assert_eq!(
            controls["CC6.1"]["summary"]["byReason"],
            json!({"token_expired": 1})
        );
        assert_eq!(controls["CC6.2"]["summary"]["users"], 2);
        assert_eq!(
            controls["CC6.3"]["summary"]["unusedScopeCandidates"],
            json!({"users": 2, "clientTypes": 1}),
            "alice and bob hold <tool>:read and were required <tool>:write; bob's blocked call has no scopes"
        );
        assert_eq!(
            controls["CC6.3"]["records"][0]["scopeRequired"],
            json!(["hr:write"])
        );
        assert_eq!(
            controls["CC7.2"]["summary"]["blockedByDetector"],
            json!({"ssn": 1})
        );
    }
}
