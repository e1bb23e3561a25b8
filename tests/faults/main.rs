//! The fault-injection suite: several producers publish unique values while
//! faults are injected into real `weir` (and `nats-server`) processes; then
//! the faults heal, the host drains, and the set-based checker
//! (`weir_e2e::checker`) compares what went in with what came out, per
//! handler. Every anomaly count must be zero.
//!
//! Short mode (default) runs in CI; `WEIR_FAULTS=long` runs many more cycles
//! and events (`cargo xtask faults --long`). Each scenario prints its table
//! rows; `docs/RELIABILITY.md` keeps those of a long run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_e2e::checker::{self, Input, Output, Report, count_of, stream_inputs, stream_outputs};
use weir_e2e::nats::{Js, NatsServer};
use weir_e2e::powercut::{Lost, PowerCutFs};
use weir_e2e::{Host, Tmpfs, eventually, guest, header};

const PARTITIONS: u32 = 3;
const PRODUCERS: usize = 3;

struct Mode {
    /// Faults injected per scenario.
    cycles: u64,
    /// Power cuts in the power-cut scenario.
    power_cuts: u64,
    /// Events per producer.
    events: usize,
}

fn mode() -> Mode {
    if std::env::var("WEIR_FAULTS").as_deref() == Ok("long") {
        Mode {
            cycles: 40,
            power_cuts: 200,
            events: 4000,
        }
    } else {
        Mode {
            cycles: 5,
            power_cuts: 5,
            events: 500,
        }
    }
}

// ---------------------------------------------------------------- workload

/// Event `n` of producer `p`: a unique ID, one of 16 keys, and now and then
/// chaos the handlers must dead-let (a trap, a loop, memory exhaustion, a
/// rejection) or poison that is not a JSON object.
fn event(p: usize, n: usize, rng: &mut fastrand::Rng) -> Value {
    let payload = match rng.u8(0..100) {
        0 => json!("poison: not an object"),
        1 => json!({"chaos": "trap"}),
        2 if rng.bool() => json!({"chaos": "loop"}),
        2 => json!({"chaos": "oom"}),
        3 => json!({"chaos": "reject"}),
        _ => json!({"p": p, "n": n}),
    };
    json!({"id": format!("p{p}-{n}"), "key": format!("k{}", rng.u8(0..16)), "payload": payload})
}

/// Whether `chaos` must dead-letter an event with this payload.
fn chaos_dead(payload: &Value) -> bool {
    !payload.is_object() || payload.get("chaos").is_some()
}

/// Whether `map` must dead-letter it.
fn map_dead(payload: &Value) -> bool {
    !payload.is_object()
}

/// Where producers publish: the embedded log over HTTP, or a stream.
#[derive(Clone)]
enum Sink {
    Http(String),
    Nats(Arc<Js>),
}

impl Sink {
    /// Publish until acknowledged, as a producer retries.
    fn publish(&self, batch: &[Value]) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            assert!(
                Instant::now() < deadline,
                "producer could not publish for 3 minutes"
            );
            let ok = match self {
                Sink::Http(base) => {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(5)))
                        .build()
                        .into();
                    let body: Vec<String> = batch.iter().map(Value::to_string).collect();
                    agent
                        .post(&format!("{base}/v1/topics/in/events"))
                        .header("content-type", "application/x-ndjson")
                        .send(body.join("\n").as_bytes())
                        .is_ok_and(|r| r.status() == 200)
                }
                Sink::Nats(js) => {
                    // One key, one partition: state and order are per partition.
                    let msgs: Vec<_> = batch
                        .iter()
                        .map(|e| {
                            let key = e["key"].as_str().unwrap();
                            let p = key[1..].parse::<u32>().unwrap() % PARTITIONS;
                            let headers = vec![
                                (
                                    "Nats-Msg-Id".to_string(),
                                    e["id"].as_str().unwrap().to_string(),
                                ),
                                ("Weir-Key".to_string(), key.to_string()),
                            ];
                            (
                                format!("in.{p}"),
                                headers,
                                e["payload"].to_string().into_bytes(),
                            )
                        })
                        .collect();
                    js.publish_with_headers(&msgs).is_ok()
                }
            };
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Start the producers; join them for the IDs they got acknowledged.
fn produce(sink: &Sink, events: usize) -> Vec<std::thread::JoinHandle<HashSet<String>>> {
    (0..PRODUCERS)
        .map(|p| {
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(p as u64 + 1);
                let mut acked = HashSet::new();
                let mut sent: std::collections::VecDeque<(Instant, Vec<Value>)> =
                    Default::default();
                let mut n = 0;
                while n < events {
                    let size = rng.usize(1..40).min(events - n);
                    let batch: Vec<Value> = (n..n + size).map(|i| event(p, i, &mut rng)).collect();
                    sink.publish(&batch);
                    acked.extend(batch.iter().map(|e| e["id"].as_str().unwrap().to_string()));
                    sent.push_back((Instant::now(), batch));
                    n += size;
                    // Now and then a producer re-sends an acknowledged batch;
                    // to NATS one older than a second, beyond the input
                    // stream's duplicate window, so only Weir can drop it.
                    let old_enough = |t: &Instant| match sink {
                        Sink::Http(_) => true,
                        Sink::Nats(_) => t.elapsed() > Duration::from_secs(1),
                    };
                    if rng.u8(0..8) == 0
                        && let Some(at) = sent.iter().position(|(t, _)| old_enough(t))
                    {
                        let (_, old) = sent.remove(at).unwrap();
                        sink.publish(&old);
                    }
                    std::thread::sleep(Duration::from_millis(rng.u64(20..100)));
                }
                acked
            })
        })
        .collect()
}

