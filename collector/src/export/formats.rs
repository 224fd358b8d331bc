//! Export formats: a JSON page, NDJSON (one stored record per line) and CSV.
//!
//! CSV follows RFC 4180 (CRLF line ends, quoting by the `csv` crate) with a header row and the
//! columns of [`CSV_COLUMNS`]. Spreadsheet formula injection is neutralised: a cell that starts
//! with `=`, `+`, `-`, `@`, a tab or a carriage return gets a single quote `'` put in front,
//! so that spreadsheet programs show it as text instead of evaluating it. The CSV is thus meant
//! for people; the JSON formats carry the records exactly as stored.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::store::records::StoredRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Ndjson,
    Csv,
}

impl Format {
    pub const NAMES: &'static str = "json, ndjson, csv";

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "json" => Some(Self::Json),
            "ndjson" => Some(Self::Ndjson),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The body of one page; `next` is the URL of the following page, if any.
    pub fn page(self, records: &[StoredRecord], next: Option<&str>) -> anyhow::Result<Vec<u8>> {
        match self {
            Self::Json => {
                #[derive(Serialize)]
                struct Page<'a> {
                    records: Vec<&'a RawValue>,
                    next: Option<&'a str>,
                }
                let records = records
                    .iter()
                    .map(|r| serde_json::from_str(&r.json))
                    .collect::<Result<_, _>>()?;
                Ok(serde_json::to_vec(&Page { records, next })?)
            }
            Self::Ndjson | Self::Csv => self.rows(records, true),
        }
    }

    /// Records as NDJSON lines or CSV rows (after a header row when `header`), for streaming.
    pub fn rows(self, records: &[StoredRecord], header: bool) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Self::Json | Self::Ndjson => {
                for record in records {
                    out.extend_from_slice(record.json.as_bytes());
                    out.push(b'\n');
                }
            }
            Self::Csv => {
                let mut csv = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(&mut out);
                if header {
                    csv.write_record(CSV_COLUMNS.iter().map(|(name, _)| name))?;
                }
                for record in records {
                    let fields: CsvFields = serde_json::from_str(&record.json)?;
                    let row =
                        fields
                            .values()
                            .into_iter()
                            .zip(CSV_COLUMNS)
                            .map(|(raw, (_, kind))| {
                                raw.map_or(Ok(String::new()), |raw| {
                                    cell(raw.get(), kind).map(neutralise)
                                })
                            });
                    csv.write_record(row.collect::<serde_json::Result<Vec<_>>>()?)?;
                }
                csv.flush()?;
            }
        }
        Ok(out)
    }
}

/// The record fields that tie a call to its session, request, trace and client connection
/// (absent from records stored before them): the CSV's last columns, in this order.
pub const CORRELATION_FIELDS: [&str; 7] = [
    "sessionId",
    "requestId",
    "traceId",
    "spanId",
    "sourceAddress",
    "userAgent",
    "protocolVersion",
];

/// How a record field becomes a CSV cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    /// Strings as they are, numbers as JSON writes them.
    Text,
    /// A list of strings, space-joined.
    Words,
    /// Compact JSON.
    Json,
}

/// The CSV columns: record field names, in order. `null` is always an empty cell, and so is a
/// field an earlier record does not have (`inputSummary` and the correlation fields, the last
/// eight).
const CSV_COLUMNS: [(&str, Cell); 26] = [
    ("id", Cell::Text),
    ("timestamp", Cell::Text),
    ("event", Cell::Text),
    ("tenantId", Cell::Text),
    ("sub", Cell::Text),
    ("email", Cell::Text),
    ("tool", Cell::Text),
    ("result", Cell::Text),
    ("reason", Cell::Text),
    ("scopes", Cell::Words),
    ("scopeRequired", Cell::Words),
    ("scopeResult", Cell::Text),
    ("latencyMs", Cell::Text),
    ("clientType", Cell::Text),
    ("clientId", Cell::Text),
    ("input", Cell::Json),
    ("contentScan", Cell::Json),
    ("delegationChain", Cell::Json),
    ("inputSummary", Cell::Json),
    ("sessionId", Cell::Text),
    ("requestId", Cell::Text),
    ("traceId", Cell::Text),
    ("spanId", Cell::Text),
    ("sourceAddress", Cell::Text),
    ("userAgent", Cell::Text),
    ("protocolVersion", Cell::Text),
];

