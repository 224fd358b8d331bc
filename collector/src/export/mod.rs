//! The export of records ([`crate::http::export`] serves it as `GET /{tenant}/api/v1/audit`,
//! the export API for auditors): its query, pages and streamed chunks.
//!
//! Authorization: `Bearer gsk_...`, a key bound to `{tenant}` (401 when missing, unknown or
//! revoked; 403 when it belongs to another tenant). Records come in `(timestamp, arrival)`
//! order. Pages are cut by keyset: the cursor is the opaque base64url of the last record's
//! `(timestamp, seq)`, so a page is found by index whatever its depth. NDJSON and CSV without
//! `limit` stream the whole range page by page from a blocking task, with no next link.

pub mod formats;
pub mod stats;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDate};
use tokio::sync::mpsc;

use acp_record::{Event, Outcome};

use crate::ledger::proofs::Prover;
use crate::store::records::{self, Filter, Position};
use crate::store::Conn;
use formats::Format;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// Records read from SQLite per chunk of a streamed body.
const STREAM_CHUNK: usize = 1000;
const PARAMS: &str =
    "from, to, user, tool, result, event, session, trace, request, source, format, limit, cursor, proof";

/// A parsed export query string.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportQuery {
    /// Everything but the tenant, which comes from the path.
    pub filter: Filter,
    pub format: Format,
    pub limit: Option<usize>,
    pub cursor: Option<Position>,
    /// Add inclusion proofs ([`crate::ledger::proofs`]).
    pub proof: bool,
    /// The parameters as given, to build the next page's URL from.
    params: Vec<(String, String)>,
}

/// `invalid parameter `name`: reason`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid parameter `{name}`: {reason}")]
pub struct ParamError {
    name: String,
    reason: String,
}

pub fn invalid(name: &str, reason: impl Into<String>) -> ParamError {
    ParamError {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

impl ExportQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, ParamError> {
        let params = query_params(query)?;
        let mut q = ExportQuery {
            filter: Filter::default(),
            format: Format::Json,
            limit: None,
            cursor: None,
            proof: false,
            params: Vec::new(),
        };
        for (name, value) in &params {
            if filter_param(&mut q.filter, name, value)? {
                continue;
            }
            match name.as_str() {
                "format" => {
                    q.format = Format::parse(value).ok_or_else(|| {
                        invalid(name, format!("expected one of {}", Format::NAMES))
                    })?
                }
                "limit" => {
                    q.limit = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|n| (1..=MAX_LIMIT).contains(n))
                            .ok_or_else(|| {
                                invalid(name, format!("expected an integer from 1 to {MAX_LIMIT}"))
                            })?,
                    )
                }
                "cursor" => q.cursor = Some(decode_cursor(value)?),
                "proof" => {
                    q.proof = value
                        .parse()
                        .map_err(|_| invalid(name, "expected true or false"))?
                }
                _ => return Err(invalid(name, format!("unknown; expected one of {PARAMS}"))),
            }
        }
        if q.proof && q.format == Format::Csv {
            return Err(invalid("proof", "needs format json or ndjson"));
        }
        check_range(&q.filter)?;
        q.params = params;
        Ok(q)
    }

    /// Whether the whole range is streamed in one body instead of paginated.
    pub fn streams(&self) -> bool {
        self.limit.is_none() && self.format != Format::Json
    }

    /// `path?<same parameters>&cursor=<after>`.
    pub fn next_url(&self, path: &str, after: Position) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.params.iter().filter(|(name, _)| name != "cursor"))
            .append_pair("cursor", &encode_cursor(after))
            .finish();
        format!("{path}?{query}")
    }
}

/// The decoded parameters of a query string; a name given twice is an error.
pub fn query_params(query: Option<&str>) -> Result<Vec<(String, String)>, ParamError> {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    for (i, (name, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(seen, _)| seen == name) {
            return Err(invalid(name, "given more than once"));
        }
    }
    Ok(params)
}

