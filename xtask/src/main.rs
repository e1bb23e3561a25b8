//! `cargo xtask`: the repository's build chores, run as
//! `cargo xtask <subcommand>` (alias in `.cargo/config.toml`).
//!
//! This file owns argument dispatch only; each subcommand lives in its own
//! module and nested cargo invocations go through [`cmd`].

mod cmd;
mod guests;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <subcommand> [args...]

subcommands:
  guests         build every guest in guests/ as a wasm32-wasip2 component
  test [args]    install nats-server if missing, build the guests and the weir binary, run `cargo test --workspace [args]`,
                 then the SDK's and the guests' own tests
  run [args]     build the guests, then serve examples/quickstart (extra args go to `weir serve`)
  faults [--long]
                 build the guests and the weir binary, run the fault-injection suite
                 (tests/faults) and print its table; --long runs many more cycles
  fuzz [SECS]    run each cargo-fuzz target in fuzz/ for SECS seconds (default 60),
                 installing cargo-fuzz if missing
  bench [args]   build the guests, then run every benchmark (`cargo bench -p weir [args]`);
                 `--quick` runs a shorter version
  help           show this message";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain without anyhow's backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run the subcommand named by the first argument.
fn dispatch(args: &[String]) -> Result<()> {
    let (subcommand, rest) = match args.split_first() {
        Some((first, rest)) => (first.as_str(), rest),
        None => ("help", &[][..]),
    };
    match subcommand {
        "guests" => guests::build(&repo_root()).map(|_| ()),
        "test" => test(&repo_root(), rest),
        "run" => run(&repo_root(), rest),
        "bench" => bench(&repo_root(), rest),
        "faults" => faults(&repo_root(), rest),
        "fuzz" => fuzz(&repo_root(), rest),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown subcommand {other:?}\n\n{USAGE}"),
    }
}

/// What the end-to-end and fault tests drive: `nats-server`, the guest
/// components and the `weir` binary.
fn build_for_e2e(root: &Path) -> Result<()> {
    tools::ensure_nats_server()?;
    guests::build(root)?;
    let mut build = cmd::cargo(root);
    build.args(["build", "-p", "weir", "--bin", "weir"]);
    cmd::run(&mut build, "cargo build -p weir --bin weir")
}

/// Build the guests and the `weir` binary (the end-to-end tests drive it),
/// then run the root workspace's tests with `extra` args.
fn test(root: &Path, extra: &[String]) -> Result<()> {
    build_for_e2e(root)?;
    let mut cargo = cmd::cargo(root);
    cargo.args(["test", "--workspace"]).args(extra);
    cmd::run(&mut cargo, "cargo test --workspace")?;
    // The SDK and the guests' own unit tests run natively, in their workspaces.
    for dir in ["sdk", "guests"] {
        let mut cargo = cmd::foreign_cargo(&root.join(dir));
        cargo.arg("test").args(extra);
        cmd::run(&mut cargo, &format!("cargo test (in {dir}/)"))?;
    }
    Ok(())
}

/// Build what the fault suite drives, then run it one scenario at a time.
fn faults(root: &Path, extra: &[String]) -> Result<()> {
    build_for_e2e(root)?;
    let long = extra.iter().any(|a| a == "--long");
    let mut cargo = cmd::cargo(root);
    cargo
        .args([
            "test",
            "-p",
            "weir-e2e",
            "--test",
            "faults",
            "--",
            "--nocapture",
        ])
        .env("WEIR_FAULTS", if long { "long" } else { "short" });
    cmd::run(&mut cargo, "the fault suite")
}

/// Run every fuzz target for a while; a crash stops with its input saved
/// under `fuzz/artifacts/`.
fn fuzz(root: &Path, extra: &[String]) -> Result<()> {
    let secs: u64 = match extra.first() {
        Some(s) => s
            .parse()
            .map_err(|_| anyhow::anyhow!("SECS must be a number, got {s:?}"))?,
        None => 60,
    };
    tools::ensure_cargo_fuzz()?;
    for target in ["event_decode", "config_parse", "admin_bodies"] {
        let mut cargo = cmd::foreign_cargo(root);
        cargo
            .args([
                "fuzz",
                "run",
                target,
                "--",
                &format!("-max_total_time={secs}"),
            ])
            // cargo-fuzz passes nightly flags; the pinned stable toolchain
            // accepts them with RUSTC_BOOTSTRAP.
            .env("RUSTC_BOOTSTRAP", "1");
        cmd::run(&mut cargo, &format!("cargo fuzz run {target}"))?;
    }
    Ok(())
}

/// Build the guests, then serve the quickstart example in the foreground.
fn run(root: &Path, extra: &[String]) -> Result<()> {
    guests::build(root)?;
    let config = root.join("examples/quickstart/weir.toml");
    let mut cargo = cmd::cargo(root);
    cargo
        .args(["run", "--quiet", "-p", "weir", "--", "serve", "--config"])
        .arg(&config)
        .args(extra);
    eprintln!("serving examples/quickstart on http://127.0.0.1:7070 (Ctrl-C to stop)");
    eprintln!("  then: cargo run -q -p weir -- publish orders examples/quickstart/events.ndjson");
    eprintln!("        cargo run -q -p weir -- tail enriched --from-beginning");
    cmd::run(&mut cargo, "weir serve")
}

/// Build the guests, then run every benchmark of the host in one run.
fn bench(root: &Path, extra: &[String]) -> Result<()> {
    tools::ensure_nats_server()?;
    guests::build(root)?;
    let mut cargo = cmd::cargo(root);
    cargo
        .args(["bench", "-p", "weir", "--benches", "--"])
        .args(extra);
    cmd::run(&mut cargo, "cargo bench -p weir")
}

/// The repository root: the parent of this crate's directory.
fn repo_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf()
}
