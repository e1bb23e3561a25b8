//! The operator console (`/ui`) in a real browser: headless Chromium
//! through chromedriver ([`weir_e2e::browser`]), against the quickstart
//! served with an admin token. A wrong token gets a clear message; with the
//! right one the quickstart handler is listed, published events show up in
//! its counters, a new revision is deployed from a `.wasm` file and rolled
//! back, the poison event sits in the dead letters with its error, another
//! one is purged alone, and after a fixed revision, replaying the first
//! from the page produces its output exactly once.
//!
//! With `WEIR_UPDATE_SCREENSHOTS=1` the screenshots it takes at a desktop
//! width replace the ones in `docs/console/` (docs/console.md shows them).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use weir_e2e::browser::{Browser, ENTER};
use weir_e2e::{Host, eventually, free_port, guest, header, workspace_root};

const TOKEN: &str = "console-test-token";

/// The quickstart's own config, served with [`TOKEN`].
fn serve_quickstart(dir: &std::path::Path) -> Host {
    let mut host = Host {
        dir: dir.to_path_buf(),
        config: workspace_root().join("examples/quickstart/weir.toml"),
        port: free_port(),
        child: None,
        log: Default::default(),
        env: vec![("WEIR_ADMIN_TOKEN".into(), TOKEN.into())],
    };
    host.restart();
    host
}

/// GET `path` with the token.
fn get(host: &Host, path: &str) -> Value {
    let mut response = host
        .client()
        .get(&format!("{}{path}", host.base()))
        .header("authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "GET {path}");
    response.body_mut().read_json().unwrap()
}

/// Publish NDJSON `lines` to `orders` through the API.
fn publish_orders(host: &Host, lines: &[String]) {
    let published = host
        .client()
        .post(&format!("{}/v1/topics/orders/events", host.base()))
        .header("authorization", &format!("Bearer {TOKEN}"))
        .header("content-type", "application/x-ndjson")
        .send(lines.join("\n").as_bytes())
        .unwrap();
    assert_eq!(published.status().as_u16(), 200);
}

/// Where screenshots go: `docs/console/` when updating them, else a
/// scratch directory.
fn screenshot_dir(scratch: &std::path::Path) -> PathBuf {
    if std::env::var_os("WEIR_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        workspace_root().join("docs/console")
    } else {
        scratch.join("screenshots")
    }
}

/// Events `enrich` wrote to `enriched` for the input `source_id`.
fn outputs_of(host: &Host, source_id: &str) -> usize {
    let mut n = 0;
    for p in 0..2 {
        let page = get(
            host,
            &format!("/v1/topics/enriched/events?partition={p}&limit=1000"),
        );
        n += page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| header(e, "weir-source-id") == Some(source_id))
            .count();
    }
    n
}

