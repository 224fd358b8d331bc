//! Webhooks to a SIEM: per-tenant endpoints that receive audit events (`tool.call`,
//! `tool.denied`, `auth.failed`, `audit.checkpoint`, `policy.changed`) as signed, batched
//! HTTP requests in the `json`, `ocsf` or `splunk-hec` format, at least once each.

pub mod db;
#[cfg(test)]
mod db_tests;
pub mod delivery;
mod events;
mod formats;
mod lease;
mod signature;
pub mod spec;
pub mod ssrf;

pub use delivery::{spawn, Settings};
pub use ssrf::{parse_allow_list, AllowList};
