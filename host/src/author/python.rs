//! Handlers in Python: the project `weir new --lang python` writes (the
//! handler in `app.py`, a pytest test, the `weir` package from
//! `sdk/python` and the WIT world, both vendored so the project builds
//! without a Weir checkout, and pinned build tools in `requirements.txt`),
//! and `weir build` for it: componentize-py, from the project's `.venv`
//! (created and filled from `requirements.txt` when missing), turns `app`
//! into a component of the `weir:handler` world.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::Template;

/// The componentize-py this host's Python support is tested with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

const WIT: &str = include_str!("../../../wit/handler.wit");
const SDK: [(&str, &str); 8] = [
    (
        "weir/__init__.py",
        include_str!("../../../sdk/python/weir/__init__.py"),
    ),
    (
        "weir/_backend.py",
        include_str!("../../../sdk/python/weir/_backend.py"),
    ),
    (
        "weir/_errors.py",
        include_str!("../../../sdk/python/weir/_errors.py"),
    ),
    (
        "weir/_guest.py",
        include_str!("../../../sdk/python/weir/_guest.py"),
    ),
    (
        "weir/config.py",
        include_str!("../../../sdk/python/weir/config.py"),
    ),
    (
        "weir/log.py",
        include_str!("../../../sdk/python/weir/log.py"),
    ),
    (
        "weir/state.py",
        include_str!("../../../sdk/python/weir/state.py"),
    ),
    (
        "weir/testing.py",
        include_str!("../../../sdk/python/weir/testing.py"),
    ),
];
const MAP: &str = include_str!("../../../sdk/template/python/map.py.in");
const STATEFUL: &str = include_str!("../../../sdk/template/python/stateful.py.in");
const TEST_MAP: &str = include_str!("../../../sdk/template/python/test_map.py.in");
const TEST_STATEFUL: &str = include_str!("../../../sdk/template/python/test_stateful.py.in");
const CONFTEST: &str = include_str!("../../../sdk/template/python/conftest.py");
const REQUIREMENTS: &str = include_str!("../../../sdk/template/python/requirements.txt");
const PYPROJECT: &str = include_str!("../../../sdk/template/python/pyproject.toml.in");
const GITIGNORE: &str = include_str!("../../../sdk/template/python/gitignore");
const README: &str = include_str!("../../../sdk/template/python/README.md.in");
const EVENTS: &str = include_str!("../../../sdk/template/events.ndjson");
const EXPECTED_MAP: &str = include_str!("../../../sdk/template/python/expected-map.ndjson.in");
const EXPECTED_STATEFUL: &str =
    include_str!("../../../sdk/template/python/expected-stateful.ndjson.in");

/// The files of a new Python project, placeholders filled by `fill`.
pub(super) fn files(template: Template, fill: impl Fn(&str) -> String) -> Vec<(String, String)> {
    let (app, test, expected) = match template {
        Template::Map => (MAP, TEST_MAP, EXPECTED_MAP),
        Template::Stateful => (STATEFUL, TEST_STATEFUL, EXPECTED_STATEFUL),
    };
    let own = [
        ("app.py", fill(app)),
        ("test_app.py", fill(test)),
        ("conftest.py", CONFTEST.to_string()),
        ("requirements.txt", REQUIREMENTS.to_string()),
        ("pyproject.toml", fill(PYPROJECT)),
        (".gitignore", GITIGNORE.to_string()),
        ("README.md", fill(README)),
        ("events.ndjson", EVENTS.to_string()),
        ("expected.ndjson", fill(expected)),
        ("wit/handler.wit", WIT.to_string()),
    ];
    super::project_files(own, &SDK)
}

/// Whether `dir` holds a Python handler project (`pyproject.toml` with
/// `[tool.weir] lang = "python"`).
pub(super) fn is_project(dir: &Path) -> bool {
    project(dir).is_ok_and(|p| p.lang.as_deref() == Some("python"))
}