/// The fields of a stored record the CSV shows, as their JSON text borrowed from it (absent
/// or `null`: `None`), so that only the cells are built.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CsvFields<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    tenant_id: Option<&'a RawValue>,
    #[serde(borrow)]
    sub: Option<&'a RawValue>,
    #[serde(borrow)]
    email: Option<&'a RawValue>,
    #[serde(borrow)]
    tool: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    reason: Option<&'a RawValue>,
    #[serde(borrow)]
    scopes: Option<&'a RawValue>,
    #[serde(borrow)]
    scope_required: Option<&'a RawValue>,
    #[serde(borrow)]
    scope_result: Option<&'a RawValue>,
    #[serde(borrow)]
    latency_ms: Option<&'a RawValue>,
    #[serde(borrow)]
    client_type: Option<&'a RawValue>,
    #[serde(borrow)]
    client_id: Option<&'a RawValue>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    content_scan: Option<&'a RawValue>,
    #[serde(borrow)]
    delegation_chain: Option<&'a RawValue>,
    #[serde(borrow)]
    input_summary: Option<&'a RawValue>,
    #[serde(borrow)]
    session_id: Option<&'a RawValue>,
    #[serde(borrow)]
    request_id: Option<&'a RawValue>,
    #[serde(borrow)]
    trace_id: Option<&'a RawValue>,
    #[serde(borrow)]
    span_id: Option<&'a RawValue>,
    #[serde(borrow)]
    source_address: Option<&'a RawValue>,
    #[serde(borrow)]
    user_agent: Option<&'a RawValue>,
    #[serde(borrow)]
    protocol_version: Option<&'a RawValue>,
}

impl<'a> CsvFields<'a> {
    /// In the order of [`CSV_COLUMNS`].
    fn values(&self) -> [Option<&'a RawValue>; 26] {
        [
            self.id,
            self.timestamp,
            self.event,
            self.tenant_id,
            self.sub,
            self.email,
            self.tool,
            self.result,
            self.reason,
            self.scopes,
            self.scope_required,
            self.scope_result,
            self.latency_ms,
            self.client_type,
            self.client_id,
            self.input,
            self.content_scan,
            self.delegation_chain,
            self.input_summary,
            self.session_id,
            self.request_id,
            self.trace_id,
            self.span_id,
            self.source_address,
            self.user_agent,
            self.protocol_version,
        ]
    }
}

/// The cell of a field, from the field's JSON text (not `null`).
fn cell(raw: &str, kind: Cell) -> serde_json::Result<String> {
    Ok(match kind {
        Cell::Text | Cell::Words if !raw.starts_with(['"', '[']) => raw.to_owned(),
        Cell::Text if raw.starts_with('"') => match raw.get(1..raw.len() - 1) {
            // Without a backslash, a JSON string's text is its value.
            Some(text) if !text.contains('\\') => text.to_owned(),
            _ => serde_json::from_str::<String>(raw)?,
        },
        Cell::Words if raw.starts_with('[') => serde_json::from_str::<Vec<&RawValue>>(raw)?
            .iter()
            .map(|w| cell(w.get(), Cell::Text))
            .collect::<serde_json::Result<Vec<_>>>()?
            .join(" "),
        // The stored JSON is compact (the collector wrote it): the field's text as it is.
        _ => raw.to_owned(),
    })
}

