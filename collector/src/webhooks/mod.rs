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

/// Why a webhook request is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The endpoint's settings or URL.
    #[error("{0}")]
    Invalid(String),
    /// The endpoint cannot be created (the tenant has too many).
    #[error("{0:#}")]
    Conflict(anyhow::Error),
    /// No such endpoint in the tenant.
    #[error("no webhook {0:?} in this tenant")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}