/// Sets the record filter parameter `name` (`from`, `to`, `user`, `tool`, `result`, `event`,
/// `session`, `trace`, `request`, `source`) on `filter`; `Ok(false)` when `name` is none of
/// them.
pub fn filter_param(filter: &mut Filter, name: &str, value: &str) -> Result<bool, ParamError> {
    let text = || non_empty(name, value);
    match name {
        "from" => filter.from = Some(parse_time(name, value, false)?),
        "to" => filter.to = Some(parse_time(name, value, true)?),
        "user" => filter.user = Some(text()?),
        "tool" => filter.tool = Some(text()?),
        "result" => filter.result = Some(wire_enum::<Outcome>(name, value)?),
        "event" => filter.event = Some(wire_enum::<Event>(name, value)?),
        "session" => filter.session = Some(text()?),
        "trace" => filter.trace = Some(text()?),
        "request" => filter.request = Some(text()?),
        "source" => filter.source = Some(text()?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// `to` must come after `from`.
pub fn check_range(filter: &Filter) -> Result<(), ParamError> {
    match (filter.from, filter.to) {
        (Some(from), Some(to)) if to <= from => Err(invalid("to", "must be later than `from`")),
        _ => Ok(()),
    }
}

fn non_empty(name: &str, value: &str) -> Result<String, ParamError> {
    if value.is_empty() {
        Err(invalid(name, "must not be empty"))
    } else {
        Ok(value.to_owned())
    }
}

/// Checks `value` against the record schema's enum `T` and returns it as a wire name.
fn wire_enum<'de, T: serde::Deserialize<'de> + serde::Serialize>(
    name: &str,
    value: &'de str,
) -> Result<String, ParamError> {
    use serde::de::IntoDeserializer;
    let parsed = T::deserialize(value.into_deserializer())
        .map_err(|e: serde::de::value::Error| invalid(name, e.to_string()))?;
    records::wire_name(&parsed).map_err(|e| invalid(name, e.to_string()))
}

/// Milliseconds since the epoch of a date (`YYYY-MM-DD`, UTC) or an RFC 3339 time.
/// A date means its start, or its end (the next day's start) when `end_of_day`. A time with
/// sub-millisecond digits is rounded up, which keeps `from` inclusive and `to` exclusive.
pub fn parse_time(name: &str, value: &str, end_of_day: bool) -> Result<i64, ParamError> {
    if value.len() == 10 {
        if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            let day = if end_of_day {
                date.succ_opt()
            } else {
                Some(date)
            };
            return day
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis())
                .ok_or_else(|| invalid(name, "date out of range"));
        }
    }
    let time = DateTime::parse_from_rfc3339(value).map_err(|e| {
        invalid(
            name,
            format!("{value:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time ({e})"),
        )
    })?;
    let sub_milli = time.timestamp_subsec_nanos() % 1_000_000 != 0;
    Ok(time.timestamp_millis() + i64::from(sub_milli))
}

/// The cursor: `(ts, seq)` as 16 big-endian bytes in unpadded base64url.
fn encode_cursor(p: Position) -> String {
    let packed = (u128::from(p.ts as u64) << 64) | u128::from(p.seq as u64);
    URL_SAFE_NO_PAD.encode(packed.to_be_bytes())
}

fn decode_cursor(cursor: &str) -> Result<Position, ParamError> {
    let bytes: [u8; 16] = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("cursor", "not a cursor from a previous page"))?;
    let packed = u128::from_be_bytes(bytes);
    Ok(Position {
        ts: (packed >> 64) as u64 as i64,
        seq: packed as u64 as i64,
    })
}

/// One page of at most `limit` records, and the next page's URL when there are more.
pub fn page(
    conn: &dyn Conn,
    query: &ExportQuery,
    path: &str,
) -> anyhow::Result<(Vec<u8>, Option<String>)> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let mut records = records::query_page(conn, &query.filter, query.cursor, limit + 1)?;
    let next = if records.len() > limit {
        records.truncate(limit);
        records.last().map(|r| query.next_url(path, r.position))
    } else {
        None
    };
    let body = if query.proof {
        Prover::load(conn, &query.filter.tenant)?.page(&records, next.as_deref())?
    } else {
        query.format.page(&records, next.as_deref())?
    };
    Ok((body, next))
}

pub type Chunk = Result<Vec<u8>, std::io::Error>;

/// Sends the whole range as body chunks. Stops early when the client has gone; on a read
/// error, sends the error, which aborts the response (the client sees a truncated body).
pub fn stream(conn: &dyn Conn, query: &ExportQuery, chunks: &mpsc::Sender<Chunk>) {
    if let Err(err) = send_chunks(conn, query, chunks) {
        tracing::warn!(error = format!("{err:#}"), "export stream failed");
        let _ = chunks.blocking_send(Err(std::io::Error::other(err.to_string())));
    }
}

fn send_chunks(
    conn: &dyn Conn,
    query: &ExportQuery,
    chunks: &mpsc::Sender<Chunk>,
) -> anyhow::Result<()> {
    let prover = query
        .proof
        .then(|| Prover::load(conn, &query.filter.tenant))
        .transpose()?;
    let mut after = query.cursor;
    let mut first = true;
    loop {
        let (bytes, last) = stream_chunk(conn, query, prover.as_ref(), after, first)?;
        if !bytes.is_empty() && chunks.blocking_send(Ok(bytes)).is_err() {
            return Ok(());
        }
        match last {
            Some(position) => after = Some(position),
            None => return Ok(()),
        }
        first = false;
    }
}

