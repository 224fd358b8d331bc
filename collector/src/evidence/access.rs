//! The least-privilege access review of a period: per user and per client type, the scopes
//! their tokens held, the scopes the tools they called required, and the held scopes no call
//! needed (`unusedScopes`, the candidates for removal). Plain functions over the records' JSON;
//! [`load`] folds a period's stored records into it one by one.
//!
//! What a call required is the record's `scopeRequired`: the scopes the tool's policy entry
//! names, all of them needed, as the filter evaluated it at the time of the call. A refused call
//! still shows what its tool required: a call denied for a missing scope, or blocked, or
//! rate-limited after the scope check, needed those scopes as much as an allowed one, so they
//! are not unused; the scopes such a call lacked are `missingScopes`. Calls whose authorization
//! was not evaluated (`scopeRequired` null: a failed authentication, an unknown tool, a
//! malformed request) need nothing. Held scopes are the union over the period's records of
//! the token's `scopes`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::store::Conn;

fn text<'a>(record: &'a Value, field: &str) -> Option<&'a str> {
    record
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn strings(record: &Value, field: &str) -> Option<BTreeSet<String>> {
    let list = record.get(field)?.as_array()?;
    Some(
        list.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
    )
}

/// Held, required and unused scopes of one user or client type.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopeUsage {
    /// Every scope the tokens held in the period.
    pub scopes: BTreeSet<String>,
    /// Every scope a called tool required (allowed or refused calls).
    pub scopes_required: BTreeSet<String>,
    /// Held scopes that no call required: candidates for removal.
    pub unused_scopes: BTreeSet<String>,
    /// Scopes a call required that its token did not hold (calls denied for a scope).
    pub missing_scopes: BTreeSet<String>,
    pub counts: Counts,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Records of the period.
    pub records: usize,
    /// Calls whose authorization was evaluated (`scopeRequired` set).
    pub authorized_calls: usize,
    /// Of those, the ones refused for a missing scope (`scopeResult` fail).
    pub denied_for_scope: usize,
    pub scopes: usize,
    pub scopes_required: usize,
    pub unused_scopes: usize,
}

impl ScopeUsage {
    fn add(&mut self, record: &Value) {
        self.counts.records += 1;
        let held = strings(record, "scopes").unwrap_or_default();
        if let Some(required) = strings(record, "scopeRequired") {
            self.counts.authorized_calls += 1;
            if text(record, "scopeResult") == Some("fail") {
                self.counts.denied_for_scope += 1;
            }
            self.missing_scopes
                .extend(required.difference(&held).cloned());
            self.scopes_required.extend(required);
        }
        self.scopes.extend(held);
    }

    fn finish(&mut self) {
        self.unused_scopes = self
            .scopes
            .difference(&self.scopes_required)
            .cloned()
            .collect();
        self.counts.scopes = self.scopes.len();
        self.counts.scopes_required = self.scopes_required.len();
        self.counts.unused_scopes = self.unused_scopes.len();
    }
}

/// One user's access in the period.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    pub sub: String,
    pub emails: BTreeSet<String>,
    #[serde(flatten)]
    pub usage: ScopeUsage,
    /// Tool calls per tool.
    pub tools: BTreeMap<String, usize>,
    /// Records per result.
    pub results: BTreeMap<String, usize>,
    pub first_seen: String,
    pub last_seen: String,
}

/// One client type's access in the period (`clientType` null: clients the configuration does
/// not map).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTypeAccess {
    pub client_type: Option<String>,
    pub client_ids: BTreeSet<String>,
    #[serde(flatten)]
    pub usage: ScopeUsage,
    pub users: usize,
}

/// The review: users (by `sub`; records without one, failed authentications, are not a user's)
/// and client types, each in name order.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessReview {
    pub users: Vec<Access>,
    pub client_types: Vec<ClientTypeAccess>,
}

impl AccessReview {
    /// Users with scopes no call needed.
    pub fn user_candidates(&self) -> impl Iterator<Item = &Access> {
        self.users
            .iter()
            .filter(|u| !u.usage.unused_scopes.is_empty())
    }

