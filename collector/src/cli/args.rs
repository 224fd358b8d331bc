//! Command line (also the `--help` text). Every flag can also come from an environment
//! variable and from the `--config` TOML file ([`crate::cli::config`]).

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

    /// PostgreSQL database shared by several collector replicas, instead of the SQLite file
    /// (`postgres://user:password@host:port/database`); the schema is created when missing.
    /// Unencrypted connection: keep the database on a trusted network.
    #[arg(long, global = true, env = "ACP_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,

    /// TOML file with settings (`db`, `database_url`, `listen`, `ingest_token`, `max_body_bytes`,
    /// `log_format`, `log_name`, `signing_key`, `checkpoint_interval`, `checkpoint_records`,
    /// `retention_days`, `tenant_retention_days`, `webhook_allow_cidrs`,
    /// `webhook_retry_initial_ms`, `webhook_retry_max_ms`).
    #[arg(long, global = true, env = "ACP_CONFIG", value_name = "FILE.toml")]
    pub config: Option<PathBuf>,

    /// Name of the log: the signing key's name and the checkpoint origin prefix (a tenant's
    /// checkpoints have the origin `<log name>/<tenant>`). No spaces or `+`.
    #[arg(
        long,
        global = true,
        env = "ACP_LOG_NAME",
        default_value = "acp-collector"
    )]
    pub log_name: String,

    /// Checkpoint signing key (Ed25519, signed-note format); created with mode 0600 when
    /// missing. Default: the database path with `.signing-key` appended.
    #[arg(long, global = true, env = "ACP_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,

    /// Address ranges webhook URLs may resolve to besides public addresses, e.g.
    /// `127.0.0.0/8,10.0.0.0/8`. Loopback, private, link-local and metadata addresses are
    /// refused by default, at creation and at every delivery.
    #[arg(long, global = true, env = "ACP_WEBHOOK_ALLOW_CIDRS", value_name = "CIDR,...",
          default_value = "", value_parser = crate::webhooks::parse_allow_list)]
    pub webhook_allow_cidrs: crate::webhooks::AllowList,

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
    /// Check the database offline: every record's leaf hash and sequence number, every
    /// checkpoint's root and signature, every expiry note. Names the first altered, removed or
    /// inserted record of each tenant and exits non-zero when anything is wrong.
    Verify(VerifyArgs),
    /// Check an export made with `proof=true` (JSON page or NDJSON file) offline: the
    /// checkpoint's signature and every record's inclusion proof.
    VerifyProof(VerifyProofArgs),
    /// The checkpoint signing key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Write the SOC 2 evidence bundle (zip) of one tenant and period from the database: the
    /// population with completeness proofs, a seeded sample, per-control evidence, the user
    /// access review, the policy versions in force, a signed manifest and `VERIFY.md`.
    Evidence(EvidenceArgs),
    /// Check an evidence bundle offline: the manifest's signature, every file's hash, every
    /// proof against the signed checkpoint; names what is wrong.
    VerifyBundle(VerifyBundleArgs),
    /// Manage the tenants' SIEM webhooks. Works on the database (file or `--database-url`)
    /// directly, whether or not the service is running.
    #[command(subcommand)]
    Webhook(crate::cli::webhook::WebhookCommand),
}

#[derive(Debug, Args)]
pub struct EvidenceArgs {
    #[arg(long)]
    pub tenant: String,
    /// Start of the period: a date (`YYYY-MM-DD`, UTC) or an RFC 3339 time, inclusive.
    #[arg(long)]
    pub from: String,
    /// End of the period, exclusive (a date means the end of that day).
    #[arg(long)]
    pub to: String,
    /// The zip file to write.
    #[arg(long, value_name = "FILE.zip")]
    pub out: PathBuf,
    /// Seed of the random sample (default: a random one; it is recorded in the bundle).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Records in the random sample.
    #[arg(long, value_name = "N", default_value_t = crate::evidence::DEFAULT_SAMPLE)]
    pub sample: usize,
}

#[derive(Debug, Args)]
pub struct VerifyBundleArgs {
    /// The bundle (zip).
    pub file: PathBuf,
    /// A trusted verifier key; repeat for several. Without one, the bundle's own
    /// `public-keys.txt` is used.
    #[arg(long = "public-key", value_name = "VKEY")]
    pub public_keys: Vec<String>,
}

impl Cli {
    /// The signing key file: `--signing-key`, or the database path with `.signing-key` appended.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key.clone().unwrap_or_else(|| {
            let mut path = self.db.clone().into_os_string();
            path.push(".signing-key");
            path.into()
        })
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A trusted verifier key (`<name>+<key id>+<base64>`, as `key show` prints it); repeat for
    /// keys from before a rotation. Without one, the keys recorded in the database are used,
    /// which proves nothing against someone who could rewrite the database.
    #[arg(long = "public-key", value_name = "VKEY")]
    pub public_keys: Vec<String>,
    /// Only this tenant (default: every tenant).
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// The exported file (`-` for standard input).
    pub file: PathBuf,
    /// A trusted verifier key; repeat for several.
    #[arg(long = "public-key", value_name = "VKEY", required = true)]
    pub public_keys: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the verifier (public) key of the signing key, creating the key when missing.
    Show,
    /// Print every verifier key that has signed checkpoints in this database, oldest first.
    List,
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

    /// Seconds between checkpoints of the trees that have grown (also when expiry runs).
    #[arg(long, env = "ACP_CHECKPOINT_INTERVAL", value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_interval: u64,

    /// A checkpoint as soon as a tenant's tree has grown by this many records.
    #[arg(long, env = "ACP_CHECKPOINT_RECORDS", value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_records: u64,

    /// Days a record is kept after its timestamp; 0 keeps records forever.
    #[arg(
        long,
        env = "ACP_RETENTION_DAYS",
        value_name = "DAYS",
        default_value_t = 400
    )]
    pub retention_days: u32,

    /// Per-tenant retention, overriding `--retention-days`: `tenant=days,tenant=days`.
    #[arg(long, env = "ACP_TENANT_RETENTION_DAYS", value_name = "TENANT=DAYS,...",
          default_value = "", value_parser = crate::ledger::parse_tenant_retention)]
    pub tenant_retention_days: std::collections::BTreeMap<String, u32>,

    /// Log format on stderr. The level filter is `RUST_LOG` (default `info`; `debug` adds a
    /// line per ingest batch).
    #[arg(long, env = "ACP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub webhooks: crate::cli::webhook::DeliveryArgs,
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
