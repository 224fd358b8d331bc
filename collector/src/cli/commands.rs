//! Runs a parsed command line.

use std::io::Write;
use std::path::Path;

use crate::cli::{ApikeyCommand, Command, KeyCommand};
use crate::ledger::TreeBackfill;
use crate::ledger::{checkpoints, signing, verify_proof};
use crate::settings::{ServeSettings, Settings};
use crate::store::{self, Tables};
use crate::{apikeys, evidence, startup, verify};

/// Runs `command` with `settings`.
pub fn run(settings: Settings, command: Command) -> anyhow::Result<()> {
    let cli = &settings;
    let key_path = settings.signing_key.clone();
    let database = || store::Store::open(&cli.db, cli.database_url.as_deref());
    match command {
        Command::Serve(args) => {
            let db = database()?;
            let serve = ServeSettings::try_from(args)?;
            let served = startup::serve(&db, &settings, serve);
            drop(db);
            served
        }
        Command::Apikey(command) => apikey(&database()?, command),
        Command::Verify(args) => verify::run(
            &cli.db,
            cli.database_url.as_deref(),
            &cli.log_name,
            &args.public_keys,
            args.tenant.as_deref(),
        ),
        Command::VerifyProof(args) => {
            verify_proof::run(&cli.log_name, &args.file, &args.public_keys)
        }
        Command::Key(command) => key(database, &key_path, &cli.log_name, command),
        Command::Evidence(args) => {
            crate::cli::evidence::run(&database()?, &key_path, &cli.log_name, &args)
        }
        Command::VerifyBundle(args) => {
            println!("{}", evidence::verify::run(&args.file, &args.public_keys)?);
            Ok(())
        }
        Command::Webhook(command) => {
            crate::cli::webhook::run(&database()?, &cli.webhook_allow_cidrs, command)
        }
    }
}

fn key(
    database: impl FnOnce() -> anyhow::Result<store::Store>,
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

fn apikey(db: &store::Store, command: ApikeyCommand) -> anyhow::Result<()> {
    db.create_schema(Tables::Records, &mut TreeBackfill::default())?;
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
