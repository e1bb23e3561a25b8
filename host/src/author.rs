//! The handler-author commands: `weir new` scaffolds a handler crate from
//! the template in `sdk/template`, `weir build` builds and validates its
//! component, and `weir run` runs a component over sample events locally,
//! with the host's sandbox and limits, no server needed; with `--expect`
//! it is a contract test ([`expect`]). Handlers in Python are projects of
//! [`python`], handlers in JavaScript projects of [`js`].

mod expect;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::admin::events::{parse_events, to_record};
use crate::event::{Event, payload_view};
use crate::runtime::{
    HandlerInstance, HandlerSettings, Limits, LoadedComponent, MemState, Runtime, inspect,
};

mod js;
mod python;

/// The language of a new handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate using `weir-sdk`, built for wasm32-wasip2 by cargo.
    Rust,
    /// A Python project using the `weir` package, built by componentize-py.
    Python,
    /// A JavaScript project using the `weir` package, built by componentize-js.
    Js,
}

impl Lang {
    /// What to run after `weir new` in `dir`.
    pub fn next_steps(self, dir: &Path) -> String {
        match self {
            Self::Rust => format!("cd {} && cargo test && weir build", dir.display()),
            Self::Python => format!("cd {} && weir build && .venv/bin/pytest", dir.display()),
            Self::Js => format!("cd {} && node --test && weir build", dir.display()),
        }
    }
}

/// Which template `weir new` starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// Stateless JSON map: one enriched output per input.
    Map,
    /// Keyed state: a counter per key.
    Stateful,
}

const CARGO_TOML: &str = include_str!("../../sdk/template/Cargo.toml.in");
const TOOLCHAIN: &str = include_str!("../../sdk/template/rust-toolchain.toml");
const CARGO_CONFIG: &str = include_str!("../../sdk/template/dot-cargo/config.toml");
const GITIGNORE: &str = include_str!("../../sdk/template/gitignore");
const EVENTS: &str = include_str!("../../sdk/template/events.ndjson");
const README: &str = include_str!("../../sdk/template/README.md.in");
const MAP_RS: &str = include_str!("../../sdk/template/map.rs.in");
const STATEFUL_RS: &str = include_str!("../../sdk/template/stateful.rs.in");
const EXPECTED_MAP: &str = include_str!("../../sdk/template/expected-map.ndjson.in");
const EXPECTED_STATEFUL: &str = include_str!("../../sdk/template/expected-stateful.ndjson.in");

/// The SDK this binary was built with, if its sources are still there.
fn default_sdk() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    path.join("Cargo.toml")
        .exists()
        .then(|| path.canonicalize().ok())
        .flatten()
}

fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Scaffold a handler crate `name` in `parent/name`.
pub fn new(
    name: &str,
    template: Template,
    lang: Lang,
    parent: &Path,
    sdk: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{name}` is not a valid handler name: use lowercase letters, digits, `-` and `_`, starting with a letter"
        );
    }
    let sdk = match sdk.or_else(default_sdk) {
        _ if lang != Lang::Rust => PathBuf::new(),
        Some(sdk) => sdk
            .canonicalize()
            .with_context(|| format!("no weir-sdk at {}", sdk.display()))?,
        None => {
            bail!("cannot find weir-sdk; pass --sdk PATH (the `sdk/` directory of a Weir checkout)")
        }
    };
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or directory",
            dir.display()
        );
    }
    let template_name = match template {
        Template::Map => "map",
        Template::Stateful => "stateful",
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{type}}", &type_name(name))
            .replace("{{template}}", template_name)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let files = match lang {
        Lang::Rust => rust_files(template, fill),
        Lang::Python => python::files(template, fill),
        Lang::Js => js::files(template, fill),
    };
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            crate::datadir::create_dir(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        crate::datadir::write_atomic(&path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}

/// A project's files: `own` (path, text) pairs, then the `vendored` ones
/// (a copy of a language's `weir` package) as they are.
fn project_files<'a>(
    own: impl IntoIterator<Item = (&'a str, String)>,
    vendored: &[(&str, &str)],
) -> Vec<(String, String)> {
    own.into_iter()
        .map(|(p, t)| (p.to_string(), t))
        .chain(vendored.iter().map(|(p, t)| (p.to_string(), t.to_string())))
        .collect()
}

/// The files of a new Rust crate, placeholders filled by `fill`.
fn rust_files(template: Template, fill: impl Fn(&str) -> String) -> Vec<(String, String)> {
    let (lib, expected) = match template {
        Template::Map => (MAP_RS, EXPECTED_MAP),
        Template::Stateful => (STATEFUL_RS, EXPECTED_STATEFUL),
    };
    [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("rust-toolchain.toml", TOOLCHAIN.to_string()),
        (".cargo/config.toml", fill(CARGO_CONFIG)),
        (".gitignore", GITIGNORE.to_string()),
        ("events.ndjson", EVENTS.to_string()),
        ("expected.ndjson", fill(expected)),
        ("README.md", fill(README)),
        ("src/lib.rs", fill(lib)),
    ]
    .into_iter()
    .map(|(p, t)| (p.to_string(), t))
    .collect()
}

/// The crate name in `dir/Cargo.toml`.
fn crate_name(dir: &Path) -> anyhow::Result<String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "no Cargo.toml in {}; run `weir build` in a handler crate",
            dir.display()
        )
    })?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("invalid {}", manifest.display()))?;
    value
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(|n| n.replace('-', "_"))
        .with_context(|| format!("{} has no [package] name", manifest.display()))
}

/// Build the handler in `dir` (a Rust crate, a Python or a JavaScript
/// project) and validate the component. Returns the component's path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let rust = dir.join("Cargo.toml").exists();
    let wasm = if !rust && python::is_project(dir) {
        python::build(dir)?
    } else if !rust && js::is_project(dir) {
        js::build(dir)?
    } else {
        build_rust(dir)?
    };
    describe(&wasm)?;
    Ok(wasm)
}

/// Build the crate in `dir` for wasm32-wasip2; returns the component's path.
fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let name = crate_name(dir)?;
    eprintln!("building {} for wasm32-wasip2 (release)", dir.display());
    let status = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status}); see its output above");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| dir.join(t))
        .unwrap_or_else(|| dir.join("target"));
    Ok(target.join(format!("wasm32-wasip2/release/{name}.wasm")))
}

/// Validate the component at `wasm` and print what it is.
fn describe(wasm: &Path) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(wasm).with_context(|| format!("the build wrote no {}", wasm.display()))?;
    let runtime = Runtime::new().map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e}"))?;
    let info = inspect(&runtime, &bytes)
        .with_context(|| format!("{} is not a valid handler", wasm.display()))?;
    println!("component  {}", wasm.display());
    println!("size       {} bytes", info.size);
    println!("digest     {}", info.digest);
    println!("exports    {}", info.exports.join(", "));
    println!("imports    {}", info.imports.join(", "));
    Ok(())
}

/// Options of `weir run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The component.
    pub component: PathBuf,
    /// NDJSON events (the `weir publish` format).
    pub events: PathBuf,
    /// Topic the events appear to come from.
    pub topic: String,
    /// Handler config pairs.
    pub config: BTreeMap<String, String>,
    /// Allowed output topics (any when empty).
    pub outputs: Vec<String>,
    /// Sandbox limits.
    pub limits: Limits,
    /// Expected outputs (NDJSON): compare, and fail with a diff if they differ.
    pub expect: Option<PathBuf>,
}

/// `(field, value)` of a payload in `weir run`'s output: `payload` when
/// it is JSON, else `payload_base64`.
fn payload_json(bytes: &[u8]) -> (&'static str, Value) {
    match payload_view(bytes) {
        (Some(v), _) => ("payload", v),
        (None, b64) => ("payload_base64", json!(b64)),
    }
}

