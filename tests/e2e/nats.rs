//! Exactly once end to end through NATS JetStream: a real `nats-server -js`
//! per test (own port, own store), the real `weir` binary reading a stream
//! and relaying its outputs to another, SIGKILLs of the host and an outage
//! of the broker in the middle.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use weir_e2e::nats::{Js, NatsServer, StreamMessage};
use weir_e2e::{Host, checker, eventually, free_port, guest};

const PARTITIONS: u32 = 3;

fn config(url: &str) -> String {
    config_owning(url, "")
}

/// The config with `owned` as extra `[nats]` lines (e.g. `partitions = [0]`).
fn config_owning(url: &str, owned: &str) -> String {
    format!(
        r#"
[pipeline]
batch_size = 16
linger_ms = 1

[nats]
urls = ["{url}"]
{owned}

[topics.in]
partitions = {PARTITIONS}
nats = {{ stream = "IN", subject = "in.{{partition}}" }}
[topics.out]
partitions = {PARTITIONS}
nats = {{ stream = "OUT", subject = "out.{{partition}}" }}

[handlers.enrich]
component = "{map}"
subscribe = ["in"]
outputs = ["out"]
retry = {{ max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 5 }}
config = {{ output_topic = "out" }}
"#,
        map = guest("map").display(),
    )
}

/// Streams with the input's duplicate window short (1 s), so IDs repeated
/// later than that are stored again and only Weir can drop them.
fn streams(js: &Js) {
    js.create_stream("IN", &["in.*"], Duration::from_secs(1));
    js.create_stream("OUT", &["out.*"], Duration::from_secs(120));
}

/// Event `i`: on partition `i % 3`, a JSON object, or poison every 101st.
fn message(i: usize) -> (String, String, Vec<u8>) {
    let payload = if i % 101 == 7 {
        json!("poison: not an object")
    } else {
        json!({ "n": i })
    };
    (
        format!("in.{}", i as u32 % PARTITIONS),
        format!("e{i}"),
        payload.to_string().into_bytes(),
    )
}

fn is_poison(m: &StreamMessage) -> bool {
    !m.payload.starts_with(b"{")
}

/// The outputs a correct run holds: per output subject, in input order,
/// the deterministic ID of each distinct non-poison input.
fn expected_outputs(inputs: &[StreamMessage]) -> Vec<(String, Vec<String>)> {
    let mut seen = HashSet::new();
    (0..PARTITIONS)
        .map(|p| {
            let ids = inputs
                .iter()
                .filter(|m| m.subject == format!("in.{p}"))
                .filter(|m| !is_poison(m))
                .filter_map(|m| m.msg_id.clone())
                .filter(|id| seen.insert(id.clone()))
                .map(|id| format!("enrich/{id}/0"))
                .collect();
            (format!("out.{p}"), ids)
        })
        .collect()
}