    /// Client types with scopes no call needed.
    pub fn client_type_candidates(&self) -> impl Iterator<Item = &ClientTypeAccess> {
        self.client_types
            .iter()
            .filter(|c| !c.usage.unused_scopes.is_empty())
    }
}

/// Folds records into an [`AccessReview`].
#[derive(Default)]
pub struct Reviewer {
    users: BTreeMap<String, Access>,
    client_types: BTreeMap<Option<String>, (ClientTypeAccess, BTreeSet<String>)>,
}

impl Reviewer {
    pub fn add(&mut self, record: &Value) {
        let sub = text(record, "sub");
        let client_type = text(record, "clientType").map(str::to_owned);
        let (client, subs) = self
            .client_types
            .entry(client_type.clone())
            .or_insert_with(|| {
                let access = ClientTypeAccess {
                    client_type,
                    ..ClientTypeAccess::default()
                };
                (access, BTreeSet::new())
            });
        client.usage.add(record);
        client
            .client_ids
            .extend(text(record, "clientId").map(str::to_owned));
        subs.extend(sub.map(str::to_owned));
        let Some(sub) = sub else { return };
        let ts = text(record, "timestamp").unwrap_or("").to_owned();
        let user = self.users.entry(sub.to_owned()).or_insert_with(|| Access {
            sub: sub.to_owned(),
            first_seen: ts.clone(),
            last_seen: ts.clone(),
            ..Access::default()
        });
        user.usage.add(record);
        user.emails.extend(text(record, "email").map(str::to_owned));
        if let Some(tool) = text(record, "tool") {
            *user.tools.entry(tool.to_owned()).or_insert(0) += 1;
        }
        let result = text(record, "result").unwrap_or("").to_owned();
        *user.results.entry(result).or_insert(0) += 1;
        user.first_seen = user.first_seen.clone().min(ts.clone());
        user.last_seen = user.last_seen.clone().max(ts);
    }

    pub fn finish(self) -> AccessReview {
        let users = self
            .users
            .into_values()
            .map(|mut u| {
                u.usage.finish();
                u
            })
            .collect();
        let client_types = self
            .client_types
            .into_values()
            .map(|(mut c, subs)| {
                c.usage.finish();
                c.users = subs.len();
                c
            })
            .collect();
        AccessReview {
            users,
            client_types,
        }
    }
}

/// The review of `records`.
pub fn review<'a>(records: impl IntoIterator<Item = &'a Value>) -> AccessReview {
    let mut reviewer = Reviewer::default();
    for record in records {
        reviewer.add(record);
    }
    reviewer.finish()
}

/// The review of `tenant`'s records with a timestamp in `[from_ms, to_ms)`, read from the store
/// one record at a time (the `records_export` index bounds the scan to the period).
pub fn load(
    conn: &dyn Conn,
    tenant: &str,
    from_ms: i64,
    to_ms: i64,
) -> anyhow::Result<AccessReview> {
    let mut reviewer = Reviewer::default();
    conn.for_each(
        "SELECT json FROM records WHERE tenant = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts, seq",
        &[tenant.into(), from_ms.into(), to_ms.into()],
        &mut |row| {
            reviewer.add(&serde_json::from_str(row.text(0)?)?);
            Ok(())
        },
    )?;
    Ok(reviewer.finish())
}

