//! Cluster mode's scaling row: 1, then 2, then 3 `weir serve` hosts share
//! the partitions of one handler on a real 3-node JetStream cluster (R3
//! input, output, changelog and lease streams), each run draining the same
//! pre-published input from the start (a new `[cluster] name` per run, so
//! nothing carries over: fresh leases, changelog and data directories, and
//! an output stream of its own).
//!
//! Prints the setup and, per host count, how the partitions spread, when
//! the first and the last output reached the output stream, events/s over
//! that span and over the whole run (host start-up included), each with
//! its ratio to 1 host.
//!
//! The hosts run `$WEIR_BIN`, else `target/release/weir` when it is newer
//! than `host/src` (`cargo xtask bench` builds it: the pipeline benchmark's
//! footprint row needs it), else `target/debug/weir`; the output names the
//! one used. The current nats-server comes from `$NATS_SERVER_CURRENT` or
//! `target/nats-venv` (`cargo xtask tools`).
//!
//! Run: `cargo xtask bench [--quick]`, or
//! `cargo bench -p weir-e2e --bench cluster [-- --quick]`.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_e2e::Host;
use weir_e2e::nats::Js;
use weir_e2e::nats_cluster::{NatsCluster, current_nats_server_bin};

const PARTITIONS: u32 = 6;
const BATCH: usize = 500;
const PAYLOAD: &str = r#"{"order":123456,"customer":"customer-0042","amount_cents":129900,"currency":"EUR","items":[{"sku":"SKU-1","qty":2},{"sku":"SKU-7","qty":1}],"note":"leave at the door"}"#;

/// One run's figures.
struct Run {
    hosts: usize,
    spread: String,
    first_output: Duration,
    last_output: Duration,
}

impl Run {
    /// Events/s from the first output to the last.
    fn steady(&self, events: usize) -> f64 {
        events as f64 / (self.last_output - self.first_output).as_secs_f64()
    }

    /// Events/s from the first host's start to the last output.
    fn overall(&self, events: usize) -> f64 {
        events as f64 / self.last_output.as_secs_f64()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `--only ...` (the pipeline benchmark's rows): run only if named.
    if let Some(at) = args.iter().position(|a| a == "--only")
        && !args
            .get(at + 1)
            .is_some_and(|o| o.split(',').any(|r| r == "cluster"))
    {
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let events = if quick { 30_000 } else { 90_000 };

    let bin = weir_e2e::prefer_release_weir_bin();
    let server = current_nats_server_bin();
    let version = std::process::Command::new(&server)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("\n[cluster] 1, 2 and 3 weir hosts on one 3-node JetStream cluster");
    println!(
        "machine: {cpus} CPUs shared by the 3 nats-servers, the hosts and this process{}",
        if quick { "; quick run" } else { "" }
    );
    println!("weir: {}", bin.display());
    println!("nats: {version} x3 on loopback; input, output, changelog, leases R3 (file storage)");
    println!(
        "input: {events} events pre-published over {PARTITIONS} partitions ({}-byte JSON); handler: map (one ~230-byte output per event)",
        PAYLOAD.len()
    );
    println!(
        "hosts: batch_size {BATCH}, linger 2 ms, lease TTL 3 s, renew 0.5 s, snapshot every 1000 entries; a new cluster name per run"
    );

    let nats = NatsCluster::start(3);
    let js = Js::connect(&nats.url(0));
    js.create_replicated_stream("IN", &["in.*"], Duration::from_secs(120), 3);
    let started = Instant::now();
    publish(&js, events);
    println!("published in {:.1} s", started.elapsed().as_secs_f64());

    let runs: Vec<Run> = (1..=3).map(|n| run(&nats, &js, n, events)).collect();

    println!(
        "\n hosts  spread  | first output s  last output s | events/s (first->last)  vs 1 host | events/s (incl. start)  vs 1 host"
    );
    let base = &runs[0];
    for r in &runs {
        println!(
            " {:>5}  {:<7} | {:>14.2}  {:>13.2} | {:>22.0}  {:>8.2}x | {:>22.0}  {:>8.2}x",
            r.hosts,
            r.spread,
            r.first_output.as_secs_f64(),
            r.last_output.as_secs_f64(),
            r.steady(events),
            r.steady(events) / base.steady(events),
            r.overall(events),
            r.overall(events) / base.overall(events),
        );
    }
}

/// Publish `events` to `in.<partition>`, keyed over 1000 customers.
fn publish(js: &Js, events: usize) {
    let ids: Vec<usize> = (0..events).collect();
    for chunk in ids.chunks(2000) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let key = format!("customer-{}", i % 1000);
                let partition = weir::event::partition_for(&key, PARTITIONS);
                let headers = vec![
                    ("Nats-Msg-Id".to_string(), format!("evt-{i:08}")),
                    ("Weir-Key".to_string(), key),
                ];
                (
                    format!("in.{partition}"),
                    headers,
                    PAYLOAD.as_bytes().to_vec(),
                )
            })
            .collect();
        js.publish_with_headers(&batch).expect("publish the input");
    }
}

