//! The command line: the clap definitions ([`args`]), the `--config` file ([`config`]) and the
//! subcommands' code.

mod args;
mod commands;
pub mod config;
mod evidence;
mod settings;
pub mod webhook;

pub use args::*;
pub use commands::run;
pub use settings::load;
