//! `acp-collector`: stores the audit records that the ACP filter posts, immutably, and exports
//! them to auditors. See `acp-collector --help`.

pub mod apikeys;
pub mod cli;
pub mod evidence;
pub mod export;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod policies;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod verify;
pub mod webhooks;

#[cfg(test)]
mod every_store_tests;
#[cfg(test)]
mod ingest_tests;
