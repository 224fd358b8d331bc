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
    let (settings, command) = cli::load()?;
    if let Command::Serve(args) = &command {
        telemetry::init_logging(args.log_format.into());
    }
    cli::run(settings, command)
}
