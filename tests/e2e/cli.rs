//! The `weir` binary as people use it: `publish` and `tail` against a
//! running host, graceful shutdown on SIGTERM, and start-up refusing bad
//! configs and bad components with messages that say what to fix.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use weir_e2e::{Host, eventually, guest, weir_bin};

fn quickstart_config() -> String {
    format!(
        r#"
[topics.orders]
partitions = 2
[topics.enriched]
partitions = 2
[handlers.enrich]
component = "{}"
subscribe = ["orders"]
outputs = ["enriched"]
config = {{ output_topic = "enriched", greeting = "hi" }}
"#,
        guest("map").display()
    )
}

fn weir(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(weir_bin())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

#[test]
fn publish_and_tail_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path(), &quickstart_config());
    let addr = host.base();
    let events = std::fs::read_to_string(
        weir_e2e::workspace_root().join("examples/quickstart/events.ndjson"),
    )
    .unwrap();
    let published = weir(&["publish", "orders", "--addr", &addr], Some(&events));
    assert!(published.status.success(), "{published:?}");
    assert!(String::from_utf8_lossy(&published.stderr).contains("published 12 events"));

    // 12 lines: 10 orders, one producer retry (deduplicated), one malformed.
    let lines = eventually(Duration::from_secs(30), "10 enriched orders", || {
        let out = weir(
            &["tail", "enriched", "--from-beginning", "--addr", &addr],
            None,
        );
        assert!(out.status.success(), "{out:?}");
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines.len() >= 10).then_some(lines)
    });
    assert_eq!(lines.len(), 10);
    for line in &lines {
        assert_eq!(line["payload"]["greeting"], "hi");
        assert_eq!(line["topic"], "enriched");
    }

    let missing = weir(&["publish", "nope", "--addr", &addr], Some(&events));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("unknown_topic"));
    let down = weir(&["tail", "orders", "--addr", "http://127.0.0.1:9"], None);
    assert!(String::from_utf8_lossy(&down.stderr).contains("is `weir serve` running"));
}

#[test]
fn sigterm_drains_and_exits_cleanly_and_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &quickstart_config());
    let lines: Vec<String> = (0..500)
        .map(|i| {
            format!(
                r#"{{"id":"o{i}","key":"c{}","payload":{{"n":{i}}}}}"#,
                i % 7
            )
        })
        .collect();
    assert_eq!(host.publish("orders", &lines).unwrap().0, 200);
    let status = host.terminate();
    assert!(
        status.success(),
        "exit status {status}\n{}",
        host.log_text()
    );
    assert!(host.log_text().contains("stopped cleanly"));
    host.restart();
    eventually(Duration::from_secs(30), "all 500 outputs", || {
        let n: usize = host.read_all("enriched").iter().map(Vec::len).sum();
        assert!(n <= 500, "duplicates after restart: {n}");
        (n == 500).then_some(())
    });
}

fn serve_fails(config: &str) -> String {
    serve_fails_at(config, Some("127.0.0.1:0"))
}

fn serve_fails_at(config: &str, addr: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, config).unwrap();
    let data = dir.path().join("data");
    let out = weir(
        &[
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ]
        .into_iter()
        .chain(addr.map(|a| ["--admin-addr", a]).into_iter().flatten())
        .collect::<Vec<_>>(),
        None,
    );
    assert!(!out.status.success(), "serve should refuse: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_refuses_bad_configs_and_components_with_clear_errors() {
    let typo = quickstart_config().replace("subscribe", "subscribes");
    let err = serve_fails(&typo);
    assert!(err.contains("handlers.enrich.subscribes"), "{err}");

    let err = serve_fails("[[[");
    assert!(err.contains("invalid config"), "{err}");

    let core = quickstart_config().replace(
        guest("map").to_str().unwrap(),
        guest("not-a-component").to_str().unwrap(),
    );
    let err = serve_fails(&core);
    assert!(
        err.contains("handler `enrich`") && err.contains("core WebAssembly module"),
        "{err}"
    );

    let missing = quickstart_config().replace(guest("map").to_str().unwrap(), "/no/such.wasm");
    let err = serve_fails(&missing);
    assert!(err.contains("cannot read component /no/such.wasm"), "{err}");

    let exposed = format!("[admin]\naddr = \"0.0.0.0:0\"\n{}", quickstart_config());
    let err = serve_fails_at(&exposed, None);
    assert!(err.contains("without a token"), "{err}");
}

