//! Raw command-line values into the validated [`crate::settings`].

use std::time::Duration;

use crate::cli::args::{Cli, Command, LogFormat, ServeArgs};
use crate::settings::{ServeSettings, Settings, SettingsError};
use crate::telemetry;

/// Parses the command line, taking in the `--config` file when one is named, into the shared
/// settings and the command to run.
pub fn load() -> anyhow::Result<(Settings, Command)> {
    Ok(split(crate::cli::config::parse_cli()?))
}

fn split(cli: Cli) -> (Settings, Command) {
    let signing_key = cli.signing_key_path();
    let settings = Settings {
        db: cli.db,
        database_url: cli.database_url,
        log_name: cli.log_name,
        signing_key,
        webhook_allow_cidrs: cli.webhook_allow_cidrs,
    };
    (settings, cli.command)
}

impl TryFrom<ServeArgs> for ServeSettings {
    type Error = SettingsError;

    fn try_from(args: ServeArgs) -> Result<Self, SettingsError> {
        let ingest_token = args
            .ingest_token
            .filter(|t| !t.is_empty())
            .ok_or(SettingsError::IngestTokenMissing)?;
        Ok(ServeSettings {
            listen: args.listen,
            ingest_token,
            max_body_bytes: args.max_body_bytes,
            checkpoint_interval: Duration::from_secs(args.checkpoint_interval),
            checkpoint_records: args.checkpoint_records,
            retention_days: args.retention_days,
            tenant_retention_days: args.tenant_retention_days,
            webhook_retry: args.webhooks.retry(),
        })
    }
}

impl From<LogFormat> for telemetry::LogFormat {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Text => telemetry::LogFormat::Text,
            LogFormat::Json => telemetry::LogFormat::Json,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn serve(args: &[&str]) -> Result<ServeSettings, SettingsError> {
        let cli = Cli::try_parse_from(args).unwrap();
        match split(cli).1 {
            Command::Serve(args) => ServeSettings::try_from(args),
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn serve_needs_an_ingest_token() {
        let err = serve(&["acp", "serve", "--ingest-token", ""]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the ingest token is required: pass --ingest-token, set ACP_INGEST_TOKEN \
             or set ingest_token in the --config file"
        );
        let ok = serve(&[
            "acp",
            "serve",
            "--ingest-token",
            "t",
            "--checkpoint-interval",
            "5",
        ])
        .unwrap();
        assert_eq!(ok.ingest_token, "t");
        assert_eq!(ok.checkpoint_interval, Duration::from_secs(5));
    }
}