#[test]
fn console_operates_the_quickstart_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let host = serve_quickstart(dir.path());
    let shots = screenshot_dir(dir.path());
    let browser = Browser::start(1280, 860);
    let ui = format!("{}/ui", host.base());

    // A wrong token: the host refuses it and the page says so.
    browser.goto(&ui);
    browser.send_keys("#token", "not-the-token");
    browser.send_keys("#token", ENTER);
    let refused = browser.text("#token-error");
    assert!(
        refused.contains("refused this token") && refused.contains("admin.token"),
        "{refused}"
    );
    browser.screenshot(&shots.join("wrong-token.png"));

    // The right one, typed and submitted from the keyboard.
    browser.send_keys("#token", TOKEN);
    browser.send_keys("#token", ENTER);
    let row = "tr[data-handler='enrich']";
    browser.wait_text(
        &format!("{row} [data-col='state']"),
        "enrich running",
        |t| t == "running",
    );
    assert_eq!(browser.text(&format!("{row} [data-col='revision']")), "r1");
    let url = browser.execute("return location.href;", &[]);
    assert!(
        !url.as_str().unwrap().contains(TOKEN),
        "the token is never in a URL"
    );

    // Events published through the API show up in the counters.
    let events: Vec<String> =
        std::fs::read_to_string(workspace_root().join("examples/quickstart/events.ndjson"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
    publish_orders(&host, &events);
    browser.wait_text(&format!("{row} [data-col='events']"), "12 events", |t| {
        t == "12"
    });
    browser.wait_text(&format!("{row} [data-col='dead']"), "1 dead letter", |t| {
        t == "1"
    });
    assert_eq!(browser.text(&format!("{row} [data-col='lag']")), "0");

    // The poison event is in the dead letters, with its error.
    browser.click(&format!("{row} a"));
    let error = browser.wait_text(
        "#dead-letters tr[data-id='order-bad'] [data-col='error']",
        "the poison event's error",
        |t| !t.is_empty(),
    );
    assert!(
        error.contains("payload must be a JSON object, got a string"),
        "{error}"
    );

    // Deploy a new revision from a file, with a new greeting.
    let component = guest("map").canonicalize().unwrap();
    browser.send_keys("#deploy-file", component.to_str().unwrap());
    browser.fill(
        "#deploy-config",
        "greeting=hello from the console\noutput_topic=enriched",
    );
    browser.click("#deploy");
    browser.wait_text("#notice", "revision 2 deployed", |t| {
        t.contains("deployed enrich revision r2")
    });
    let changed = browser.text("#revisions tr[data-revision='2'] .changes");
    assert!(
        changed.contains("config.greeting: hello from weir → hello from the console"),
        "{changed}"
    );
    let v = get(&host, "/v1/handlers/enrich");
    assert_eq!(v["revision"], 2);
    assert_eq!(v["spec"]["config"]["greeting"], "hello from the console");

    // Roll back, after a confirmation that says what will happen.
    browser.click("#rollback");
    let says = browser.text("#confirm-text");
    assert!(
        says.contains("back to revision 1") && says.contains("new revision r3"),
        "{says}"
    );
    browser.click("#confirm-ok");
    browser.wait_text("#notice", "rolled back", |t| {
        t.contains("Rolled enrich back to r1: now r3")
    });
    let v = get(&host, "/v1/handlers/enrich");
    assert_eq!(v["spec"]["config"]["greeting"], "hello from weir");

    // A rewind with reprocess says it processes events again; cancelled.
    browser.click("#rewind-reprocess");
    browser.click("#rewind-form button[type='submit']");
    let says = browser.text("#confirm-text");
    assert!(
        says.contains("dedup marks") && says.contains("processed again"),
        "{says}"
    );
    browser.click("#confirm-cancel");
    assert_eq!(get(&host, "/v1/handlers/enrich")["revision"], 3);

    // A second poison event, purged from the page: only it goes.
    publish_orders(
        &host,
        &[r#"{"id": "order-bad-2", "payload": "also not an object"}"#.to_string()],
    );
    browser.click("#dead-letters tr[data-id='order-bad-2'] input[type='checkbox']");
    browser.click("#dlq-purge");
    let says = browser.text("#confirm-text");
    assert!(
        says.contains("order-bad-2") && !says.contains("order-bad,"),
        "{says}"
    );
    browser.click("#confirm-ok");
    browser.wait_text("#notice", "purged", |t| {
        t.contains("Purged 1 dead letter of enrich")
    });
    let dead = get(&host, "/v1/handlers/enrich/dead-letters");
    let ids: Vec<&str> = dead["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["order-bad"]);

    // A fixed revision: non-object payloads are wrapped, not rejected.
    browser.fill(
        "#deploy-config",
        "greeting=hello from weir\noutput_topic=enriched\nwrap_non_objects=true",
    );
    browser.click("#deploy");
    browser.wait_text("#notice", "the fix deployed", |t| {
        t.contains("deployed enrich revision r4")
    });
    browser.screenshot_page(&shots.join("handler.png"));

    // Replay the poison event from the page: its output appears once.
    browser.click("#dead-letters tr[data-id='order-bad'] input[type='checkbox']");
    browser.click("#dlq-replay");
    let says = browser.text("#confirm-text");
    assert!(says.contains("order-bad") && says.contains("r4"), "{says}");
    browser.click("#confirm-ok");
    browser.wait_text("#notice", "queued", |t| t.contains("Queued 1 dead letter"));
    eventually(Duration::from_secs(30), "the replayed output", || {
        (outputs_of(&host, "order-bad") == 1).then_some(())
    });
    browser.wait_text("#dead-letters-title", "no dead letters", |t| {
        t == "Dead letters (0)"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(outputs_of(&host, "order-bad"), 1, "replayed exactly once");
    let total: usize = (0..2)
        .map(|p| {
            get(&host, &format!("/v1/topics/enriched/events?partition={p}"))["events"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(total, 11, "ten orders and the replayed one");

    // Topics: find an event by its ID.
    browser.click("nav a[href='#/topics']");
    browser.click("#find-topic option[value='orders']");
    browser.send_keys("#find-id", "order-7");
    browser.click("#find-form button[type='submit']");
    let found = browser.wait_text("#find-result", "order-7 found", |t| t.contains("order-7"));
    assert!(found.contains("checkout-7"), "{found}");

    // A live tail shows the last events, then each new one.
    browser.click("#tail-topic option[value='orders']");
    browser.click("#tail-toggle");
    browser.wait_text("#tail tbody", "the last orders", |t| {
        t.contains("order-bad-2")
    });
    publish_orders(
        &host,
        &[r#"{"id": "order-11", "key": "customer-2", "payload": {"order": 11}}"#.to_string()],
    );
    browser.wait_text("#tail tbody", "a new order", |t| t.contains("order-11"));
    browser.screenshot_page(&shots.join("topics.png"));

    // Cluster: this host runs alone.
    browser.click("nav a[href='#/cluster']");
    browser.wait_text("main", "cluster page", |t| {
        t.contains("runs without [cluster]")
    });

    // The overview: its charts draw the host's samples (one every 5 s)
    // while orders keep coming.
    browser.click("nav a[href='#/']");
    browser.wait_text(&format!("{row} [data-col='revision']"), "r4", |t| t == "r4");
    let points = "const line = document.querySelector('#charts polyline'); \
                  return line ? line.getAttribute('points').split(' ').length : 0;";
    let mut n = 0;
    eventually(
        Duration::from_secs(60),
        "three points in the charts",
        || {
            let batch: Vec<String> = (0..5 + n % 4 * 10)
                .map(|i| format!(r#"{{"id": "more-{n}-{i}", "payload": {{"n": {i}}}}}"#))
                .collect();
            n += 1;
            publish_orders(&host, &batch);
            std::thread::sleep(Duration::from_millis(400));
            (browser.execute(points, &[]).as_u64().unwrap() >= 3).then_some(())
        },
    );
    let events: u64 = browser
        .text(&format!("{row} [data-col='events']"))
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(events > 12, "the counters follow: {events}");
    browser.screenshot(&shots.join("overview.png"));

    // At a phone's width nothing but the tables scrolls sideways.
    browser.click(&format!("{row} a"));
    browser.find("#dead-letters");
    browser.command(
        "POST",
        "/window/rect",
        Some(serde_json::json!({"width": 420, "height": 860})),
    );
    let fits = browser.execute(
        "return document.documentElement.scrollWidth <= window.innerWidth;",
        &[],
    );
    assert_eq!(fits, true, "the handler page fits 420 px");
}
