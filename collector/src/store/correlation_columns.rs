//! The correlation columns, named by the records (which fill and match them) and by the
//! migration that adds them to an older SQLite database.

/// The columns of the correlation fields a [`super::records::Filter`] matches (`sessionId`, `traceId`,
/// `requestId`, `sourceAddress`), filled from the record when it is stored (NULL for records
/// from before these fields, which have none), so that a match reads no JSON. No index: the
/// match is made on the tenant's records in time order (`records_export`), bounded by the
/// filter's time range (see the schema for why).
pub const CORRELATION_COLUMNS: [&str; 4] =
    ["session_id", "trace_id", "request_id", "source_address"];
