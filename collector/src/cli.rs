//! Command line (also the `--help` text). Every flag can also come from an environment
//! variable and from the `--config` TOML file ([`crate::config`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// ACP collector: durable, append-only store and export API for MCP audit records.
///
/// Each setting is taken from, first to last: the flag, its environment variable, the
/// `--config` file (same names in snake_case, e.g. `max_body_bytes = 1048576`), the default.
#[derive(Debug, Parser)]
#[command(name = "acp-collector", version)]
pub struct Cli {
    /// SQLite database file; created with its schema when missing.
    #[arg(long, global = true, env = "ACP_DB", default_value = "./acp-audit.db")]
    pub db: PathBuf,

    /// TOML file with settings (`db`, `listen`, `ingest_token`, `max_body_bytes`,
    /// `log_format`).
    #[arg(long, global = true, env = "ACP_CONFIG", value_name = "FILE.toml")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service: `POST /v1/records` (ingest from the filter),
    /// `GET /{tenant}/api/v1/audit` (export for auditors), `GET /healthz`.
    Serve(ServeArgs),
    /// Manage export API keys. Works on the database file directly, whether or not the service
    /// is running.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "ACP_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,

    /// Bearer token the filter presents on `POST /v1/records` (required). Prefer the
    /// environment variable or the config file: command lines are visible to other users.
    #[arg(
        long,
        env = "ACP_INGEST_TOKEN",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub ingest_token: Option<String>,

    /// Largest ingest body in bytes; a larger one is refused with 413.
    #[arg(long, env = "ACP_MAX_BODY_BYTES", value_name = "N", default_value_t = 8 << 20)]
    pub max_body_bytes: usize,

    /// Log format on stderr. The level filter is `RUST_LOG` (default `info`; `debug` adds a
    /// line per ingest batch).
    #[arg(long, env = "ACP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key for one tenant and print it, and nothing else, on stdout. Only its hash is
    /// stored: keep the key now, it cannot be shown again.
    Create {
        /// Tenant whose records the key may export (the `tenantId` of the records).
        #[arg(long)]
        tenant: String,
        /// Free-form note shown by `list`, e.g. who holds the key.
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys: prefix, tenant, name, creation and revocation time; never the keys.
    List {
        /// Only this tenant's keys (default: every tenant's).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key; it is refused with 401 from then on.
    Revoke {
        /// The key's prefix as `list` shows it (`gsk_` and 8 more characters).
        #[arg(long)]
        prefix: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
