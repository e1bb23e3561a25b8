//! The newcomer path, end to end: `weir new` into an empty directory, the
//! generated unit test, `weir build`, `weir run` over the sample events,
//! then deploy to a running host, publish, and read the handler's output.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use weir_e2e::{Host, eventually, weir_bin, workspace_root};

fn weir(args: &[&str], cwd: &Path) -> Output {
    let target = workspace_root().join("target/newcomer");
    Command::new(weir_bin())
        .args(args)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", &target)
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

/// `weir run` over a template's sample events (e1, e2, a duplicate e1, and
/// e3 whose payload is not an object) succeeded: two outputs, the duplicate
/// dropped, e3 rejected. Returns the outputs.
pub(crate) fn check_sample_run(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "{}", text(out));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("e1: duplicate ID") && stderr.contains("e3: reject error"),
        "{stderr}"
    );
    lines
}

/// Start a host in `dir`, `weir deploy` the component `wasm` from
/// `project` as `hello` (in -> out), publish the sample events and wait
/// for the two outputs, each with `payload[field] == value`.
pub(crate) fn deploy_publish_read(
    dir: &Path,
    project: &Path,
    wasm: &Path,
    (field, value): (&str, &str),
) {
    let host = Host::start(
        dir,
        "[topics.in]\npartitions = 2\n[topics.out]\npartitions = 2\n",
    );
    let addr = host.base();
    let out = weir(
        &[
            "deploy",
            "hello",
            "--component",
            wasm.to_str().unwrap(),
            "--subscribe",
            "in",
            "--output-topic",
            "out",
            "--config",
            "output_topic=out",
            "--addr",
            &addr,
        ],
        project,
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = weir(
        &["publish", "in", "events.ndjson", "--addr", &addr],
        project,
    );
    assert!(out.status.success(), "{}", text(&out));
    eventually(Duration::from_secs(60), "the handler's outputs", || {
        let out = weir(
            &["tail", "out", "--from-beginning", "--addr", &addr],
            project,
        );
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines.len() == 2).then(|| {
            assert!(
                lines.iter().all(|l| l["payload"][field] == value),
                "{lines:?}"
            );
        })
    });
}

#[test]
fn new_build_test_run_deploy_publish_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(&["new", "hello-weir"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let crate_dir = dir.path().join("hello-weir");
    assert!(crate_dir.join("src/lib.rs").exists());

    // Its unit test runs natively.
    let test = Command::new("cargo")
        .arg("test")
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", workspace_root().join("target/newcomer"))
        .output()
        .unwrap();
    assert!(test.status.success(), "{}", text(&test));
    assert!(
        text(&test).contains("test result: ok. 2 passed"),
        "{}",
        text(&test)
    );

    // weir build: a validated component.
    let out = weir(&["build"], &crate_dir);
    assert!(out.status.success(), "{}", text(&out));
    let built = text(&out);
    assert!(
        built.contains("weir:handler/guest@0.1.0") && built.contains("digest"),
        "{built}"
    );
    let wasm = workspace_root().join("target/newcomer/wasm32-wasip2/release/hello_weir.wasm");
    assert!(wasm.exists());

    // weir run over the template's sample events: e1, e2, a duplicate e1, and
    // e3 whose payload is not an object.
    let out = weir(
        &["run", wasm.to_str().unwrap(), "--events", "events.ndjson"],
        &crate_dir,
    );
    let lines = check_sample_run(&out);
    assert_eq!(lines[0]["payload"]["handled_by"], "hello-weir");

    // Deploy to a running host, publish, read.
    deploy_publish_read(dir.path(), &crate_dir, &wasm, ("handled_by", "hello-weir"));
}