/// `from` and `to` of `GET /{tenant}/api/v1/access-review` (dates or RFC 3339 times, as in the
/// export API), both required.
pub fn parse_period(params: &[(String, String)]) -> Result<(i64, i64), String> {
    let (mut from, mut to) = (None, None);
    for (name, value) in params {
        let end = match name.as_str() {
            "from" => false,
            "to" => true,
            other => {
                return Err(format!(
                    "invalid parameter `{other}`: unknown; expected from, to"
                ))
            }
        };
        let time = crate::export::parse_time(name, value, end).map_err(|e| e.to_string())?;
        *(if end { &mut to } else { &mut from }) = Some(time);
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err("`from` and `to` are required".into());
    };
    if to <= from {
        return Err("invalid parameter `to`: must be later than `from`".into());
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(
        sub: &str,
        client: &str,
        tool: &str,
        held: &[&str],
        required: Option<&[&str]>,
        result: &str,
    ) -> Value {
        let scope_result = match required {
            Some(r) if r.iter().all(|s| held.contains(s)) => json!("pass"),
            Some(_) => json!("fail"),
            None => Value::Null,
        };
        json!({"sub": sub, "email": format!("{sub}@acme.com"), "clientType": client, "clientId": format!("{client}-app"),
               "tool": tool, "scopes": held, "scopeRequired": required, "scopeResult": scope_result,
               "result": result, "timestamp": "2026-03-15T10:00:00.000Z"})
    }

    #[test]
    fn unused_scopes_are_held_scopes_no_call_required() {
        let records = [
            call(
                "alice",
                "claude-desktop",
                "crm.read",
                &["crm:read", "crm:write", "hr:read"],
                Some(&["crm:read"]),
                "success",
            ),
            // Denied for a scope: hr:write is missing, not unused.
            call(
                "alice",
                "claude-desktop",
                "hr.update",
                &["crm:read", "crm:write", "hr:read"],
                Some(&["hr:read", "hr:write"]),
                "denied",
            ),
            // Blocked by content scanning after the scope check: crm:write was still needed.
            call(
                "bob",
                "cursor",
                "crm.update",
                &["crm:write", "admin"],
                Some(&["crm:write"]),
                "blocked",
            ),
            // Unknown tool: nothing evaluated, nothing required.
            call(
                "bob",
                "cursor",
                "nope",
                &["crm:write", "admin"],
                None,
                "denied",
            ),
            json!({"sub": null, "result": "auth_failed", "scopes": [], "scopeRequired": null, "clientType": null}),
        ];
        let review = review(&records);
        let alice = &review.users[0];
        assert_eq!(alice.sub, "alice");
        assert_eq!(
            alice.usage.unused_scopes,
            BTreeSet::from(["crm:write".into()])
        );
        assert_eq!(
            alice.usage.missing_scopes,
            BTreeSet::from(["hr:write".into()])
        );
        assert_eq!(
            alice.usage.scopes_required,
            BTreeSet::from(["crm:read".into(), "hr:read".into(), "hr:write".into()])
        );
        assert_eq!(
            (
                alice.usage.counts.authorized_calls,
                alice.usage.counts.denied_for_scope,
                alice.usage.counts.unused_scopes
            ),
            (2, 1, 1)
        );
        let bob = &review.users[1];
        assert_eq!(bob.usage.unused_scopes, BTreeSet::from(["admin".into()]));
        assert_eq!(bob.usage.counts.records, 2);
        assert_eq!(review.users.len(), 2, "a failed authentication is nobody's");

        let names: Vec<Option<&str>> = review
            .client_types
            .iter()
            .map(|c| c.client_type.as_deref())
            .collect();
        assert_eq!(names, [None, Some("claude-desktop"), Some("cursor")]);
        let cursor = &review.client_types[2];
        assert_eq!((cursor.users, cursor.usage.counts.records), (1, 2));
        assert_eq!(cursor.client_ids, BTreeSet::from(["cursor-app".into()]));
        assert_eq!(cursor.usage.unused_scopes, BTreeSet::from(["admin".into()]));
        assert_eq!(review.user_candidates().count(), 2);
        assert_eq!(review.client_type_candidates().count(), 2);
        let json = serde_json::to_value(&review.users[1]).unwrap();
        assert_eq!(json["unusedScopes"], json!(["admin"]));
        assert_eq!(json["counts"]["unusedScopes"], 1);
    }

    #[test]
    fn the_period_is_required_and_ordered() {
        let p = |pairs: &[(&str, &str)]| {
            parse_period(
                &pairs
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        let (from, to) = p(&[("from", "2026-03-01"), ("to", "2026-03-01")]).unwrap();
        assert_eq!(to - from, 86_400_000);
        assert!(p(&[("from", "2026-03-01")]).is_err());
        assert!(p(&[("from", "2026-03-02"), ("to", "2026-03-01")]).is_err());
        assert!(
            p(&[("from", "2026-03-01"), ("to", "2026-03-02"), ("user", "x")])
                .unwrap_err()
                .starts_with("invalid parameter `user`")
        );
    }
}