/// The next chunk, and the position to go on after when it was full.
fn stream_chunk(
    conn: &dyn Conn,
    query: &ExportQuery,
    prover: Option<&Prover>,
    after: Option<Position>,
    first: bool,
) -> anyhow::Result<(Vec<u8>, Option<Position>)> {
    let records = records::query_page(conn, &query.filter, after, STREAM_CHUNK)?;
    let bytes = match prover {
        Some(prover) => prover.ndjson(&records, first)?,
        None => query.format.rows(&records, first)?,
    };
    let full = records.len() == STREAM_CHUNK;
    Ok((bytes, records.last().filter(|_| full).map(|r| r.position)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<ExportQuery, String> {
        ExportQuery::parse(Some(query)).map_err(|e| e.to_string())
    }

    fn millis(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn dates_cover_whole_utc_days() {
        let q = parse("from=2026-03-01&to=2026-03-31").unwrap();
        assert_eq!(q.filter.from, Some(millis("2026-03-01T00:00:00Z")));
        assert_eq!(q.filter.to, Some(millis("2026-04-01T00:00:00Z")));
        let q = parse("from=2026-03-01&to=2026-03-01").unwrap();
        assert_eq!(q.filter.to, Some(millis("2026-03-02T00:00:00Z")));
        let q = parse("to=2024-02-28").unwrap();
        assert_eq!(q.filter.to, Some(millis("2024-02-29T00:00:00Z")));
    }

    #[test]
    fn times_are_rfc3339_with_from_inclusive_and_to_exclusive() {
        let q = parse("from=2026-03-15T14:23:07.142Z&to=2026-03-15T17:00:00%2B02:00").unwrap();
        assert_eq!(q.filter.from, Some(millis("2026-03-15T14:23:07.142Z")));
        assert_eq!(q.filter.to, Some(millis("2026-03-15T15:00:00Z")));
        let q = parse("from=2026-03-15T14:23:07.1421Z").unwrap();
        assert_eq!(q.filter.from, Some(millis("2026-03-15T14:23:07.143Z")));
    }

    #[test]
    fn filters_format_and_limit() {
        let q = parse(
            "user=alice%40acme.com&tool=salesforce.query&result=auth_failed\
                       &event=tool.denied&format=csv&limit=1000",
        )
        .unwrap();
        assert_eq!(q.filter.user.as_deref(), Some("alice@acme.com"));
        assert_eq!(q.filter.tool.as_deref(), Some("salesforce.query"));
        assert_eq!(q.filter.result.as_deref(), Some("auth_failed"));
        assert_eq!(q.filter.event.as_deref(), Some("tool.denied"));
        assert_eq!((q.format, q.limit), (Format::Csv, Some(1000)));
        assert!(!q.streams());
        assert!(parse("format=ndjson").unwrap().streams());
        assert!(!parse("").unwrap().streams());
        assert_eq!(ExportQuery::parse(None).unwrap().format, Format::Json);
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (query, start) in [
            ("from=yesterday", "invalid parameter `from`: "),
            ("from=2026-02-30", "invalid parameter `from`: "),
            ("to=2026-03-15T14:23:07", "invalid parameter `to`: "),
            ("from=2026-03-02&to=2026-03-01", "invalid parameter `to`: "),
            (
                "from=2026-03-01T00:00:00Z&to=2026-03-01T00:00:00Z",
                "invalid parameter `to`: ",
            ),
            ("user=", "invalid parameter `user`: "),
            ("tool=", "invalid parameter `tool`: "),
            (
                "result=ok",
                "invalid parameter `result`: unknown variant `ok`",
            ),
            ("event=tool.called", "invalid parameter `event`: "),
            ("format=xml", "invalid parameter `format`: "),
            ("limit=0", "invalid parameter `limit`: "),
            ("limit=1001", "invalid parameter `limit`: "),
            ("limit=ten", "invalid parameter `limit`: "),
            ("cursor=abc", "invalid parameter `cursor`: "),
            (
                "tool=a&tool=b",
                "invalid parameter `tool`: given more than once",
            ),
            ("tenant=x", "invalid parameter `tenant`: unknown"),
            ("proof=yes", "invalid parameter `proof`: "),
            ("proof=true&format=csv", "invalid parameter `proof`: "),
        ] {
            let err = parse(query).unwrap_err();
            assert!(err.starts_with(start), "{query}: {err}");
        }
    }

    #[test]
    fn cursor_round_trips() {
        for p in [
            Position {
                ts: 1_773_584_587_142,
                seq: 42,
            },
            Position {
                ts: -1,
                seq: i64::MAX,
            },
            Position { ts: 0, seq: 0 },
        ] {
            let cursor = encode_cursor(p);
            assert!(cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)));
            assert_eq!(decode_cursor(&cursor), Ok(p));
        }
    }

    #[test]
    fn next_url_keeps_the_query_and_replaces_the_cursor() {
        let first = Position { ts: 1, seq: 2 };
        let q = parse(&format!(
            "user=a%26b&limit=2&cursor={}",
            encode_cursor(first)
        ))
        .unwrap();
        let after = Position { ts: 3, seq: 4 };
        let url = q.next_url("/org_a/api/v1/audit", after);
        assert_eq!(
            url,
            format!(
                "/org_a/api/v1/audit?user=a%26b&limit=2&cursor={}",
                encode_cursor(after)
            )
        );
        let next = parse(url.split_once('?').unwrap().1).unwrap();
        assert_eq!(
            (next.cursor, next.filter.user.as_deref()),
            (Some(after), Some("a&b"))
        );
    }
}
