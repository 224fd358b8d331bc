//! `GET /{tenant}/api/v1/stats`: the counts behind the Logs dashboard's charts, computed in SQL
//! over the export API's filters (`from`, `to`, `user`, `tool`, `result`, `event`, `session`,
//! `trace`, `request`, `source`).
//!
//! The timeline cuts the range into buckets of `bucket` seconds aligned on the Unix epoch (UTC)
//! and lists every bucket from the one holding the range's start to the one holding its end,
//! empty ones included. The range is `from`..`to`, or the matching records' first and last
//! timestamps where a bound is not given. Without `bucket`, the smallest of
//! [`AUTO_BUCKETS`] giving at most [`AUTO_BUCKET_COUNT`] buckets is used.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::export::{self, invalid, ParamError};
use crate::store::records::{self, Filter};
use crate::store::{Conn, ConnExt, Value};

/// Bucket sizes (seconds) tried in order when the query gives none.
pub const AUTO_BUCKETS: [i64; 8] = [60, 300, 900, 3600, 10_800, 21_600, 86_400, 604_800];
pub const AUTO_BUCKET_COUNT: i64 = 60;
/// More buckets than this is a `400`.
pub const MAX_BUCKETS: i64 = 1000;
/// The largest `bucket`: 366 days.
pub const MAX_BUCKET_SECONDS: i64 = 31_622_400;
/// Entries of each top list.
const TOP: i64 = 10;
const PARAMS: &str = "from, to, user, tool, result, event, session, trace, request, source, bucket";

#[derive(Debug, Clone, PartialEq)]
pub struct StatsQuery {
    pub filter: Filter,
    /// Seconds.
    pub bucket: Option<i64>,
}

impl StatsQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, ParamError> {
        let mut q = StatsQuery {
            filter: Filter::default(),
            bucket: None,
        };
        for (name, value) in export::query_params(query)? {
            if export::filter_param(&mut q.filter, &name, &value)? {
                continue;
            }
            match name.as_str() {
                "bucket" => {
                    q.bucket = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|s| (1..=MAX_BUCKET_SECONDS).contains(s))
                            .ok_or_else(|| {
                                invalid(
                                    &name,
                                    format!(
                                        "expected whole seconds from 1 to {MAX_BUCKET_SECONDS}"
                                    ),
                                )
                            })?,
                    )
                }
                _ => return Err(invalid(&name, format!("unknown; expected one of {PARAMS}"))),
            }
        }
        export::check_range(&q.filter)?;
        Ok(q)
    }

    /// The bucket size in milliseconds for records spanning `span` (start inclusive, end
    /// exclusive, milliseconds).
    fn bucket_ms(&self, span: (i64, i64)) -> Result<i64, ParamError> {
        let count = |bucket_ms: i64| {
            align(span.1 - 1, bucket_ms) / bucket_ms - align(span.0, bucket_ms) / bucket_ms + 1
        };
        match self.bucket {
            Some(seconds) if count(seconds * 1000) > MAX_BUCKETS => Err(invalid(
                "bucket",
                format!("the range would have more than {MAX_BUCKETS} buckets"),
            )),
            Some(seconds) => Ok(seconds * 1000),
            None => Ok(AUTO_BUCKETS
                .iter()
                .map(|s| s * 1000)
                .find(|&ms| count(ms) <= AUTO_BUCKET_COUNT)
                .unwrap_or_else(|| {
                    let per_bucket = 86_400_000 * AUTO_BUCKET_COUNT;
                    let days = (span.1 - span.0 + per_bucket - 1) / per_bucket;
                    days.max(1) * 86_400_000
                })),
        }
    }
}

/// The start of the epoch-aligned bucket of `bucket_ms` holding `ts`.
fn align(ts: i64, bucket_ms: i64) -> i64 {
    ts - ts.rem_euclid(bucket_ms)
}