/// Start `n` hosts of cluster `bench<n>` and time them draining the input.
fn run(nats: &NatsCluster, js: &Js, n: usize, events: usize) -> Run {
    let out = format!("OUT{n}");
    js.create_replicated_stream(&out, &[&format!("out{n}.*")], Duration::from_secs(120), 3);
    let config = config(n);
    let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let start = Instant::now();
    let hosts: Vec<Host> = dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            // Host i connects to node i first, as a deployment would.
            let mut env = vec![("WEIR_HOST_ID".to_string(), format!("h{i}"))];
            for (k, url) in nats.urls_from(i % nats.len()).into_iter().enumerate() {
                env.push((format!("NATS_URL_{k}"), url));
            }
            Host::start_with_env(dir.path(), &config, env)
        })
        .collect();
    let mut first = None;
    let deadline = start + Duration::from_secs(600);
    loop {
        let count = js.count(&out);
        if count > 0 && first.is_none() {
            first = Some(start.elapsed());
        }
        if count >= events as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} hosts: only {count} of {events} outputs after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let last = start.elapsed();
    assert_eq!(js.count(&out), events as u64, "{n} hosts: extra outputs");
    let run = Run {
        hosts: n,
        spread: spread(&hosts),
        first_output: first.unwrap_or(last),
        last_output: last,
    };
    drop(hosts);
    run
}

/// How many partitions each host owns now, as `2/2/2`.
fn spread(hosts: &[Host]) -> String {
    let mut owned: BTreeMap<String, usize> = BTreeMap::new();
    for host in hosts {
        let status = host.get("/v1/cluster");
        let me = status["host"].as_str().unwrap_or_default().to_string();
        let mine = status["partitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["owner"] == status["host"])
            .count();
        owned.insert(me, mine);
    }
    owned
        .values()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("/")
}

/// The config every host of run `n` serves (its host ID and the nodes'
/// URLs from the environment).
fn config(n: usize) -> String {
    let map = weir_e2e::guest("map");
    format!(
        r#"[pipeline]
batch_size = {BATCH}
linger_ms = 2

[nats]
urls = ["${{NATS_URL_0}}", "${{NATS_URL_1}}", "${{NATS_URL_2}}"]
ack_timeout_ms = 5000

[cluster]
name = "bench{n}"
host_id = "${{WEIR_HOST_ID}}"
lease_ttl_ms = 3000
renew_interval_ms = 500
max_clock_skew_ms = 500
replicas = 3
snapshot_every = 1000

[topics.in]
partitions = {PARTITIONS}
nats = {{ stream = "IN", subject = "in.{{partition}}", key_header = "Weir-Key" }}

[topics.out]
partitions = {PARTITIONS}
nats = {{ stream = "OUT{n}", subject = "out{n}.{{partition}}" }}

[handlers.map]
component = {map:?}
subscribe = ["in"]
outputs = ["out"]
config = {{ output_topic = "out" }}
"#,
    )
}
