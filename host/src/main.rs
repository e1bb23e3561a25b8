//! The `weir` binary: parse the command line, set up logging, run.

use std::io::IsTerminal as _;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sled=warn,cranelift=warn,wasmtime=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal; plain text for log files and collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match weir::cli::run(weir::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
