//! Guests written in JavaScript (`guests/<name>/app.js`, the `weir`
//! package of `sdk/js`): built into components with the componentize-js
//! pinned by the handler template's `package.json` and `package-lock.json`,
//! installed by `npm ci` into `target/js-tools` when missing; their tests,
//! the package's own and the templates' run with `node --test`.
//!
//! A build takes 10-20 s per guest, so each component is cached like the
//! Python ones (see the parent module).

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{build_cached, guests_with, hash_dir};
use crate::cmd;

/// The componentize-js the guests are built with (the version `weir new
/// --lang js` pins, `weir::author`'s `COMPONENTIZE_JS`).
pub const COMPONENTIZE_JS: &str = "0.23.0";

/// The script componentize-js runs from, under a `node_modules`.
const CLI: &str = "node_modules/@bytecodealliance/componentize-js/src/cli.js";

/// `target/js-tools` with componentize-js installed by `npm ci` from the
/// template's lockfile, when missing or another version.
fn tools(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/js-tools");
    let installed = dir.join("node_modules/@bytecodealliance/componentize-js/package.json");
    let pinned = format!("\"version\": \"{COMPONENTIZE_JS}\"");
    if fs::read_to_string(&installed).is_ok_and(|text| text.contains(&pinned)) {
        return Ok(dir);
    }
    println!(
        "installing componentize-js {COMPONENTIZE_JS} from npm into {}",
        dir.display()
    );
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let template = root.join("sdk/template/js");
    for (from, to) in [
        ("package.json.in", "package.json"),
        ("package-lock.json.in", "package-lock.json"),
    ] {
        let text = fs::read_to_string(template.join(from))
            .with_context(|| format!("reading sdk/template/js/{from}"))?;
        let filled = text
            .replace("{{name}}", "weir-js-tools")
            .replace("{{template}}", "tools");
        fs::write(dir.join(to), filled).with_context(|| format!("writing {to}"))?;
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir);
    cmd::run(
        &mut npm,
        "npm ci (target/js-tools; needs Node.js 20+ and npm)",
    )?;
    Ok(dir)
}

/// Build every JavaScript guest into `out_dir/<name>.wasm`, from the cache
/// when its sources are unchanged.
pub fn build(root: &Path, out_dir: &Path) -> Result<()> {
    let mut shared = DefaultHasher::new();
    COMPONENTIZE_JS.hash(&mut shared);
    hash_dir(&root.join("sdk/js/weir"), &mut shared)?;
    hash_dir(&root.join("wit"), &mut shared)?;
    let mut tools_dir = None;
    let guests = guests_with(root, "app.js")?;
    build_cached(root, out_dir, guests, &shared, |dir, name, partial| {
        let tools = match &tools_dir {
            Some(t) => t,
            None => tools_dir.insert(tools(root)?),
        };
        println!("building guest {name} with componentize-js");
        // The entry module: the host bindings, then the guest's export.
        // componentize-js reads sources below its working directory, so
        // paths are relative to the repository's root.
        let entry = format!("target/polyglot-guests/{name}-entry.js");
        let guest_dir = dir.file_name().unwrap_or_default().to_string_lossy();
        fs::write(
            root.join(&entry),
            format!(
                "import '../../sdk/js/weir/component.js';\n\
                 export {{ guest }} from '../../guests/{guest_dir}/app.js';\n"
            ),
        )
        .with_context(|| format!("writing {entry}"))?;
        let mut build = Command::new("node");
        build
            .arg(tools.join(CLI))
            .arg(&entry)
            .args(["--wit", "wit", "--world-name", "handler"])
            .args(["--disable", "http", "fetch-event", "-o"])
            .arg(partial)
            .current_dir(root);
        cmd::run(&mut build, &format!("componentize-js ({name})"))
    })
}

/// `node --test` in `dir`.
fn node_test(dir: &Path) -> Result<()> {
    let status = Command::new("node")
        .arg("--test")
        .current_dir(dir)
        .status()
        .with_context(|| {
            format!(
                "running node --test in {} (needs Node.js 20+)",
                dir.display()
            )
        })?;
    if !status.success() {
        bail!("node --test failed in {} ({status})", dir.display());
    }
    Ok(())
}

/// Run the JavaScript package's tests, each JavaScript guest's, and the
/// tests of both templates in projects `weir new --lang js` writes (with
/// the `weir` binary the suite built).
pub fn test(root: &Path) -> Result<()> {
    for dir in std::iter::once(root.join("sdk/js")).chain(guests_with(root, "app.js")?) {
        node_test(&dir)?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| root.join(t))
        .unwrap_or_else(|| root.join("target"));
    let weir = target.join("debug/weir");
    let scratch = target.join("js-templates");
    if scratch.exists() {
        fs::remove_dir_all(&scratch).with_context(|| format!("removing {}", scratch.display()))?;
    }
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    for template in ["map", "stateful"] {
        let mut new = Command::new(&weir);
        new.args(["new", template, "--lang", "js", "--template", template])
            .current_dir(&scratch);
        cmd::run(&mut new, &format!("weir new {template} --lang js"))?;
        node_test(&scratch.join(template))?;
    }
    Ok(())
}
