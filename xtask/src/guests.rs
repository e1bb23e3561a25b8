//! `cargo xtask guests`: build every guest handler in `guests/` as a
//! wasm32-wasip2 component, convert the guests written in WebAssembly text
//! (`guests/<name>/module.wat`, a core module, or `component.wat`) to
//! binaries, build the guests written in Python (`guests/<name>/app.py`,
//! see [`crate::polyglot`]), and print what was produced.
//!
//! Invariant: every artifact ends up in one directory,
//! `guests/target/wasm32-wasip2/release/<crate_name>.wasm` (crate names with
//! underscores), which is what host tests load.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;

/// The target the guests are built for.
const TARGET: &str = "wasm32-wasip2";

/// Build all guests; returns the artifact directory.
pub fn build(root: &Path) -> Result<PathBuf> {
    let guests = root.join("guests");
    let out_dir = guests.join("target").join(TARGET).join("release");
    ensure_target(root)?;
    println!(
        "building guests ({TARGET}, release) in {}",
        guests.display()
    );
    let mut cargo = cmd::foreign_cargo(&guests);
    cargo.args(["build", "--release", "--target", TARGET]);
    cmd::run(
        &mut cargo,
        "cargo build --release --target wasm32-wasip2 (guests/)",
    )?;
    write_text_guests(&guests, &out_dir)?;
    crate::polyglot::build(root, &out_dir)?;
    print_artifacts(&out_dir)?;
    Ok(out_dir)
}

/// Install the wasm32-wasip2 target through rustup if it is missing.
fn ensure_target(root: &Path) -> Result<()> {
    let mut list = rustup(root);
    list.args(["target", "list", "--installed"]);
    let output = match list.output() {
        Ok(output) if output.status.success() => output,
        Ok(output) => bail!(
            "`rustup target list --installed` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => {
            println!("warning: could not run rustup ({e}); assuming {TARGET} is installed");
            return Ok(());
        }
    };
    if String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    println!("installing the {TARGET} target with rustup");
    cmd::run(
        rustup(root).args(["target", "add", TARGET]),
        "rustup target add wasm32-wasip2",
    )
}

/// `rustup` in the repository root, so `rust-toolchain.toml` picks the toolchain.
fn rustup(root: &Path) -> Command {
    let mut command = Command::new("rustup");
    command.current_dir(root).env_remove("RUSTUP_TOOLCHAIN");
    command
}

/// Convert each `<name>/module.wat` or `<name>/component.wat` in `guests`
/// to `<name>.wasm` (with `-` as `_`) in `out_dir`.
fn write_text_guests(guests: &Path, out_dir: &Path) -> Result<()> {
    let entries = fs::read_dir(guests).with_context(|| format!("reading {}", guests.display()))?;
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    for dir in dirs {
        for file in ["module.wat", "component.wat"] {
            let source = dir.join(file);
            if !source.exists() {
                continue;
            }
            let binary = wat::parse_file(&source)
                .with_context(|| format!("could not convert {}", source.display()))?;
            let name = dir.file_name().unwrap_or_default().to_string_lossy();
            let dest = out_dir.join(format!("{}.wasm", name.replace('-', "_")));
            fs::write(&dest, binary)
                .with_context(|| format!("could not write {}", dest.display()))?;
        }
    }
    Ok(())
}

/// Print a table of the `.wasm` files in `out_dir`: name, size, kind.
fn print_artifacts(out_dir: &Path) -> Result<()> {
    let mut artifacts = Vec::new();
    for entry in fs::read_dir(out_dir).with_context(|| format!("reading {}", out_dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            artifacts.push(path);
        }
    }
    artifacts.sort();
    println!("\nartifacts in {}:", out_dir.display());
    for path in &artifacts {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        println!(
            "  {name:<24} {:>8.1} KiB  {}",
            kib(bytes.len()),
            kind(&bytes)
        );
    }
    Ok(())
}

fn kib(bytes: usize) -> f64 {
    // Artifact sizes are far below 2^52 bytes, so the conversion is exact.
    bytes as f64 / 1024.0
}

/// Tell a component from a core module by the version/layer field of the
/// header (`0d 00 01 00` for components, `01 00 00 00` for core modules).
fn kind(bytes: &[u8]) -> &'static str {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => "component",
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => "core module",
        _ => "not wasm",
    }
}