/// Drain: wait until the output stream holds `expected` messages and stays
/// there, then compare sets and order.
fn check_outputs(js: &Js, inputs: &[StreamMessage]) {
    let expected = expected_outputs(inputs);
    let total: usize = expected.iter().map(|(_, ids)| ids.len()).sum();
    eventually(Duration::from_secs(120), "outputs relayed", || {
        (js.count("OUT") >= total as u64).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let outputs = js.read_all("OUT");
    let mut ids = HashSet::new();
    for m in &outputs {
        let id = m.msg_id.clone().expect("every output carries Nats-Msg-Id");
        assert!(ids.insert(id.clone()), "output {id} published twice");
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            format!("enrich/{}/0", body["source_id"].as_str().unwrap()),
            id,
            "payload and ID disagree"
        );
    }
    for (subject, want) in &expected {
        let got: Vec<String> = outputs
            .iter()
            .filter(|m| &m.subject == subject)
            .filter_map(|m| m.msg_id.clone())
            .collect();
        let missing = want.iter().filter(|id| !got.contains(id)).count();
        let unexpected = got.iter().filter(|id| !want.contains(id)).count();
        assert_eq!(
            (missing, unexpected),
            (0, 0),
            "{subject}: missing or unexpected outputs"
        );
        assert_eq!(&got, want, "{subject}: outputs out of input order");
    }
    assert_eq!(outputs.len(), total);
}

fn dead_letter_ids(host: &Host) -> HashSet<String> {
    host.get("/v1/handlers/enrich/dead-letters")["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn poison_ids(inputs: &[StreamMessage]) -> HashSet<String> {
    inputs
        .iter()
        .filter(|m| is_poison(m))
        .filter_map(|m| m.msg_id.clone())
        .collect()
}

#[test]
fn nats_outputs_exactly_once_despite_sigkill_and_redelivered_ids() {
    let server = NatsServer::start();
    let js = Js::connect(&server.url());
    streams(&js);
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &config(&server.url()));
    let mut rng = fastrand::Rng::with_seed(11);

    const FIRST: usize = 1200;
    const SECOND: usize = 1200;
    let mut published = 0u64;
    let mut kills_with_work_outstanding = 0;
    let kill = |host: &mut Host, published: u64| {
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..150)));
        let outstanding = js.count("OUT") + 20 < published;
        host.kill();
        host.restart();
        outstanding
    };
    // Phase 1: unique IDs, in chunks, the host killed between some.
    for (n, chunk) in (0..FIRST).collect::<Vec<_>>().chunks(200).enumerate() {
        let msgs: Vec<_> = chunk.iter().map(|&i| message(i)).collect();
        js.publish_acked(&msgs);
        published += msgs.len() as u64;
        if n % 2 == 1 && kill(&mut host, published) {
            kills_with_work_outstanding += 1;
        }
    }
    // Beyond the input stream's 1 s duplicate window: repeats are stored.
    std::thread::sleep(Duration::from_millis(1500));
    // Phase 2: new IDs mixed with a quarter repeating phase-1 IDs, each
    // repeated once (twice within the window would be the broker's to drop).
    let mut earlier: Vec<usize> = (0..FIRST).collect();
    rng.shuffle(&mut earlier);
    let mut second = Vec::new();
    for i in FIRST..FIRST + SECOND {
        second.push(message(i));
        if rng.u8(0..3) == 0 {
            second.push(message(earlier.pop().unwrap()));
        }
    }
    let repeats = second.len() - SECOND;
    for chunk in second.chunks(200) {
        js.publish_acked(chunk);
        published += chunk.len() as u64;
        if kill(&mut host, published) {
            kills_with_work_outstanding += 1;
        }
    }
    let inputs = js.read_all("IN");
    assert_eq!(
        inputs.len(),
        FIRST + SECOND + repeats,
        "the broker stored every repeat (they are beyond its duplicate window)"
    );
    assert!(
        kills_with_work_outstanding >= 3,
        "only {kills_with_work_outstanding} kills landed with outputs outstanding"
    );
    check_outputs(&js, &inputs);
    eventually(Duration::from_secs(30), "poison dead-lettered", || {
        (dead_letter_ids(&host) == poison_ids(&inputs)).then_some(())
    });
    let dead = host.get("/v1/handlers/enrich/dead-letters")["dead_letters"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        dead,
        poison_ids(&inputs).len(),
        "a poison event dead-lettered twice"
    );
}

#[test]
fn nats_outage_mid_stream_loses_and_duplicates_nothing() {
    let mut server = NatsServer::start();
    let js = Js::connect(&server.url());
    streams(&js);
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &config(&server.url()));
    let chunks: Vec<Vec<_>> = (0..1500)
        .map(message)
        .collect::<Vec<_>>()
        .chunks(150)
        .map(<[_]>::to_vec)
        .collect();
    for (n, chunk) in chunks.iter().enumerate() {
        js.publish_acked(chunk);
        if n == 4 {
            server.stop();
            eventually(
                Duration::from_secs(20),
                "/readyz to report the outage",
                || {
                    let mut r = host
                        .client()
                        .get(&format!("{}/readyz", host.base()))
                        .call()
                        .unwrap();
                    let body = r.body_mut().read_to_string().unwrap();
                    (r.status() == 503 && body.contains("broker_unreachable")).then_some(())
                },
            );
            // What the alert rules read (deploy/prometheus): the lost
            // connection, and the outbox's limit next to its backlog.
            eventually(
                Duration::from_secs(20),
                "/metrics to report the outage",
                || {
                    let mut r = host
                        .client()
                        .get(&format!("{}/metrics", host.base()))
                        .call()
                        .unwrap();
                    let text = r.body_mut().read_to_string().unwrap();
                    (text.contains("\nweir_nats_connected 0\n")
                        && text.contains("weir_nats_outbox_max{topic=\"out\"} 100000")
                        && text.contains("weir_nats_outbox_backlog{topic=\"out\",partition=\"0\"}"))
                    .then_some(())
                },
            );
            std::thread::sleep(Duration::from_secs(3));
            server.restart();
        }
    }
    let inputs = js.read_all("IN");
    assert_eq!(inputs.len(), 1500);
    check_outputs(&js, &inputs);
    assert!(
        host.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the host recovered without a restart"
    );
    eventually(Duration::from_secs(20), "ready again", || {
        (host.readyz().0 == 200).then_some(())
    });
}

