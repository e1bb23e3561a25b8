//! Handlers in Python and JavaScript, end to end: exactly once under
//! SIGKILL with the Python twins of `map` and `counter` (the scenario of
//! `crash.rs`), and the author's path outside the repository: `weir new
//! --lang python`, an edit, `weir build` (which installs componentize-py
//! into the project's `.venv`), `pytest`, `weir run`, `weir deploy`,
//! publish, read; and the same for `--lang js` (`node --test` first, then
//! `weir build`, which runs `npm ci` for componentize-js, and the
//! template's contract test with `weir run --expect`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir_e2e::weir_bin;

fn weir(args: &[&str], cwd: &Path) -> Output {
    Command::new(weir_bin())
        .args(args)
        .current_dir(cwd)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap()
}

/// The author's edit: `from` replaced by `to` in `path`, which must hold it.
fn edit(path: &Path, from: &str, to: &str) {
    let source = std::fs::read_to_string(path).unwrap();
    let edited = source.replace(from, to);
    assert_ne!(source, edited, "{} changed: {source}", path.display());
    std::fs::write(path, edited).unwrap();
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `weir new NAME --lang LANG` in `dir`, whose next steps mention `hint`.
fn new_project(dir: &Path, name: &str, lang: &str, hint: &str) -> PathBuf {
    let out = weir(&["new", name, "--lang", lang], dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(hint), "{}", text(&out));
    dir.join(name)
}

/// `weir build` in `project`: a validated component at `target/<crate>.wasm`.
fn build(project: &Path, crate_name: &str) -> PathBuf {
    let out = weir(&["build"], project);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("weir:handler/guest@0.1.0"),
        "{}",
        text(&out)
    );
    let wasm = project.join(format!("target/{crate_name}.wasm"));
    assert!(wasm.exists());
    wasm
}

#[test]
fn python_handlers_have_exactly_one_disposition_despite_sigkill() {
    crate::crash::sigkill_scenario("py-map", "py-counter");
}

#[test]
fn python_new_edit_build_test_run_deploy_publish_read() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_project(dir.path(), "hello-py", "python", "weir build");

    // The author's edit: a field from config on every output.
    edit(
        &project.join("app.py"),
        "    body[\"handled_by\"] = \"hello-py\"\n",
        "    body[\"handled_by\"] = \"hello-py\"\n    body[\"team\"] = weir.config.get_or(\"team\", \"none\")\n",
    );
    edit(
        &project.join("test_app.py"),
        "\"handled_by\": \"hello-py\"}",
        "\"handled_by\": \"hello-py\", \"team\": \"none\"}",
    );

    // weir build creates .venv with componentize-py, builds, validates.
    let wasm = build(&project, "hello_py");

    // The unit tests, natively, from the venv weir build filled.
    let test = Command::new(project.join(".venv/bin/pytest"))
        .current_dir(&project)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(test.status.success(), "{}", text(&test));
    assert!(text(&test).contains("2 passed"), "{}", text(&test));

    // weir run over the sample events (e1, e2, a duplicate e1, a
    // non-object) with the template's contract test: it catches the edit
    // (an extra field), and passes once the author records it in
    // expected.ndjson.
    let wasm_arg = wasm.to_str().unwrap();
    let contract = [
        "run",
        wasm_arg,
        "--events",
        "events.ndjson",
        "--config",
        "team=blue",
    ];
    let out = weir(
        &[&contract[..], &["--expect", "expected.ndjson"]].concat(),
        &project,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("/payload/team"), "{}", text(&out));
    let expected = project.join("expected.ndjson");
    let recorded = std::fs::read_to_string(&expected).unwrap().replace(
        "\"handled_by\": \"hello-py\"}",
        "\"handled_by\": \"hello-py\", \"team\": \"blue\"}",
    );
    std::fs::write(&expected, recorded).unwrap();
    let out = weir(
        &[&contract[..], &["--expect", "expected.ndjson"]].concat(),
        &project,
    );
    let lines = crate::newcomer::check_sample_run(&out);
    assert_eq!(lines[0]["payload"]["handled_by"], "hello-py");
    assert_eq!(lines[0]["payload"]["team"], "blue");
    assert!(
        text(&out).contains("contract test passed"),
        "{}",
        text(&out)
    );

    // Deploy to a running host (default limits), publish, read.
    crate::newcomer::deploy_publish_read(dir.path(), &project, &wasm, ("team", "none"));
}

#[test]
fn js_new_edit_test_build_run_deploy_publish_read() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_project(dir.path(), "hello-js", "js", "node --test");

    // The author's edit: a field from config on every output, and its test.
    edit(
        &project.join("app.js"),
        "  body.handled_by = 'hello-js';\n",
        "  body.handled_by = 'hello-js';\n  body.team = weir.config.getOr('team', 'none');\n",
    );
    edit(
        &project.join("app.test.js"),
        "handled_by: 'hello-js',\n",
        "handled_by: 'hello-js',\n    team: 'none',\n",
    );

    // The unit tests, natively, before anything is installed.
    let test = Command::new("node")
        .arg("--test")
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(test.status.success(), "{}", text(&test));
    assert!(text(&test).contains("# pass 2"), "{}", text(&test));

    // weir build runs `npm ci` for componentize-js, builds, validates.
    let wasm = build(&project, "hello_js");

    // One `weir run` (a compilation of an interpreter costs seconds): the
    // sample events (e1, e2, a duplicate e1, a non-object) checked against
    // the template's contract test, which the author updates for the edit.
    edit(
        &project.join("expected.ndjson"),
        "\"handled_by\": \"hello-js\"",
        "\"handled_by\": \"hello-js\", \"team\": \"blue\"",
    );
    let out = weir(
        &[
            "run",
            wasm.to_str().unwrap(),
            "--events",
            "events.ndjson",
            "--config",
            "output_topic=out",
            "--config",
            "team=blue",
            "--expect",
            "expected.ndjson",
        ],
        &project,
    );
    let lines = crate::newcomer::check_sample_run(&out);
    assert_eq!(lines[0]["payload"]["team"], "blue");
    assert!(
        text(&out).contains("contract test passed"),
        "{}",
        text(&out)
    );

    // Deploy to a running host (default limits), publish, read.
    crate::newcomer::deploy_publish_read(dir.path(), &project, &wasm, ("team", "none"));
}
