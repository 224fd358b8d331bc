//! Export formats: a JSON page, NDJSON (one stored record per line) and CSV.
//!
//! CSV follows RFC 4180 (CRLF line ends, quoting by the `csv` crate) with a header row and the
//! columns of [`CSV_COLUMNS`]. Spreadsheet formula injection is neutralised: a cell that starts
//! with `=`, `+`, `-`, `@`, a tab or a carriage return gets a single quote `'` put in front,
//! so that spreadsheet programs show it as text instead of evaluating it. The CSV is thus meant
//! for people; the JSON formats carry the records exactly as stored.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::store::StoredRecord;

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
                    let record: Value = serde_json::from_str(&record.json)?;
                    csv.write_record(
                        CSV_COLUMNS
                            .iter()
                            .map(|&(name, kind)| neutralise(cell(&record[name], kind))),
                    )?;
                }
                csv.flush()?;
            }
        }
        Ok(out)
    }
}

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

/// The CSV columns: record field names, in order. `null` is always an empty cell.
const CSV_COLUMNS: [(&str, Cell); 18] = [
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
];

fn cell(value: &Value, kind: Cell) -> String {
    match (kind, value) {
        (_, Value::Null) => String::new(),
        (Cell::Text, Value::String(s)) => s.clone(),
        (Cell::Words, Value::Array(words)) => words
            .iter()
            .map(|w| w.as_str().map_or_else(|| w.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(" "),
        (_, other) => other.to_string(),
    }
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
    use crate::store::tests::sample;
    use crate::store::Position;
    use serde_json::json;

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
