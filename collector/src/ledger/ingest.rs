//! Checking the records of an ingest batch: each is parsed as an [`AuditRecord`] and validated
//! on its own.

use serde::Serialize;
use serde_json::Value;

use acp_record::AuditRecord;

use crate::store::records::NewRecord;

/// A record of the batch that was not stored, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub index: usize,
    pub id: Option<String>,
    pub error: String,
}

/// Splits a batch into storable records and rejections (by index in the batch).
pub fn check_batch(records: Vec<Value>) -> (Vec<NewRecord>, Vec<Rejected>) {
    let mut valid = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    for (index, value) in records.into_iter().enumerate() {
        match check_record(&value) {
            Ok(record) => valid.push(record),
            Err(error) => rejected.push(Rejected {
                index,
                id: value.get("id").and_then(Value::as_str).map(str::to_owned),
                error,
            }),
        }
    }
    (valid, rejected)
}

/// Parses and validates one record; the error starts with the offending field's path when
/// there is one (`contentScan.riskScore: invalid type ...`).
fn check_record(value: &Value) -> Result<NewRecord, String> {
    let record: AuditRecord = serde_path_to_error::deserialize(value).map_err(|e| {
        match e.path().to_string().as_str() {
            "." => e.inner().to_string(),
            path => format!("{path}: {}", e.inner()),
        }
    })?;
    record.validate()?;
    let ts = record
        .timestamp_millis()
        .ok_or_else(|| format!("timestamp: {:?} is out of range", record.timestamp))?;
    NewRecord::new(record, ts).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::tests::sample;
    use serde_json::json;

    #[test]
    fn valid_records_pass_and_invalid_ones_are_named() {
        let mut bad_result = sample("r1", "2026-03-15T14:23:07.142Z");
        bad_result["result"] = json!("denied");
        let mut bad_type = sample("r3", "2026-03-15T14:23:07.142Z");
        bad_type["latencyMs"] = json!("fast");
        let mut unknown = sample("r4", "2026-03-15T14:23:07.142Z");
        unknown["extra"] = json!(1);
        let records = vec![
            sample("r0", "2026-03-15T14:23:07.142Z"),
            bad_result,
            sample("r2", "2026-03-15T14:23:08.000Z"),
            bad_type,
            unknown,
            json!("not an object"),
        ];
        let (valid, rejected) = check_batch(records);

        let ids: Vec<&str> = valid.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["r0", "r2"]);
        let summary: Vec<(usize, Option<&str>)> = rejected
            .iter()
            .map(|r| (r.index, r.id.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [(1, Some("r1")), (3, Some("r3")), (4, Some("r4")), (5, None)]
        );
        assert!(
            rejected[0].error.starts_with("result: "),
            "{}",
            rejected[0].error
        );
        assert!(
            rejected[1].error.starts_with("latencyMs: "),
            "{}",
            rejected[1].error
        );
        assert!(
            rejected[2].error.contains("unknown field `extra`"),
            "{}",
            rejected[2].error
        );
    }

    #[test]
    fn stored_json_is_the_canonical_record() {
        let (valid, _) = check_batch(vec![sample("r0", "2026-03-15T14:23:07.142Z")]);
        let record = &valid[0];
        let stored: Value = serde_json::from_str(&record.json).unwrap();
        // A record posted without the correlation fields and the input summary (an older
        // filter) is stored with them as null: the canonical form names every field. Records stored before these fields
        // existed keep their bytes (nothing rewrites a stored record).
        let mut stored = stored.as_object().unwrap().clone();
        let sent = sample("r0", "2026-03-15T14:23:07.142Z");
        let added: Vec<(String, Value)> = stored
            .clone()
            .into_iter()
            .filter(|(name, _)| sent.get(name).is_none())
            .collect();
        assert_eq!(added.len(), 8, "{added:?}");
        assert!(added.iter().all(|(_, v)| v.is_null()), "{added:?}");
        stored.retain(|name, _| sent.get(name).is_some());
        assert_eq!(Value::Object(stored), sent);
        assert_eq!(record.ts, 1_773_584_587_142);
        assert_eq!(
            (record.result.as_str(), record.event.as_str()),
            ("success", "tool.call")
        );
        assert_eq!(record.tenant, "org_acme_corp");
    }
}
