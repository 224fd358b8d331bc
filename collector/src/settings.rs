//! The validated settings of a run. The command line (flags and environment variables,
//! [`crate::cli`]) and the `--config` TOML file give raw values; they become these types
//! through `TryFrom`, whose errors name the setting at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::webhooks::delivery::RetryPolicy;
use crate::webhooks::AllowList;

/// What every command shares: where the store and the signing key are, and the log's name.
#[derive(Debug)]
pub struct Settings {
    /// The SQLite file (when there is no `database_url`).
    pub db: PathBuf,
    /// The PostgreSQL database shared by replicas.
    pub database_url: Option<String>,
    /// The signing key's name and the checkpoint origin prefix.
    pub log_name: String,
    /// The checkpoint signing key file.
    pub signing_key: PathBuf,
    /// Address ranges webhook URLs may resolve to besides public addresses.
    pub webhook_allow_cidrs: AllowList,
}

/// The settings of `serve`.
#[derive(Debug)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    /// The bearer token of `POST /v1/records` and `POST /v1/policies`; never empty.
    pub ingest_token: String,
    pub max_body_bytes: usize,
    /// Between checkpoints of the trees that have grown (and expiry runs).
    pub checkpoint_interval: Duration,
    pub checkpoint_records: u64,
    pub retention_days: u32,
    pub tenant_retention_days: BTreeMap<String, u32>,
    pub webhook_retry: RetryPolicy,
}

/// A setting that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "the ingest token is required: pass --ingest-token, set ACP_INGEST_TOKEN \
         or set ingest_token in the --config file"
    )]
    IngestTokenMissing,
}