fn join(producers: Vec<std::thread::JoinHandle<HashSet<String>>>) -> HashSet<String> {
    producers
        .into_iter()
        .flat_map(|p| p.join().expect("producer"))
        .collect()
}

// ------------------------------------------------------------------ config

fn config(nats: Option<&str>) -> String {
    let bind = |topic: &str, stream: &str| match nats {
        Some(_) => format!(
            "nats = {{ stream = \"{stream}\", subject = \"{topic}.{{partition}}\", key_header = \"Weir-Key\" }}"
        ),
        None => String::new(),
    };
    let nats_section = nats
        .map(|url| format!("[nats]\nurls = [\"{url}\"]\nack_timeout_ms = 2000\n"))
        .unwrap_or_default();
    format!(
        r#"
[pipeline]
batch_size = 32
linger_ms = 1

{nats_section}
[topics.in]
partitions = {PARTITIONS}
{in_bind}
[topics.out]
partitions = {PARTITIONS}
{out_bind}
[topics.enriched]
partitions = {PARTITIONS}
{enriched_bind}

[handlers.chaos]
component = "{chaos}"
subscribe = ["in"]
outputs = ["out"]
limits = {{ deadline_ms = 50, memory_bytes = 16777216 }}
retry = {{ max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 5 }}
config = {{ output_topic = "out" }}

[handlers.map]
component = "{map}"
subscribe = ["in"]
outputs = ["enriched"]
retry = {{ max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 5 }}
config = {{ output_topic = "enriched" }}
"#,
        in_bind = bind("in", "IN"),
        out_bind = bind("out", "OUT"),
        enriched_bind = bind("enriched", "ENRICHED"),
        chaos = guest("chaos").display(),
        map = guest("map").display(),
    )
}

// ------------------------------------------------------------ observation

/// Wait until `settled` holds and the outputs stop changing.
fn drain(settled: &dyn Fn() -> bool, outputs_now: &dyn Fn() -> u64) {
    let mut last = (u64::MAX, Instant::now());
    eventually(Duration::from_secs(240), "the host to drain", || {
        let n = outputs_now();
        if n != last.0 {
            last = (n, Instant::now());
        }
        (settled() && last.1.elapsed() > Duration::from_secs(2)).then_some(())
    });
}

/// Drain a host reading the embedded log: both handlers have no lag.
fn log_drain(host: &Host) {
    let settled = || {
        ["chaos", "map"].iter().all(|h| {
            host.try_get(&format!("/v1/handlers/{h}"))
                .and_then(|s| s["lag"].as_u64())
                .is_some_and(|lag| lag == 0)
        })
    };
    drain(&settled, &|| {
        host.topic_total("out") + host.topic_total("enriched")
    });
}

/// Whether both handlers committed past the last message of every input
/// partition.
fn nats_settled(host: &Host, js: &Js) -> bool {
    let last: Vec<u64> = (0..PARTITIONS)
        .map(|p| js.last_sequence("IN", &format!("in.{p}")))
        .collect();
    ["chaos", "map"].iter().all(|h| {
        // The host may be restarting (the relay scenario crashes it).
        let Some(status) = host.try_get(&format!("/v1/handlers/{h}")) else {
            return false;
        };
        status["partitions"].as_array().is_some_and(|parts| {
            parts.iter().all(|part| {
                let p = part["partition"].as_u64().unwrap() as usize;
                last[p] == 0 || part["committed"].as_u64().unwrap() > last[p]
            })
        })
    })
}