/// Run a component over sample events: outputs as NDJSON on stdout, errors
/// and the final state on stderr. Duplicates (by ID) are dropped like the
/// host does; state is committed after every successful event.
pub fn run(opts: RunOptions) -> anyhow::Result<()> {
    let bytes = std::fs::read(&opts.component)
        .with_context(|| format!("cannot read {}", opts.component.display()))?;
    let runtime = Runtime::new().map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e}"))?;
    let component = LoadedComponent::from_bytes(&runtime, &bytes)
        .with_context(|| format!("{} is not a valid handler", opts.component.display()))?;
    let text = std::fs::read(&opts.events)
        .with_context(|| format!("cannot read {}", opts.events.display()))?;
    let incoming =
        parse_events(&text).map_err(|e| anyhow::anyhow!("{}: {e}", opts.events.display()))?;
    let state = MemState::default();
    let settings = HandlerSettings {
        name: "local".into(),
        limits: opts.limits.clone(),
        allowed_outputs: if opts.outputs.is_empty() {
            vec!["*".into()]
        } else {
            opts.outputs.clone()
        },
        config: opts.config.clone(),
    };
    let mut instance =
        HandlerInstance::new(&runtime, &component, settings, Arc::new(state.clone()));
    let expected = match &opts.expect {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(expect::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let mut emitted = Vec::new();
    let (mut seen, mut outputs, mut errors, mut duplicates) = (HashSet::new(), 0, 0, 0);
    let now = crate::clock::now_ms();
    for (offset, e) in incoming.into_iter().enumerate() {
        let record =
            to_record(e, now).map_err(|m| anyhow::anyhow!("{}: {m}", opts.events.display()))?;
        let event: Event = record.into_event(&opts.topic, 0, offset as u64);
        if !seen.insert(event.id.clone()) {
            duplicates += 1;
            eprintln!("event {}: duplicate ID, dropped", event.id);
            continue;
        }
        match instance.invoke(&event) {
            Ok(outs) => {
                state.apply(instance.take_batch_writes());
                for (i, o) in outs.into_iter().enumerate() {
                    let (field, payload) = payload_json(&o.payload);
                    let line = json!({"input": event.id, "index": i, "topic": o.topic, "key": o.key, "headers": o.headers, field: payload});
                    println!("{line}");
                    emitted.push(line);
                    outputs += 1;
                }
            }
            Err(err) => {
                errors += 1;
                let what = if err.is_retryable() {
                    "the host would retry, then dead-letter"
                } else {
                    "the host would dead-letter it"
                };
                eprintln!("event {}: {} error: {err} ({what})", event.id, err.kind());
            }
        }
    }
    let committed = state.snapshot();
    let shown: BTreeMap<&String, Value> = committed
        .iter()
        .map(|(k, v)| (k, payload_json(v).1))
        .collect();
    eprintln!(
        "{} events: {outputs} outputs, {errors} errors, {duplicates} duplicates dropped",
        seen.len() + duplicates
    );
    eprintln!("state: {}", serde_json::to_string(&shown)?);
    if let (Some(expected), Some(path)) = (expected, &opts.expect) {
        expect::compare(&expected, &emitted).map_err(|diff| anyhow::anyhow!("{diff}"))?;
        eprintln!(
            "contract test passed: {} outputs match {}",
            emitted.len(),
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `weir/*.{ext}` files of `sdk/<lang>/weir` are exactly `vendored`'s.
    pub(super) fn assert_all_vendored(lang: &str, ext: &str, vendored: &[(&str, &str)]) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../sdk/{lang}/weir"));
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(ext))
            .map(|n| format!("weir/{n}"))
            .collect();
        on_disk.sort();
        let listed: Vec<String> = vendored.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(on_disk, listed);
    }

    #[test]
    fn type_names_are_camel_case() {
        assert_eq!(type_name("order-enricher"), "OrderEnricher");
        assert_eq!(type_name("hello"), "Hello");
        assert_eq!(type_name("a_b-c"), "ABC");
    }

    #[test]
    fn new_refuses_bad_names_and_existing_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert!(new("Bad Name", Template::Map, Lang::Rust, dir.path(), None).is_err());
        let made = new("ok-name", Template::Stateful, Lang::Rust, dir.path(), None).unwrap();
        let lib = std::fs::read_to_string(made.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct OkName;"));
        assert!(!lib.contains("{{"), "every placeholder filled");
        let cargo = std::fs::read_to_string(made.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"ok-name\"") && cargo.contains("weir-sdk = { path = \"/"));
        let err = new("ok-name", Template::Map, Lang::Rust, dir.path(), None).unwrap_err();
        assert!(err.to_string().contains("already exists"));
    }
}