#[test]
fn two_hosts_cannot_serve_one_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path(), &quickstart_config());
    let data = dir.path().join("data");
    let out = weir(
        &[
            "serve",
            "--config",
            host.config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--admin-addr",
            "127.0.0.1:0",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another weir process"), "{err}");
}

#[test]
fn operators_deploy_and_manage_handlers_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        "[admin]\ntoken = \"tok\"\n[topics.in]\npartitions = 2\n[topics.out]\npartitions = 2\n";
    let host = Host::start(dir.path(), config);
    let addr = host.base();
    let map = guest("map");
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--addr", &addr, "--token", "tok"]);
        let out = weir(&all, None);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let deploy = |greeting: &str| {
        run(&[
            "deploy",
            "enrich",
            "--component",
            map.to_str().unwrap(),
            "--subscribe",
            "in",
            "--output-topic",
            "out",
            "--config",
            "output_topic=out",
            "--config",
            &format!("greeting={greeting}"),
        ])
    };
    let (ok, text) = deploy("v1");
    assert!(
        ok && text.contains("deployed enrich: revision 1, running"),
        "{text}"
    );

    let events = "{\"id\":\"a\",\"payload\":{}}\n{\"id\":\"b\",\"payload\":{}}\n";
    let out = weir(
        &["publish", "in", "--addr", &addr, "--token", "tok"],
        Some(events),
    );
    assert!(out.status.success(), "{out:?}");
    eventually(Duration::from_secs(30), "2 outputs", || {
        let (ok, text) = run(&["tail", "out", "--from-beginning"]);
        assert!(ok, "{text}");
        (text.lines().count() == 2).then_some(())
    });

    let (ok, text) = run(&["status"]);
    assert!(
        ok && text.contains("HANDLER") && text.contains("enrich") && text.contains("running"),
        "{text}"
    );
    let (ok, text) = run(&["pause", "enrich"]);
    assert!(
        ok && text.contains("paused enrich: revision 1, paused"),
        "{text}"
    );
    let (ok, text) = run(&["handlers", "show", "enrich", "--output", "json"]);
    assert!(ok, "{text}");
    let shown: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(shown["state"], "paused");
    let (ok, text) = run(&["resume", "enrich"]);
    assert!(ok && text.contains("running"), "{text}");

    let (ok, text) = run(&["rollback", "enrich"]);
    assert!(!ok && text.contains("no_revision"), "{text}");
    let (ok, text) = deploy("v2");
    assert!(ok && text.contains("revision 2"), "{text}");
    let (ok, text) = run(&["rollback", "enrich"]);
    assert!(
        ok && text.contains("rolled back enrich: revision 3"),
        "{text}"
    );

    let (ok, text) = run(&["rewind", "enrich", "--to", "earliest"]);
    assert!(ok && text.contains("in partition 0: offset 0"), "{text}");
    let (ok, text) = run(&["rewind", "enrich", "--to", "yesterday"]);
    assert!(!ok && text.contains("--to must be"), "{text}");

    let (ok, text) = run(&["dlq", "ls", "enrich"]);
    assert!(ok && text.contains("0 dead letters"), "{text}");
    let (ok, text) = run(&["dlq", "replay", "enrich"]);
    assert!(ok && text.contains("queued 0"), "{text}");
    let (ok, text) = run(&["dlq", "purge", "enrich", "--id", "nope"]);
    assert!(ok && text.contains("purged 0"), "{text}");
    let (ok, text) = run(&["dlq", "purge", "enrich"]);
    assert!(ok && text.contains("purged 0"), "{text}");

    let out = weir(&["status", "--addr", &addr, "--token", "wrong"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
    let out = weir(&["status", "--addr", &addr], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

/// Send `request` on a new connection to `port`; the status line of the
/// answer, or `None` if the host closed the connection without one.
fn raw_request(port: u16, request: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines().next().map(str::to_string)
}

/// Issue 13 against the real binary: without a token, a web page cannot
/// drive the host (foreign `Origin`, rebound `Host`, `text/plain` bodies),
/// half-sent headers are cut off after `admin.header_read_timeout_ms`, and
/// the CLI still works.
#[test]
fn browsers_and_slow_clients_are_refused_but_the_cli_works() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[admin]\nheader_read_timeout_ms = 500\n{}",
        quickstart_config()
    );
    let host = Host::start(dir.path(), &config);
    let event = r#"{"id":"x","payload":{}}"#;
    let post = |headers: &str| {
        format!(
            "POST /v1/topics/orders/events HTTP/1.1\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{event}",
            event.len()
        )
    };
    let host_header = format!("host: 127.0.0.1:{}\r\n", host.port);
    let cross_site = post(&format!(
        "{host_header}origin: http://evil.example\r\ncontent-type: text/plain\r\n"
    ));
    let answer = raw_request(host.port, &cross_site).unwrap_or_default();
    assert!(answer.contains("403"), "{answer}");
    let rebound = post("host: evil.example\r\ncontent-type: application/json\r\n");
    let answer = raw_request(host.port, &rebound).unwrap_or_default();
    assert!(answer.contains("403"), "{answer}");
    let plain = post(&format!("{host_header}content-type: text/plain\r\n"));
    let answer = raw_request(host.port, &plain).unwrap_or_default();
    assert!(answer.contains("415"), "{answer}");
    assert_eq!(host.topic_total("orders"), 0, "nothing was published");

    let started = std::time::Instant::now();
    let slow = raw_request(host.port, "GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n");
    assert!(slow.is_none(), "{slow:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );

    let published = weir(
        &["publish", "orders", "--addr", &host.base()],
        Some(&format!("{event}\n")),
    );
    assert!(published.status.success(), "{published:?}");
    assert_eq!(host.topic_total("orders"), 1);
}