/// Drain a host on NATS: inputs consumed and outboxes relayed.
fn nats_drain(host: &Host, js: &Js) {
    let settled = || nats_settled(host, js) && host_metric(host, "weir_nats_outbox_backlog") == 0;
    drain(&settled, &|| js.count("OUT") + js.count("ENRICHED"));
}

fn dead_ids(host: &Host, handler: &str) -> Vec<String> {
    host.get(&format!("/v1/handlers/{handler}/dead-letters"))["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// Inputs, per handler expectation, from the embedded log.
fn log_inputs(host: &Host, dead: MustDeadLetter) -> Vec<Input> {
    let mut inputs = Vec::new();
    for (p, events) in host.read_all("in").into_iter().enumerate() {
        for e in events {
            inputs.push(Input {
                id: e["id"].as_str().unwrap().into(),
                partition: p as u32,
                position: e["offset"].as_u64().unwrap(),
                key: e["key"].as_str().unwrap_or("_").into(),
                dead: dead(&e["payload"]),
            });
        }
    }
    inputs
}

fn log_outputs(host: &Host, topic: &str) -> Vec<Output> {
    let mut outputs = Vec::new();
    for (p, events) in host.read_all(topic).into_iter().enumerate() {
        for e in events {
            outputs.push(Output {
                id: e["id"].as_str().unwrap().into(),
                source_id: header(&e, "weir-source-id").unwrap().into(),
                partition: p as u32,
                count: count_of(&e["payload"]),
            });
        }
    }
    outputs
}

/// Print the rows and fail on any anomaly.
fn verdict(reports: &[Report]) {
    println!("{}", Report::HEADER);
    for r in reports {
        println!("{r}");
    }
    for r in reports {
        assert_eq!(r.anomalies(), 0, "anomalies in {r:?}");
        assert!(r.events > 0, "no events in {r:?}");
    }
}

/// Whether a handler must dead-letter an input with this payload.
type MustDeadLetter = fn(&Value) -> bool;

/// The handlers under check: name, output topic (its stream is the name in
/// capitals), and which inputs it must dead-letter.
const HANDLERS: [(&str, &str, MustDeadLetter); 2] =
    [("chaos", "out", chaos_dead), ("map", "enriched", map_dead)];

/// One report per handler; `observe(topic, dead)` gives the inputs, the
/// outputs on `topic` and the re-sends the sink dropped.
fn reports(
    scenario: &str,
    cycles: u64,
    host: &Host,
    acked: &HashSet<String>,
    observe: impl Fn(&str, MustDeadLetter) -> (Vec<Input>, Vec<Output>, u64),
) -> Vec<Report> {
    HANDLERS
        .iter()
        .map(|&(handler, topic, dead)| {
            let (inputs, outputs, resent) = observe(topic, dead);
            let mut r = checker::check(acked, &inputs, &outputs, &dead_ids(host, handler), resent);
            r.scenario = scenario.into();
            r.handler = handler.into();
            r.cycles = cycles;
            r
        })
        .collect()
}

fn log_reports(scenario: &str, cycles: u64, host: &Host, acked: &HashSet<String>) -> Vec<Report> {
    reports(scenario, cycles, host, acked, |topic, dead| {
        (log_inputs(host, dead), log_outputs(host, topic), 0)
    })
}

fn nats_reports(
    scenario: &str,
    cycles: u64,
    host: &Host,
    js: &Js,
    acked: &HashSet<String>,
) -> Vec<Report> {
    let inputs = js.read_all("IN");
    // Re-sends the output streams dropped, per topic, as the relays logged them.
    let log = host.log_text();
    let resent = |topic: &str| -> u64 {
        log.lines()
            .filter(|l| l.contains("re-sent outputs") && l.contains(&format!("topic={topic} ")))
            .filter_map(|l| {
                l.split("duplicates=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    reports(scenario, cycles, host, acked, |topic, dead| {
        let outputs = js.read_all(&topic.to_uppercase());
        (
            stream_inputs(&inputs, dead),
            stream_outputs(&outputs),
            resent(topic),
        )
    })
}

/// Scenarios share two cores: run them one at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------- scenarios

/// Run `faults` in a loop while producers publish; it returns the faults it
/// injected. It keeps going until the producers are done and at least
/// `min_cycles` were injected.
fn while_producing(
    producers: Vec<std::thread::JoinHandle<HashSet<String>>>,
    min_cycles: u64,
    mut fault: impl FnMut() -> u64,
) -> (HashSet<String>, u64) {
    let mut cycles = 0;
    while cycles < min_cycles || producers.iter().any(|p| !p.is_finished()) {
        cycles += fault();
    }
    (join(producers), cycles)
}

#[test]
fn sigkill_at_random_moments() {
    let _serial = one_at_a_time();
    let m = mode();
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &config(None));
    let producers = produce(&Sink::Http(host.base()), m.events);
    let (acked, cycles) = while_producing(producers, m.cycles, || {
        std::thread::sleep(Duration::from_millis(fastrand::u64(50..600)));
        host.kill();
        host.restart();
        1
    });
    log_drain(&host);
    verdict(&log_reports("SIGKILL of the host", cycles, &host, &acked));
}

/// Cut the power under the host at random moments while producers
/// publish: its data directory is a [`PowerCutFs`], which drops everything
/// not synced; then restart it. `extra` is appended to the config. Returns
/// the reports and what the cuts dropped.
fn power_cuts(scenario: &str, cuts: u64, extra: &str) -> (Vec<Report>, Lost) {
    let m = mode();
    let dir = tempfile::tempdir().unwrap();
    // Declared before the host: dropped (unmounted) after it is killed.
    let disk = PowerCutFs::mount(&dir.path().join("data"))
        .expect("mounting the power-cut filesystem (needs root and /dev/fuse)");
    let mut host = Host::start(dir.path(), &format!("{}{extra}", config(None)));
    let producers = produce(&Sink::Http(host.base()), m.events);
    let mut lost = Lost::default();
    let (acked, cycles) = while_producing(producers, cuts, || {
        std::thread::sleep(Duration::from_millis(fastrand::u64(50..600)));
        disk.freeze();
        host.kill();
        // Let requests of the dead process still in flight fail.
        std::thread::sleep(Duration::from_millis(50));
        lost += disk.cut();
        host.restart();
        1
    });
    log_drain(&host);
    (log_reports(scenario, cycles, &host, &acked), lost)
}

#[test]
fn power_cut_at_random_moments() {
    let _serial = one_at_a_time();
    let (reports, lost) = power_cuts(
        "power cut (unsynced writes dropped, FUSE)",
        mode().power_cuts,
        "",
    );
    // With a sync per flush round, unsynced data exists only while a round
    // is in flight, so a few random cuts may all find everything synced;
    // that the fault does drop unsynced data is asserted by the next test.
    eprintln!("the cuts dropped: {lost:?}");
    verdict(&reports);
}

/// The fault has teeth: with each flush round's `fdatasync` turned off
/// (`durability = "process-crash-only"`, the behaviour before it existed),
/// power cuts lose acknowledged events.
#[test]
fn power_cut_loses_acknowledged_events_in_process_crash_only_mode() {
    let _serial = one_at_a_time();
    let (reports, _) = power_cuts(
        "power cut, durability = \"process-crash-only\" (must lose events)",
        5,
        "\n[store]\ndurability = \"process-crash-only\"\n",
    );
    println!("{}", Report::HEADER);
    for r in &reports {
        println!("{r}");
    }
    assert!(
        reports.iter().any(|r| r.lost > 0),
        "power cuts lost nothing in process-crash-only mode: {reports:?}"
    );
}

#[test]
fn zombie_host_is_fenced_off_its_data_directory() {
    let _serial = one_at_a_time();
    let m = mode();
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &config(None));
    let producers = produce(&Sink::Http(host.base()), m.events);
    let mut n = 0;
    let (acked, cycles) = while_producing(producers, m.cycles.min(10), || {
        std::thread::sleep(Duration::from_millis(fastrand::u64(100..500)));
        host.signal("STOP");
        // A second host on the same data directory must refuse to start.
        let mut second = std::process::Command::new(weir_e2e::weir_bin())
            .args(["serve", "--config"])
            .arg(&host.config)
            .arg("--data-dir")
            .arg(host.dir.join("data"))
            .args([
                "--admin-addr",
                &format!("127.0.0.1:{}", weir_e2e::free_port()),
            ])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let status = wait_with_timeout(&mut second, Duration::from_secs(30));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
        assert!(
            status.is_some_and(|s| !s.success()) && err.contains("in use by another weir process"),
            "a second host served a zombie's data directory: {status:?} {err}"
        );
        n += 1;
        if n % 2 == 0 {
            // The operator kills the zombie; a new host takes over.
            host.kill();
            host.restart();
        } else {
            host.signal("CONT");
        }
        1
    });
    log_drain(&host);
    verdict(&log_reports(
        "zombie (SIGSTOP, takeover refused, SIGCONT or SIGKILL + takeover)",
        cycles,
        &host,
        &acked,
    ));
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn clock_jumps_forwards_and_backwards() {
    let _serial = one_at_a_time();
    let m = mode();
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock-offset-ms");
    std::fs::write(&clock, "0").unwrap();
    let env = vec![(
        "WEIR_CLOCK_OFFSET_FILE".to_string(),
        clock.display().to_string(),
    )];
    let mut host = Host::start_with_env(dir.path(), &config(None), env);
    let producers = produce(&Sink::Http(host.base()), m.events);
    const JUMPS_MS: [i64; 6] = [3_600_000, -3_600_000, 86_400_000, -86_400_000, -300_000, 0];
    let mut n = 0;
    let (acked, cycles) = while_producing(producers, m.cycles * 2, || {
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(&clock, JUMPS_MS[n % JUMPS_MS.len()].to_string()).unwrap();
        n += 1;
        if n % 5 == 0 {
            host.kill();
            host.restart();
        }
        1
    });
    std::fs::write(&clock, "0").unwrap();
    log_drain(&host);
    verdict(&log_reports(
        "clock jumps of ±1 h and ±1 day (and a SIGKILL every 5th)",
        cycles,
        &host,
        &acked,
    ));
}

#[test]
fn handlers_that_trap_loop_and_exhaust_memory_in_normal_traffic() {
    // Every scenario mixes chaos in (about 4 % of events); this one has
    // no other fault, so any anomaly is the sandbox's.
    let _serial = one_at_a_time();
    let m = mode();
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path(), &config(None));
    let acked = join(produce(&Sink::Http(host.base()), m.events));
    log_drain(&host);
    let reports = log_reports("poison, traps, loops, memory exhaustion", 0, &host, &acked);
    let dead = dead_ids(&host, "chaos").len();
    assert!(dead > 10, "too little chaos: {dead} dead letters");
    verdict(&reports);
}

#[test]
fn disk_full_then_space_returns() {
    let _serial = one_at_a_time();
    let m = mode();
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("data"), "96m");
    let mut host = Host::start(dir.path(), &config(None));
    let filler = disk.0.join("filler");
    let producers = produce(&Sink::Http(host.base()), m.events);
    let mut full = 0;
    let (acked, cycles) = while_producing(producers, m.cycles.min(6), || {
        std::thread::sleep(Duration::from_millis(fastrand::u64(100..400)));
        fill(&disk.0, &filler, 256 << 10);
        // The host stops acknowledging and exits with the reason.
        let exited = host.wait_exit(Duration::from_secs(10)).is_some();
        std::fs::remove_file(&filler).unwrap();
        if exited {
            full += 1;
        } else {
            host.kill();
        }
        host.restart();
        1
    });
    assert!(full > 0, "the disk never filled up under the host");
    assert!(
        host.log_text().contains("No space left on device"),
        "the host did not say why it stopped"
    );
    log_drain(&host);
    verdict(&log_reports(
        "disk full (tmpfs), then space returns",
        cycles,
        &host,
        &acked,
    ));
}

/// Fill the file system at `dir` with `filler`, leaving about `left` bytes.
fn fill(dir: &Path, filler: &Path, left: u64) {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    let avail: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let size = avail.saturating_sub(left);
    let file = std::fs::File::create(filler).unwrap();
    // tmpfs allocates on write; write zeros in chunks.
    use std::io::Write;
    let mut w = std::io::BufWriter::new(file);
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < size {
        let n = (size - written).min(chunk.len() as u64) as usize;
        if w.write_all(&chunk[..n]).is_err() {
            break;
        }
        written += n as u64;
    }
    let _ = w.flush();
}

/// NATS streams for the NATS scenarios: a short input duplicate window so
/// producer retries are stored again and only Weir drops them.
fn nats_world() -> (NatsServer, Arc<Js>) {
    let server = NatsServer::start();
    let js = Arc::new(Js::connect(&server.url()));
    js.create_stream("IN", &["in.*"], Duration::from_millis(500));
    js.create_stream("OUT", &["out.*"], Duration::from_secs(300));
    js.create_stream("ENRICHED", &["enriched.*"], Duration::from_secs(300));
    (server, js)
}

#[test]
fn relay_killed_between_publish_and_outbox_removal() {
    let _serial = one_at_a_time();
    let m = mode();
    let (server, js) = nats_world();
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "WEIR_FAILPOINTS".to_string(),
        "relay-after-publish=0.05".to_string(),
    )];
    let mut host = Host::start_with_env(dir.path(), &config(Some(&server.url())), env);
    let producers = produce(&Sink::Nats(js.clone()), m.events);
    let (acked, _) = while_producing(producers, 0, || {
        std::thread::sleep(Duration::from_millis(50));
        if host.exited() {
            host.restart();
        }
        0
    });
    // Keep restarting the host until the outboxes are empty.
    eventually(Duration::from_secs(240), "outboxes empty", || {
        if host.exited() {
            host.restart();
        }
        (host_metric(&host, "weir_nats_outbox_backlog") == 0 && nats_settled(&host, &js))
            .then_some(())
    });
    let cycles = count_aborts(&host);
    host.env.clear();
    host.kill();
    host.restart();
    nats_drain(&host, &js);
    assert!(cycles > 0, "the failpoint never fired");
    verdict(&nats_reports(
        "relay killed between publish and outbox removal",
        cycles,
        &host,
        &js,
        &acked,
    ));
}