/// The answer of the endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub total: u64,
    pub bucket_seconds: i64,
    /// Records per `result`.
    pub by_result: BTreeMap<String, u64>,
    pub timeline: Vec<Bucket>,
    /// By email (or `sub` when there is no email).
    pub top_users: Vec<Count>,
    pub top_tools: Vec<Count>,
    /// Records refused by ACP (`tool.denied`, `auth.failed`) by reason.
    pub top_denials: Vec<Count>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// RFC 3339 UTC.
    pub start: String,
    /// Records per `result`; results without records are left out.
    pub counts: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

/// The first and last timestamps (exclusive end) of `filter`'s records, bounded by its `from`
/// and `to`; `None` when the range is open and no record matches.
fn span(conn: &dyn Conn, filter: &Filter) -> anyhow::Result<Option<(i64, i64)>> {
    let (clause, args) = records::where_clause(filter, None);
    let (first, last): (Option<i64>, Option<i64>) = conn
        .query_opt(
            &format!("SELECT MIN(ts), MAX(ts) FROM records{clause}"),
            &args,
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .unwrap_or_default();
    let start = filter.from.or(first);
    let end = filter.to.or(last.map(|t| t + 1));
    Ok(start.zip(end).filter(|(s, e)| s < e))
}

/// Records per epoch-aligned bucket start and `result`.
fn timeline_counts(
    conn: &dyn Conn,
    filter: &Filter,
    bucket_ms: i64,
) -> anyhow::Result<BTreeMap<i64, BTreeMap<String, u64>>> {
    let (clause, args) = records::where_clause(filter, None);
    let sql = format!(
        "SELECT ts - ((ts % {bucket_ms}) + {bucket_ms}) % {bucket_ms} AS bucket, result, COUNT(*) \
         FROM records{clause} GROUP BY bucket, result"
    );
    let mut counts: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    conn.for_each(&sql, &args, &mut |row| {
        counts
            .entry(row.get(0)?)
            .or_default()
            .insert(row.get(1)?, row.u64(2)?);
        Ok(())
    })?;
    Ok(counts)
}

/// The `TOP` most frequent non-null values of `key` (ties by name).
fn top(conn: &dyn Conn, key: &str, filter: &Filter, extra: &str) -> anyhow::Result<Vec<Count>> {
    let (clause, mut args) = records::where_clause(filter, None);
    let sql = format!(
        "SELECT {key} AS name, COUNT(*) AS n FROM records{clause}{extra} AND {key} IS NOT NULL \
         GROUP BY name ORDER BY n DESC, name LIMIT ?"
    );
    args.push(Value::from(TOP));
    conn.query(&sql, &args, |row| {
        Ok(Count {
            name: row.get(0)?,
            count: row.u64(1)?,
        })
    })
}

/// Why statistics could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The query asks for too many buckets.
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Computes the statistics of `query` (whose filter carries the tenant).
pub fn compute(conn: &dyn Conn, query: &StatsQuery) -> Result<Stats, StatsError> {
    let filter = &query.filter;
    let span = span(conn, filter)?;
    let bucket_ms = match span {
        Some(span) => query.bucket_ms(span)?,
        None => query.bucket.unwrap_or(AUTO_BUCKETS[3]) * 1000,
    };
    let mut counts = timeline_counts(conn, filter, bucket_ms)?;
    let mut by_result = BTreeMap::new();
    for (result, n) in counts.values().flatten() {
        *by_result.entry(result.clone()).or_default() += n;
    }
    let timeline = match span {
        Some((start, end)) => (align(start, bucket_ms)..end)
            .step_by(bucket_ms as usize)
            .map(|start| Bucket {
                start: acp_record::format_timestamp(start).unwrap_or_default(),
                counts: counts.remove(&start).unwrap_or_default(),
            })
            .collect(),
        None => Vec::new(),
    };
    let refused = " AND event IN ('tool.denied', 'auth.failed')";
    let reason = records::json_field(conn.backend(), "reason");
    Ok(Stats {
        total: by_result.values().sum(),
        bucket_seconds: bucket_ms / 1000,
        by_result,
        timeline,
        top_users: top(conn, "COALESCE(email, sub)", filter, "")?,
        top_tools: top(conn, "tool", filter, "")?,
        top_denials: top(conn, &reason, filter, refused)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::tests::sample;
    use crate::store::{self, records};
    use acp_record::AuditRecord;
    use serde_json::{json, Value};

    const HOUR: i64 = 3_600_000;

    fn parse(query: &str) -> Result<StatsQuery, String> {
        StatsQuery::parse(Some(query)).map_err(|e| e.to_string())
    }

    fn store(conn: &rusqlite::Connection, records: &[Value]) {
        for (tseq, value) in records.iter().enumerate() {
            let record: AuditRecord = serde_json::from_value(value.clone()).unwrap();
            let ts = record.timestamp_millis().unwrap();
            let new = records::NewRecord::new(record, ts).unwrap();
            assert!(records::insert(conn, &new, tseq as u64, &[0; 32]).unwrap());
        }
    }

    fn with(id: &str, timestamp: &str, fields: Value) -> Value {
        let mut record = sample(id, timestamp);
        for (name, value) in fields.as_object().unwrap() {
            record[name] = value.clone();
        }
        record
    }

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(r, n)| (r.to_string(), *n)).collect()
    }

    fn top(pairs: &[(&str, u64)]) -> Vec<Count> {
        pairs
            .iter()
            .map(|(name, count)| Count {
                name: name.to_string(),
                count: *count,
            })
            .collect()
    }

    #[test]
    fn parameters_are_the_export_filters_and_a_bucket() {
        let q = parse("from=2026-03-01&to=2026-03-02&user=bob&result=denied&bucket=900").unwrap();
        assert_eq!(q.bucket, Some(900));
        assert_eq!(q.filter.user.as_deref(), Some("bob"));
        assert_eq!(q.filter.result.as_deref(), Some("denied"));
        assert_eq!(q.filter.to.unwrap() - q.filter.from.unwrap(), 48 * HOUR);
        for (query, start) in [
            ("bucket=0", "invalid parameter `bucket`: "),
            ("bucket=31622401", "invalid parameter `bucket`: "),
            ("bucket=1h", "invalid parameter `bucket`: "),
            ("format=csv", "invalid parameter `format`: unknown"),
            ("result=ok", "invalid parameter `result`: "),
            (
                "user=a&user=b",
                "invalid parameter `user`: given more than once",
            ),
            ("from=2026-03-02&to=2026-03-01", "invalid parameter `to`: "),
        ] {
            let err = parse(query).unwrap_err();
            assert!(err.starts_with(start), "{query}: {err}");
        }
    }

    #[test]
    fn buckets_fit_the_span() {
        let auto = StatsQuery::parse(None).unwrap();
        assert_eq!(auto.bucket_ms((0, 30 * 60_000)), Ok(60_000));
        assert_eq!(auto.bucket_ms((0, 60 * 60_000)), Ok(60_000));
        assert_eq!(auto.bucket_ms((0, 60 * 60_000 + 1)), Ok(300_000));
        assert_eq!(auto.bucket_ms((9 * HOUR, 81 * HOUR)), Ok(3 * HOUR));
        let ten_years = 3650 * 24 * HOUR;
        assert_eq!(auto.bucket_ms((0, ten_years)), Ok(61 * 24 * HOUR));
        let fixed = parse("bucket=60").unwrap();
        assert_eq!(fixed.bucket_ms((0, 1000 * 60_000)), Ok(60_000));
        assert!(fixed.bucket_ms((0, 1000 * 60_000 + 1)).is_err());
        assert_eq!(align(-1, 1000), -1000);
        assert_eq!(align(1999, 1000), 1000);
    }

    #[test]
    fn counts_by_bucket_result_user_tool_and_denial() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::testing::open_rw(&dir.path().join("db"));
        let bob = json!({"sub": "auth0|bob", "email": null, "tool": "files.read"});
        store(
            &conn,
            &[
                sample("a", "2026-03-10T09:10:00.000Z"),
                sample("b", "2026-03-10T09:50:00.000Z"),
                with(
                    "c",
                    "2026-03-10T09:59:59.999Z",
                    json!({"event": "tool.denied", "result": "denied",
                           "reason": "insufficient_scope", "tool": "salesforce.update"}),
                ),
                with("d", "2026-03-10T12:00:00.000Z", bob.clone()),
                with(
                    "e",
                    "2026-03-10T12:30:00.000Z",
                    json!({"event": "auth.failed", "result": "auth_failed", "reason": "expired",
                           "sub": null, "email": null, "tool": null}),
                ),
                with(
                    "f",
                    "2026-03-10T12:40:00.000Z",
                    json!({"tenantId": "org_other"}),
                ),
            ],
        );
        let query = |q: &str| {
            let mut q = parse(q).unwrap();
            q.filter.tenant = "org_acme_corp".into();
            compute(&conn, &q).unwrap()
        };

        let stats = query("bucket=3600");
        assert_eq!(stats.total, 5);
        assert_eq!(stats.bucket_seconds, 3600);
        assert_eq!(
            stats.by_result,
            counts(&[("auth_failed", 1), ("denied", 1), ("success", 3)])
        );
        let timeline: Vec<(&str, BTreeMap<String, u64>)> = stats
            .timeline
            .iter()
            .map(|b| (b.start.as_str(), b.counts.clone()))
            .collect();
        assert_eq!(
            timeline,
            [
                (
                    "2026-03-10T09:00:00.000Z",
                    counts(&[("denied", 1), ("success", 2)])
                ),
                ("2026-03-10T10:00:00.000Z", counts(&[])),
                ("2026-03-10T11:00:00.000Z", counts(&[])),
                (
                    "2026-03-10T12:00:00.000Z",
                    counts(&[("auth_failed", 1), ("success", 1)])
                ),
            ]
        );
        assert_eq!(
            stats.top_users,
            top(&[("alice@acme.com", 3), ("auth0|bob", 1)])
        );
        assert_eq!(
            stats.top_tools,
            top(&[
                ("salesforce.query", 2),
                ("files.read", 1),
                ("salesforce.update", 1)
            ])
        );
        assert_eq!(
            stats.top_denials,
            top(&[("expired", 1), ("insufficient_scope", 1)])
        );

        // The range given is the timeline's, whatever the records; filters apply to every count.
        let stats = query("from=2026-03-10T08:00:00Z&to=2026-03-10T10:00:00Z&user=alice@acme.com");
        assert_eq!(
            stats.bucket_seconds, 300,
            "two hours: 5 minutes is the first size <= 60"
        );
        assert_eq!(stats.timeline.len(), 24);
        assert_eq!(stats.by_result, counts(&[("denied", 1), ("success", 2)]));
        assert_eq!(stats.top_denials, top(&[("insufficient_scope", 1)]));

        let none = query("user=nobody");
        assert_eq!((none.total, none.timeline.len()), (0, 0));
        assert!(none.top_users.is_empty() && none.by_result.is_empty());

        let mut too_many = parse("bucket=1&from=2026-03-10&to=2026-03-11").unwrap();
        too_many.filter.tenant = "org_acme_corp".into();
        assert!(compute(&conn, &too_many).is_err());
    }

    #[test]
    fn every_query_uses_the_tenant_index() {
        let dir = tempfile::tempdir().unwrap();
        let conn = store::testing::open_rw(&dir.path().join("db"));
        let filter = Filter {
            tenant: "t".into(),
            from: Some(0),
            to: Some(HOUR),
            ..Filter::default()
        };
        let (clause, args) = records::where_clause(&filter, None);
        for select in [
            "MIN(ts), MAX(ts)",
            "COALESCE(email, sub), COUNT(*)",
            "ts - ts % 60000, result, COUNT(*)",
        ] {
            let plan: String = conn
                .query_row(
                    &format!("EXPLAIN QUERY PLAN SELECT {select} FROM records{clause}"),
                    rusqlite::params_from_iter(args.clone()),
                    |row| row.get(3),
                )
                .unwrap();
            assert!(plan.contains("records_export"), "{select}: {plan}");
        }
    }
}