/// Puts `'` in front of a cell that a spreadsheet would take for a formula.
fn neutralise(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::tests::sample;
    use crate::store::records::Position;
    use serde_json::{json, Value};

    fn stored(record: Value) -> StoredRecord {
        StoredRecord {
            position: Position { ts: 0, seq: 0 },
            tseq: 0,
            json: record.to_string(),
        }
    }

    fn csv_rows(records: Vec<Value>) -> Vec<Vec<String>> {
        let records: Vec<StoredRecord> = records.into_iter().map(stored).collect();
        let out = Format::Csv.rows(&records, true).unwrap();
        assert!(String::from_utf8(out.clone()).unwrap().ends_with("\r\n"));
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(out.as_slice())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn csv_fields_come_in_the_order_of_the_columns() {
        let named: Value = CSV_COLUMNS
            .iter()
            .map(|(name, _)| (name.to_string(), json!(name)))
            .collect();
        let json = named.to_string();
        let fields: CsvFields = serde_json::from_str(&json).unwrap();
        let values: Vec<String> = fields
            .values()
            .iter()
            .map(|v| v.unwrap().get().to_owned())
            .collect();
        let names: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|(name, _)| format!("{name:?}"))
            .collect();
        assert_eq!(values, names);
    }

    #[test]
    fn formula_cells_are_neutralised() {
        for (cell, expected) in [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("a=1", "a=1"),
            ("", ""),
            ("'quoted", "'quoted"),
        ] {
            assert_eq!(neutralise(cell.into()), expected, "{cell:?}");
        }
    }

    #[test]
    fn csv_has_the_columns_and_escapes() {
        let mut r = sample("r1", "2026-03-15T14:23:07.142Z");
        r["email"] = json!("=HYPERLINK(\"http://x\",\"a,b\")");
        r["tool"] = json!("-cmd\r\nnext");
        r["input"] = json!(-5);
        r["scopeRequired"] = json!(null);
        r["contentScan"] = json!({"piiDetected": true, "riskScore": 0.5, "inputScanned": true,
            "outputScanned": false, "findings": []});
        let rows = csv_rows(vec![r]);
        let header: Vec<&str> = CSV_COLUMNS.iter().map(|(n, _)| *n).collect();
        assert_eq!(rows[0], header);
        let row: Vec<&str> = rows[1].iter().map(String::as_str).collect();
        assert_eq!(
            row,
            [
                "r1",
                "2026-03-15T14:23:07.142Z",
                "tool.call",
                "org_acme_corp",
                "auth0|alice",
                "'=HYPERLINK(\"http://x\",\"a,b\")",
                "'-cmd\r\nnext",
                "success",
                "",
                "salesforce:read",
                "",
                "pass",
                "142.5",
                "claude-desktop",
                "claude-desktop-app",
                "'-5",
                "{\"findings\":[],\"inputScanned\":true,\"outputScanned\":false,\
                 \"piiDetected\":true,\"riskScore\":0.5}",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
            ],
            "a record from before the input summary and the correlation fields has empty cells for them"
        );
    }

    #[test]
    fn csv_has_the_correlation_fields_last() {
        let mut r = sample("r2", "2026-03-15T14:23:07.142Z");
        for (name, value) in [
            ("sessionId", "s-1"),
            ("requestId", "9b1d-req"),
            ("traceId", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("spanId", "00f067aa0ba902b7"),
            ("sourceAddress", "10.0.0.7:51234"),
            ("userAgent", "=cmd|' /C calc'!A0"),
        ] {
            r[name] = json!(value);
        }
        r["protocolVersion"] = json!(null);
        let rows = csv_rows(vec![r]);
        assert_eq!(rows[0][19..], CORRELATION_FIELDS);
        assert_eq!(
            rows[1][19..],
            [
                "s-1",
                "9b1d-req",
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "00f067aa0ba902b7",
                "10.0.0.7:51234",
                "'=cmd|' /C calc'!A0",
                ""
            ]
        );
    }

    #[test]
    fn json_page_carries_records_verbatim() {
        let records = [stored(sample("r1", "2026-03-15T14:23:07.142Z"))];
        let page: Value =
            serde_json::from_slice(&Format::Json.page(&records, Some("/t?cursor=x")).unwrap())
                .unwrap();
        assert_eq!(
            page,
            json!({"records": [sample("r1", "2026-03-15T14:23:07.142Z")],
            "next": "/t?cursor=x"})
        );
        let ndjson = Format::Ndjson.page(&records, None).unwrap();
        assert_eq!(ndjson, format!("{}\n", records[0].json).into_bytes());
    }
}