#[test]
fn unreachable_broker_at_startup_is_reported_and_retried() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path(), &config(&url));
    eventually(Duration::from_secs(20), "a clear message", || {
        host.log_text()
            .contains("NATS JetStream is not reachable yet; retrying")
            .then_some(())
    });
    let (status, body) = host.readyz();
    assert_eq!(status, 503);
    assert!(body.contains(&url), "{body}");

    // The broker appears; the host creates the streams and gets to work.
    let server = NatsServer::start_on(port);
    eventually(
        Duration::from_secs(30),
        "ready once the broker answers",
        || (host.readyz().0 == 200).then_some(()),
    );
    let js = Js::connect(&server.url());
    js.publish_acked(&(0..30).map(message).collect::<Vec<_>>());
    let inputs = js.read_all("IN");
    check_outputs(&js, &inputs);
    // Rewind is refused on a topic read from NATS (its position is a
    // stream sequence), with the reason.
    let mut r = host
        .client()
        .post(&format!("{}/v1/handlers/enrich/rewind", host.base()))
        .send_json(serde_json::json!({"to": "earliest"}))
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.body_mut().read_to_string().unwrap();
    assert!(body.contains("read from NATS"), "{body}");
    // The event API refuses a topic that is read from NATS.
    let (status, body) = host
        .publish("in", &[r#"{"id":"x","payload":{}}"#.into()])
        .unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "topic_bound_to_nats");
}

#[test]
fn two_hosts_split_the_partitions_and_one_is_killed() {
    let server = NatsServer::start();
    let js = Js::connect(&server.url());
    streams(&js);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Host::start(
        dir_a.path(),
        &config_owning(&server.url(), "partitions = [0]"),
    );
    let b = Host::start(
        dir_b.path(),
        &config_owning(&server.url(), "partitions = [1, 2]"),
    );
    let messages: Vec<_> = (0..900).map(message).collect();
    for (n, chunk) in messages.chunks(150).enumerate() {
        js.publish_acked(chunk);
        if n == 2 {
            a.kill();
            a.restart();
        }
    }
    let inputs = js.read_all("IN");
    check_outputs(&js, &inputs);
    // Each host consumed only its own partitions.
    let consumed = |h: &Host| -> Vec<u64> {
        let status = h.get("/v1/handlers/enrich");
        (0..PARTITIONS as usize)
            .map(|p| status["partitions"][p]["committed"].as_u64().unwrap_or(0))
            .collect()
    };
    let (ca, cb) = (consumed(&a), consumed(&b));
    assert!(ca[0] > 0 && ca[1] == 0 && ca[2] == 0, "host a: {ca:?}");
    assert!(cb[0] == 0 && cb[1] > 0 && cb[2] > 0, "host b: {cb:?}");
}

