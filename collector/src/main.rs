//! `acp-collector`: stores the audit records that the ACP filter posts, immutably, and exports
//! them to auditors. See `acp-collector --help`.

use std::process::ExitCode;

use acp_collector::cli::{self, Command};
use acp_collector::telemetry;

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
    let cli = cli::config::parse_cli()?;
    if let Command::Serve(args) = &cli.command {
        telemetry::init_logging(args.log_format);
    }
    cli::run(cli)
}
