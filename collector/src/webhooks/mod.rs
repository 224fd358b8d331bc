//! Webhooks to a SIEM: per-tenant endpoints that receive audit events (`tool.call`,
//! `tool.denied`, `auth.failed`, `audit.checkpoint`, `policy.changed`) as signed, batched
//! HTTP requests in the `json`, `ocsf` or `splunk-hec` format, at least once each.

mod api;
pub mod cli;
mod db;
#[cfg(test)]
mod db_tests;
mod delivery;
mod events;
mod formats;
mod lease;
mod signature;
mod spec;
mod ssrf;

pub use api::routes;
pub use db::TABLES;
pub use delivery::{spawn, Settings};
pub use ssrf::{parse_allow_list, AllowList};
