//! Guests written in Python (`guests/<name>/app.py`, the `weir` package of
//! `sdk/python`): built into components with a pinned componentize-py from
//! a venv under `target/py-venv` (created from PyPI when missing), and
//! their tests and the package's own (pytest) run by `cargo xtask test`.
//! Guests written in JavaScript (`guests/<name>/app.js`) are [`js`]'s.
//!
//! A build takes 5-10 s per guest, so each component is cached under
//! `target/polyglot-guests/` by a hash of everything that goes into it (the
//! guest's sources, the SDK, the WIT world, the tool's version); an
//! unchanged guest is copied, not rebuilt.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;

mod js;

/// The componentize-py the guests are built with (the version `weir build`
/// installs for Python projects, `weir::author`'s `COMPONENTIZE_PY`).
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// The pytest the Python tests run with.
const PYTEST: &str = "pytest==9.2.0";

/// The guest directories holding `file`, sorted.
fn guests_with(root: &Path, file: &str) -> Result<Vec<PathBuf>> {
    let guests = root.join("guests");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&guests)
        .with_context(|| format!("reading {}", guests.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| d.join(file).exists())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The guest directories with an `app.py`, sorted.
fn python_guests(root: &Path) -> Result<Vec<PathBuf>> {
    guests_with(root, "app.py")
}

/// A guest's artifact name: its directory's name with `-` as `_`.
fn guest_name(dir: &Path) -> String {
    dir.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .replace('-', "_")
}

/// Where the component of guest `name` with source hash `hash` is cached.
fn cache_path(root: &Path, name: &str, hash: u64) -> Result<PathBuf> {
    let cache = root.join("target/polyglot-guests");
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    Ok(cache.join(format!("{name}-{hash:016x}.wasm")))
}

/// Copy a cached component to `out_dir/<name>.wasm`.
fn copy_out(cached: &Path, out_dir: &Path, name: &str) -> Result<()> {
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let dest = out_dir.join(format!("{name}.wasm"));
    fs::copy(cached, &dest).with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

/// `target/py-venv` with componentize-py and pytest, created when missing.
fn venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/py-venv");
    let version = COMPONENTIZE_PY.trim_start_matches("componentize-py==");
    let installed = Command::new(venv.join("bin/componentize-py"))
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(version))
        && venv.join("bin/pytest").exists();
    if installed {
        return Ok(venv);
    }
    println!(
        "installing {COMPONENTIZE_PY} and {PYTEST} from PyPI into {}",
        venv.display()
    );
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(&venv);
    cmd::run(&mut create, "python3 -m venv target/py-venv")?;
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args([
        "install",
        "-q",
        "--disable-pip-version-check",
        COMPONENTIZE_PY,
        PYTEST,
    ]);
    cmd::run(&mut pip, "pip install componentize-py pytest")?;
    Ok(venv)
}

/// Hash the Python, JavaScript and WIT files directly in `dir` (tests excluded) into `hasher`.
fn hash_dir(dir: &Path, hasher: &mut DefaultHasher) -> Result<()> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "py" || e == "js" || e == "wit")
                && !p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("test_") || n.ends_with(".test.js")
                })
        })
        .collect();
    files.sort();
    for file in files {
        file.file_name().hash(hasher);
        fs::read(&file)
            .with_context(|| format!("reading {}", file.display()))?
            .hash(hasher);
    }
    Ok(())
}

/// Build every Python and JavaScript guest into `out_dir/<name>.wasm`
/// (`-` as `_`), from the cache when its sources are unchanged.
pub fn build(root: &Path, out_dir: &Path) -> Result<()> {
    build_python(root, out_dir)?;
    js::build(root, out_dir)
}

/// Build each guest of `guests` into `out_dir/<name>.wasm` through the
/// cache: its key is `shared` (the tool's version, the SDK, the WIT world)
/// plus the guest's own sources; on a miss `make(dir, name, partial)`
/// writes the component to `partial`, which then becomes the cached copy.
fn build_cached(
    root: &Path,
    out_dir: &Path,
    guests: Vec<PathBuf>,
    shared: &DefaultHasher,
    mut make: impl FnMut(&Path, &str, &Path) -> Result<()>,
) -> Result<()> {
    for dir in guests {
        let name = guest_name(&dir);
        let mut hasher = shared.clone();
        hash_dir(&dir, &mut hasher)?;
        let cached = cache_path(root, &name, hasher.finish())?;
        if !cached.exists() {
            let partial = cached.with_extension("partial");
            make(&dir, &name, &partial)?;
            fs::rename(&partial, &cached)
                .with_context(|| format!("renaming to {}", cached.display()))?;
        }
        copy_out(&cached, out_dir, &name)?;
    }
    Ok(())
}

fn build_python(root: &Path, out_dir: &Path) -> Result<()> {
    let sdk = root.join("sdk/python");
    let mut shared = DefaultHasher::new();
    COMPONENTIZE_PY.hash(&mut shared);
    hash_dir(&sdk.join("weir"), &mut shared)?;
    hash_dir(&root.join("wit"), &mut shared)?;
    let mut venv_dir = None;
    build_cached(
        root,
        out_dir,
        python_guests(root)?,
        &shared,
        |dir, name, partial| {
            let venv = match &venv_dir {
                Some(v) => v,
                None => venv_dir.insert(venv(root)?),
            };
            println!("building guest {name} with componentize-py");
            let mut build = Command::new(venv.join("bin/componentize-py"));
            build
                .arg("-d")
                .arg(root.join("wit"))
                .args(["-w", "handler", "componentize", "app", "-p"])
                .arg(dir)
                .arg("-p")
                .arg(&sdk)
                .arg("-o")
                .arg(partial)
                .env("PYTHONDONTWRITEBYTECODE", "1");
            cmd::run(&mut build, &format!("componentize-py ({name})"))
        },
    )
}

/// Run the Python package's tests and each Python guest's (pytest), then
/// the JavaScript ones (`node --test`).
pub fn test(root: &Path) -> Result<()> {
    test_python(root)?;
    js::test(root)
}

fn test_python(root: &Path) -> Result<()> {
    let guests = python_guests(root)?;
    let venv = venv(root)?;
    let sdk = root.join("sdk/python");
    for dir in std::iter::once(sdk.clone()).chain(guests) {
        let mut pytest = Command::new(venv.join("bin/pytest"));
        pytest
            .args(["-q", "-p", "no:cacheprovider"])
            .current_dir(&dir)
            .env("PYTHONPATH", &sdk)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let status = pytest
            .status()
            .with_context(|| format!("running pytest in {}", dir.display()))?;
        if !status.success() {
            bail!("pytest failed in {} ({status})", dir.display());
        }
    }
    Ok(())
}
