//! `acp-collector`: stores the audit records that the ACP filter posts, immutably, and exports
//! them to auditors. See `acp-collector --help`.

pub mod apikeys;
pub mod auth;
pub mod cli;
pub mod dashboard;
pub mod error;
pub mod evidence;
pub mod export;
pub mod formats;
pub mod ingest;
pub mod ledger;
pub mod policies;
pub mod proofs;
pub mod security_headers;
pub mod server;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod webhooks;
