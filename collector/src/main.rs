//! `acp-collector`: stores the audit records that the ACP filter posts, immutably, and exports
//! them to auditors. See `acp-collector --help`.

mod apikeys;
mod auth;
mod cli;
mod config;
mod error;
mod export;
mod formats;
mod ingest;
mod server;
mod store;
mod writer;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use cli::{ApikeyCommand, Command, LogFormat};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("acp-collector: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = config::parse_cli()?;
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            tokio::runtime::Runtime::new()?.block_on(server::run(cli.db, args))
        }
        Command::Apikey(command) => apikey(&cli.db, command),
    }
}

/// Logs go to stderr; `RUST_LOG` sets the filter (default `info`).
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

fn apikey(db: &Path, command: ApikeyCommand) -> anyhow::Result<()> {
    let conn = store::open_rw(db).with_context(|| format!("cannot open {}", db.display()))?;
    let mut out = std::io::stdout().lock();
    match command {
        ApikeyCommand::Create { tenant, name } => {
            writeln!(out, "{}", apikeys::create(&conn, &tenant, name.as_deref())?)?;
        }
        ApikeyCommand::List { tenant } => {
            let time = |ms| acp_record::format_timestamp(ms).unwrap_or_default();
            writeln!(out, "PREFIX\tTENANT\tNAME\tCREATED\tREVOKED")?;
            for key in apikeys::list(&conn, tenant.as_deref())? {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    key.prefix,
                    key.tenant,
                    key.name.unwrap_or_default(),
                    time(key.created_ms),
                    key.revoked_ms.map(time).unwrap_or_default(),
                )?;
            }
        }
        ApikeyCommand::Revoke { prefix } => {
            anyhow::ensure!(
                apikeys::revoke(&conn, &prefix)?,
                "no active key has the prefix {prefix:?}"
            );
            eprintln!("revoked {prefix}");
        }
    }
    Ok(())
}
