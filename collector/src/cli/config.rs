//! The `--config` TOML file. Its keys are the flags' names in snake_case, and each value
//! becomes that flag's default: a flag or an environment variable still overrides it, which
//! gives flag > environment > file > built-in default. Any flag is settable this way; an
//! unknown key is an error.

use std::path::Path;

use anyhow::{bail, Context};
use clap::{Command, CommandFactory, FromArgMatches, Parser};

use crate::cli::args::Cli;

/// Subcommands whose flags the file may set, besides the global flags.
const SUBCOMMANDS: [&str; 1] = ["serve"];

/// Parses the command line, taking in the `--config` file when one is named.
pub fn parse_cli() -> anyhow::Result<Cli> {
    let cli = Cli::parse();
    let Some(path) = &cli.config else {
        return Ok(cli);
    };
    let cmd = with_file_defaults(Cli::command(), path)?;
    Ok(Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit()))
}

fn with_file_defaults(mut cmd: Command, path: &Path) -> anyhow::Result<Command> {
    let file = path.display();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read config file {file}"))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("config file {file} is not valid TOML"))?;
    for (key, value) in table {
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            other => bail!(
                "config file {file}: `{key}` must be a string or an integer, not {}",
                other.type_str()
            ),
        };
        if settable(&cmd, &key) {
            cmd = cmd.mut_arg(&key, |arg| arg.default_value(value));
        } else if let Some(sub) = SUBCOMMANDS
            .iter()
            .find(|sub| cmd.find_subcommand(sub).is_some_and(|c| settable(c, &key)))
        {
            cmd = cmd.mut_subcommand(sub, |c| c.mut_arg(&key, |arg| arg.default_value(value)));
        } else {
            bail!("config file {file}: unknown setting `{key}`");
        }
    }
    Ok(cmd)
}

fn settable(cmd: &Command, key: &str) -> bool {
    key != "config"
        && cmd
            .get_arguments()
            .any(|arg| arg.get_id() == key && arg.get_action().takes_values())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{Command as Sub, LogFormat, ServeArgs};

    fn parse(file: &str, args: &[&str]) -> anyhow::Result<Cli> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("acp.toml");
        std::fs::write(&path, file)?;
        let cmd = with_file_defaults(Cli::command(), &path)?;
        Ok(Cli::from_arg_matches(&cmd.try_get_matches_from(args)?)?)
    }

    fn serve_args(cli: &Cli) -> &ServeArgs {
        match &cli.command {
            Sub::Serve(args) => args,
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let file = r#"
            db = "/var/lib/acp/audit.db"
            listen = "0.0.0.0:8080"
            ingest_token = "from-file"
            max_body_bytes = 1024
            log_format = "json"
        "#;
        let cli = parse(
            file,
            &["acp", "serve", "--listen", "127.0.0.1:9", "--db", "x.db"],
        )
        .unwrap();
        assert_eq!(cli.db, Path::new("x.db"));
        let serve = serve_args(&cli);
        assert_eq!(serve.listen.to_string(), "127.0.0.1:9");
        assert_eq!(serve.ingest_token.as_deref(), Some("from-file"));
        assert_eq!(serve.max_body_bytes, 1024);
        assert_eq!(serve.log_format, LogFormat::Json);

        let cli = parse(file, &["acp", "apikey", "list"]).unwrap();
        assert_eq!(cli.db, Path::new("/var/lib/acp/audit.db"));
        let cli = parse("", &["acp", "serve"]).unwrap();
        assert_eq!(serve_args(&cli).listen.to_string(), "127.0.0.1:7070");
        assert_eq!(serve_args(&cli).ingest_token, None);
    }

    #[test]
    fn unknown_and_malformed_settings_are_errors() {
        for (file, expected) in [
            ("listen_addr = \"x\"", "unknown setting `listen_addr`"),
            ("config = \"other.toml\"", "unknown setting `config`"),
            ("max_body_bytes = 1.5", "must be a string or an integer"),
            ("max_body_bytes = \"lots\"", "invalid value 'lots'"),
            ("listen = ", "not valid TOML"),
        ] {
            let err = parse(file, &["acp", "serve"]).unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{file}: {err:#}");
        }
    }
}
