//! The `weir` binary: parse the command line, set up logging
//! ([`weir::logging`]), run.

use clap::Parser;
use weir::logging::{self, Format};

fn main() -> std::process::ExitCode {
    let format = match Format::from_env() {
        Ok(format) => format,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    logging::init(format);
    match weir::cli::run(weir::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if format == Format::Json => {
            let error = format!("{e:#}");
            tracing::error!(error = %error, "exiting");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
