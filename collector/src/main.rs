//! `acp-collector`: stores the audit records that the ACP filter posts, immutably, and exports
//! them to auditors. See `acp-collector --help`.

mod apikeys;
mod auth;
mod checkpoints;
mod cli;
mod config;
mod dashboard;
mod db;
mod error;
mod evidence;
mod export;
mod formats;
mod ingest;
mod ledger;
mod merkle;
mod migrate;
mod policies;
mod proofs;
mod security_headers;
mod server;
mod signing;
mod stats;
mod store;
mod verify;
mod verify_proof;
mod webhooks;
mod writer;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use cli::{ApikeyCommand, Command, KeyCommand, LogFormat};

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
    let key_path = cli.signing_key_path();
    let database = || db::Database::open(&cli.db, cli.database_url.as_deref());
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let runtime = tokio::runtime::Runtime::new()?;
            let allow = cli.webhook_allow_cidrs;
            let db = database()?;
            let served = runtime.block_on(server::run(
                db.clone(),
                &key_path,
                &cli.log_name,
                allow,
                args,
            ));
            drop(runtime);
            drop(db);
            served
        }
        Command::Apikey(command) => apikey(&database()?, command),
        Command::Verify(args) => {
            verify::run(&cli.db, cli.database_url.as_deref(), &cli.log_name, &args)
        }
        Command::VerifyProof(args) => verify_proof::run(&cli.log_name, &args),
        Command::Key(command) => key(database, &key_path, &cli.log_name, command),
        Command::Evidence(args) => {
            evidence::api::cli(&database()?, &key_path, &cli.log_name, &args)
        }
        Command::VerifyBundle(args) => {
            println!("{}", evidence::verify::run(&args.file, &args.public_keys)?);
            Ok(())
        }
        Command::Webhook(command) => {
            webhooks::cli::run(&database()?, &cli.webhook_allow_cidrs, command)
        }
    }
}

fn key(
    database: impl FnOnce() -> anyhow::Result<db::Database>,
    key_path: &Path,
    log_name: &str,
    command: KeyCommand,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        KeyCommand::Show => {
            let key = signing::SigningKey::load_or_create(key_path, log_name)?;
            writeln!(out, "{}", key.vkey())?;
        }
        KeyCommand::List => {
            for vkey in checkpoints::keys(&*database()?.read()?)? {
                writeln!(out, "{vkey}")?;
            }
        }
    }
    Ok(())
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

fn apikey(db: &db::Database, command: ApikeyCommand) -> anyhow::Result<()> {
    let conn = db.write()?;
    let conn = &*conn;
    let mut out = std::io::stdout().lock();
    match command {
        ApikeyCommand::Create { tenant, name } => {
            writeln!(out, "{}", apikeys::create(conn, &tenant, name.as_deref())?)?;
        }
        ApikeyCommand::List { tenant } => {
            let time = |ms| acp_record::format_timestamp(ms).unwrap_or_default();
            writeln!(out, "PREFIX\tTENANT\tNAME\tCREATED\tREVOKED")?;
            for key in apikeys::list(conn, tenant.as_deref())? {
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
                apikeys::revoke(conn, &prefix)?,
                "no active key has the prefix {prefix:?}"
            );
            eprintln!("revoked {prefix}");
        }
    }
    Ok(())
}