struct Project {
    name: String,
    lang: Option<String>,
    app: String,
}

fn project(dir: &Path) -> anyhow::Result<Project> {
    let path = dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    let weir = value.get("tool").and_then(|t| t.get("weir"));
    let text_of = |v: Option<&toml::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
    Ok(Project {
        name: text_of(value.get("project").and_then(|p| p.get("name")))
            .with_context(|| format!("{} has no [project] name", path.display()))?,
        lang: text_of(weir.and_then(|w| w.get("lang"))),
        app: text_of(weir.and_then(|w| w.get("app"))).unwrap_or_else(|| "app".into()),
    })
}

/// Build the Python project in `dir` into `target/<name>.wasm` with
/// componentize-py; returns the component's path (not yet validated).
pub(super) fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let project = project(dir)?;
    let tool = ensure_componentize_py(dir)?;
    let target = dir.join("target");
    crate::datadir::create_dir(&target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    let wasm = target.join(format!("{}.wasm", project.name.replace('-', "_")));
    eprintln!(
        "building {} with componentize-py (module `{}`)",
        dir.display(),
        project.app
    );
    let status = Command::new(&tool)
        .args(["-d", "wit", "-w", "handler", "componentize", &project.app])
        .args(["-p", ".", "-o"])
        .arg(&wasm)
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot run {}", tool.display()))?;
    if !status.success() {
        bail!(
            "componentize-py failed ({status}); see its output above (a Python error at import \
             time of `{}` shows there too)",
            project.app
        );
    }
    Ok(wasm)
}

/// `.venv/bin/componentize-py` in `dir`, after creating `.venv` and
/// installing `requirements.txt` (or [`COMPONENTIZE_PY`]) when it is missing.
fn ensure_componentize_py(dir: &Path) -> anyhow::Result<PathBuf> {
    let venv = dir.join(".venv");
    let tool = venv.join("bin/componentize-py");
    if tool.exists() {
        return Ok(tool);
    }
    let requirements = dir.join("requirements.txt");
    eprintln!(
        "no componentize-py in {}; creating it and installing {}",
        venv.display(),
        if requirements.exists() {
            "requirements.txt"
        } else {
            COMPONENTIZE_PY
        }
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("cannot run python3: install Python 3.9+ with its venv module")?;
    if !status.success() {
        bail!(
            "`python3 -m venv .venv` failed ({status}); install Python's venv module (Debian: python3-venv)"
        );
    }
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "--quiet", "--disable-pip-version-check"]);
    if requirements.exists() {
        pip.arg("-r").arg(&requirements);
    } else {
        pip.arg(COMPONENTIZE_PY);
    }
    let status = pip.current_dir(dir).status().context("cannot run pip")?;
    if !status.success() || !tool.exists() {
        bail!(
            "installing componentize-py into {} failed ({status}); check network access to PyPI \
             (or PIP_INDEX_URL / PIP_FIND_LINKS), then run `weir build` again",
            venv.display()
        );
    }
    Ok(tool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_python_package_is_vendored() {
        super::super::tests::assert_all_vendored("python", ".py", &SDK);
    }

    #[test]
    fn a_new_project_is_a_python_project_with_placeholders_filled() {
        let dir = tempfile::tempdir().unwrap();
        let made = super::super::new(
            "hello-py",
            Template::Stateful,
            super::super::Lang::Python,
            dir.path(),
            None,
        )
        .unwrap();
        assert!(is_project(&made));
        assert_eq!(project(&made).unwrap().name, "hello-py");
        for file in [
            "app.py",
            "test_app.py",
            "README.md",
            "pyproject.toml",
            "expected.ndjson",
        ] {
            let text = std::fs::read_to_string(made.join(file)).unwrap();
            assert!(!text.contains("{{"), "{file}: every placeholder filled");
        }
        assert!(made.join("weir/testing.py").exists() && made.join("wit/handler.wit").exists());
        assert!(!made.join("Cargo.toml").exists());
    }
}