/// The relay pipelines into `OUT` (this host is its only writer), chained
/// on the stream's sequence. The broker stopped and the host SIGKILLed
/// while windows of publishes are on the wire must still leave every
/// output once, in input order per partition: the set-based checker and
/// the exact per-subject comparison agree.
#[test]
fn pipelined_relay_keeps_order_when_broker_and_host_die_mid_publish() {
    let mut server = NatsServer::start();
    let js = Js::connect(&server.url());
    streams(&js);
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &config(&server.url()));
    // At least 8 rounds, more (up to 24) until 3 faults landed mid-publish:
    // how many do depends on how fast this machine relays.
    let messages: Vec<_> = (0..14_400).map(message).collect();
    let mut published = 0u64;
    let mut faults_mid_publish = 0;
    for (n, chunk) in messages.chunks(600).enumerate() {
        js.publish_acked(chunk);
        published += chunk.len() as u64;
        // Let windows of outputs get on the wire, then fault.
        std::thread::sleep(Duration::from_millis(fastrand::u64(30..150)));
        let relayed = js.count("OUT");
        if relayed > 0 && relayed < published * 9 / 10 {
            faults_mid_publish += 1;
        }
        if n % 2 == 0 {
            server.stop();
            std::thread::sleep(Duration::from_millis(fastrand::u64(100..1500)));
            server.restart();
        } else {
            host.kill();
            host.restart();
        }
        if n >= 7 && faults_mid_publish >= 3 {
            break;
        }
    }
    let messages = &messages[..published as usize];
    assert!(
        faults_mid_publish >= 3,
        "only {faults_mid_publish} faults landed while outputs were being relayed"
    );
    let inputs = js.read_all("IN");
    check_outputs(&js, &inputs);
    let acked: HashSet<String> = messages.iter().map(|(_, id, _)| id.clone()).collect();
    let report = checker::check(
        &acked,
        &checker_inputs(&inputs),
        &checker_outputs(&js.read_all("OUT")),
        &dead_letter_ids(&host).into_iter().collect::<Vec<_>>(),
        0,
    );
    assert_eq!(report.anomalies(), 0, "{report:?}");
    assert_eq!(report.events, published);
    let log = host.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("NATS relays pipeline their publishes") && l.contains("OUT")),
        "the relay never pipelined into OUT:\n{}",
        log.lines()
            .filter(|l| l.contains("relay"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn partition_of(subject: &str) -> u32 {
    subject.rsplit('.').next().unwrap().parse().unwrap()
}

/// `IN` as the checker reads it: poison must be dead-lettered.
fn checker_inputs(messages: &[StreamMessage]) -> Vec<checker::Input> {
    messages
        .iter()
        .map(|m| checker::Input {
            id: m.msg_id.clone().unwrap(),
            partition: partition_of(&m.subject),
            position: m.sequence,
            key: String::new(),
            dead: is_poison(m),
        })
        .collect()
}

/// `OUT` as the checker reads it.
fn checker_outputs(messages: &[StreamMessage]) -> Vec<checker::Output> {
    messages
        .iter()
        .map(|m| {
            let body: Value = serde_json::from_slice(&m.payload).unwrap();
            checker::Output {
                id: m.msg_id.clone().unwrap(),
                source_id: body["source_id"].as_str().unwrap().into(),
                partition: partition_of(&m.subject),
                count: None,
            }
        })
        .collect()
}

/// A shadow of a handler whose output topic is broker-bound writes an
/// embedded shadow topic instead, so the broker being away must not pause
/// it: with NATS down the handler stops at its outbox limit while its
/// shadow handles every event, and once NATS is back the handler catches up.
#[test]
fn a_shadow_keeps_running_while_its_handlers_outbox_is_full() {
    let mut server = NatsServer::start();
    let js = Js::connect(&server.url());
    js.create_stream("OUT", &["out.*"], Duration::from_secs(120));
    let config = format!(
        r#"
[pipeline]
batch_size = 4
linger_ms = 1

[nats]
urls = ["{url}"]

[topics.in]
partitions = 1
[topics.out]
partitions = 1
nats = {{ stream = "OUT", subject = "out.{{partition}}", max_outbox = 8 }}

[handlers.enrich]
component = "{map}"
subscribe = ["in"]
outputs = ["out"]
config = {{ output_topic = "out" }}
"#,
        url = server.url(),
        map = guest("map").display(),
    );
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path(), &config);
    let mut spec = host.get("/v1/handlers/enrich")["spec"].clone();
    spec["config"]["greeting"] = json!("shadow");
    let status = host
        .client()
        .put(&format!("{}/v1/handlers/enrich/shadow", host.base()))
        .send_json(&spec)
        .unwrap()
        .status()
        .as_u16();
    assert!(status == 200 || status == 201, "{status}");

    server.stop();
    let total = 60;
    let lines: Vec<String> = (0..total)
        .map(|i| json!({"id": format!("e{i}"), "payload": {"n": i}}).to_string())
        .collect();
    let (status, v) = host.publish("in", &lines).unwrap();
    assert_eq!(status, 200, "{v}");
    eventually(
        Duration::from_secs(30),
        "the shadow to handle every event",
        || (host.topic_total("out.shadow.enrich") == total).then_some(()),
    );
    let lag = |h: &str| host.get(&format!("/v1/handlers/{h}"))["lag"].as_u64();
    assert!(
        lag("enrich").is_some_and(|l| l > 0),
        "the handler itself waits for the broker: {}",
        host.get("/v1/handlers/enrich")
    );

    server.restart();
    eventually(Duration::from_secs(60), "the handler to catch up", || {
        (js.read_all("OUT").len() == total as usize).then_some(())
    });
}
