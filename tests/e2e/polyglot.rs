//! Handlers in Python, end to end: exactly once under SIGKILL with the
//! Python twins of `map` and `counter` (the scenario of `crash.rs`), and
//! the author's path outside the repository: `weir new --lang python`, an
//! edit, `weir build` (which installs componentize-py into the project's
//! `.venv`), `pytest`, `weir run`, `weir deploy`, publish, read.

use std::path::Path;
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

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn python_handlers_have_exactly_one_disposition_despite_sigkill() {
    crate::crash::sigkill_scenario("py-map", "py-counter");
}

#[test]
fn python_new_edit_build_test_run_deploy_publish_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(&["new", "hello-py", "--lang", "python"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let project = dir.path().join("hello-py");
    assert!(text(&out).contains("weir build"), "{}", text(&out));

    // The author's edit: a field from config on every output.
    let app = project.join("app.py");
    let source = std::fs::read_to_string(&app).unwrap();
    let edited = source.replace(
        "    body[\"handled_by\"] = \"hello-py\"\n",
        "    body[\"handled_by\"] = \"hello-py\"\n    body[\"team\"] = weir.config.get_or(\"team\", \"none\")\n",
    );
    assert_ne!(source, edited, "the template changed: {source}");
    std::fs::write(&app, edited).unwrap();
    let test_file = project.join("test_app.py");
    let test_source = std::fs::read_to_string(&test_file).unwrap();
    let with_team = test_source.replace(
        "\"handled_by\": \"hello-py\"}",
        "\"handled_by\": \"hello-py\", \"team\": \"none\"}",
    );
    assert_ne!(
        test_source, with_team,
        "the template's test changed: {test_source}"
    );
    std::fs::write(&test_file, with_team).unwrap();

    // weir build creates .venv with componentize-py, builds, validates.
    let out = weir(&["build"], &project);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("weir:handler/guest@0.1.0"),
        "{}",
        text(&out)
    );
    let wasm = project.join("target/hello_py.wasm");
    assert!(wasm.exists());

    // The unit tests, natively, from the venv weir build filled.
    let test = Command::new(project.join(".venv/bin/pytest"))
        .current_dir(&project)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(test.status.success(), "{}", text(&test));
    assert!(text(&test).contains("2 passed"), "{}", text(&test));

    // weir run over the sample events: e1, e2, a duplicate e1, a non-object.
    let wasm_arg = wasm.to_str().unwrap();
    let out = weir(
        &[
            "run",
            wasm_arg,
            "--events",
            "events.ndjson",
            "--config",
            "team=blue",
        ],
        &project,
    );
    let lines = crate::newcomer::check_sample_run(&out);
    assert_eq!(lines[0]["payload"]["handled_by"], "hello-py");
    assert_eq!(lines[0]["payload"]["team"], "blue");

    // The template's contract test catches the edit (an extra field), and
    // passes once the author records it in expected.ndjson.
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
    assert!(out.status.success(), "{}", text(&out));

    // Deploy to a running host (default limits), publish, read.
    crate::newcomer::deploy_publish_read(dir.path(), &project, &wasm, ("team", "none"));
}