fn count_aborts(host: &Host) -> u64 {
    host.log_text().matches("failpoint hit").count() as u64
}

/// Sum of a gauge over its label sets.
fn host_metric(host: &Host, name: &str) -> u64 {
    let Ok(mut r) = host
        .client()
        .get(&format!("{}/metrics", host.base()))
        .call()
    else {
        return u64::MAX;
    };
    r.body_mut()
        .read_to_string()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn broker_restarts_and_is_unreachable_for_seconds() {
    let _serial = one_at_a_time();
    let m = mode();
    let (mut server, js) = nats_world();
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &config(Some(&server.url())));
    let producers = produce(&Sink::Nats(js.clone()), m.events);
    let mut n = 0u64;
    let (acked, cycles) = while_producing(producers, m.cycles.min(8), || {
        std::thread::sleep(Duration::from_millis(fastrand::u64(200..800)));
        server.stop();
        // A restart, or seconds unreachable.
        n += 1;
        std::thread::sleep(Duration::from_millis(if n.is_multiple_of(2) {
            3000
        } else {
            200
        }));
        server.restart();
        1
    });
    nats_drain(&host, &js);
    assert!(!host.exited(), "the host needed a restart");
    verdict(&nats_reports(
        "NATS restart / unreachable for 3 s",
        cycles,
        &host,
        &js,
        &acked,
    ));
}

#[test]
fn mixed_faults_on_nats() {
    let _serial = one_at_a_time();
    let m = mode();
    let (mut server, js) = nats_world();
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock-offset-ms");
    std::fs::write(&clock, "0").unwrap();
    let env = vec![
        (
            "WEIR_FAILPOINTS".to_string(),
            "relay-after-publish=0.02".to_string(),
        ),
        (
            "WEIR_CLOCK_OFFSET_FILE".to_string(),
            clock.display().to_string(),
        ),
    ];
    let mut host = Host::start_with_env(dir.path(), &config(Some(&server.url())), env);
    let producers = produce(&Sink::Nats(js.clone()), m.events);
    let mut n = 0u64;
    let (acked, cycles) = while_producing(producers, m.cycles, || {
        std::thread::sleep(Duration::from_millis(fastrand::u64(100..500)));
        n += 1;
        match n % 4 {
            0 => {
                server.stop();
                std::thread::sleep(Duration::from_millis(1000));
                server.restart();
            }
            1 | 2 => {
                if !host.exited() {
                    host.kill();
                }
                host.restart();
            }
            _ => std::fs::write(&clock, ["3600000", "-3600000"][n as usize % 2]).unwrap(),
        }
        if host.exited() {
            host.restart();
        }
        1
    });
    std::fs::write(&clock, "0").unwrap();
    host.env.clear();
    if !host.exited() {
        host.kill();
    }
    host.restart();
    nats_drain(&host, &js);
    verdict(&nats_reports(
        "mixed: SIGKILL, broker restart, relay crash, clock jumps, chaos",
        cycles,
        &host,
        &js,
        &acked,
    ));
}
