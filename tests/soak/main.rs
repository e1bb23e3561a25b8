//! The soak run (`cargo xtask soak [--minutes N]`): the quickstart
//! pipeline (orders → the `map` component → enriched, 2 partitions) at
//! about half its measured capacity for N minutes, with a SIGKILL and
//! restart every 45 s, retention (30 s) and dedup sweeping (every 20,000
//! positions) on. Every 5 s it samples the host's RSS, open files, the data
//! directory's size on disk, the handler's lag and the p99 commit latency
//! of the last interval; it fails if any of them keeps growing, and
//! writes `docs/soak-metrics.svg` and the table between the `soak` markers
//! of `docs/RELIABILITY.md`.
//!
//! "Keeps growing": after a warm-up (the first fifth of the run), the
//! median of the second half of the samples must stay within 1.5x the
//! median of the first half plus a small absolute slack. A leak, a file
//! descriptor per restart or a store that never reclaims space fails it;
//! the spikes right after a kill (lag, latency) do not move a median.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod plot;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use weir_e2e::{Host, eventually, guest, workspace_root};

const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const KILL_EVERY: Duration = Duration::from_secs(45);
const HANDLER: &str = "enrich";

fn config() -> String {
    format!(
        r#"
[pipeline]
batch_size = 500
linger_ms = 2

[topics.orders]
partitions = 2
retention_secs = 30

[topics.enriched]
partitions = 2
retention_secs = 30

[handlers.{HANDLER}]
component = "{map}"
subscribe = ["orders"]
outputs = ["enriched"]
dedup_window = 20000
config = {{ greeting = "soak", output_topic = "enriched" }}
"#,
        map = guest("map").display(),
    )
}

/// One quantity sampled over the run.
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    /// Growth allowed on top of 1.5x, in `unit`.
    pub slack: f64,
    /// (seconds since start, value)
    pub samples: Vec<(f64, f64)>,
}

impl Metric {
    fn new(name: &'static str, unit: &'static str, slack: f64) -> Self {
        Self {
            name,
            unit,
            slack,
            samples: Vec::new(),
        }
    }

    /// Medians of the two halves after the warm-up.
    fn halves(&self) -> (f64, f64) {
        let after = &self.samples[self.samples.len() / 5..];
        let (a, b) = after.split_at(after.len() / 2);
        (median(a), median(b))
    }

    fn bounded(&self) -> bool {
        let (a, b) = self.halves();
        b <= a * 1.5 + self.slack
    }

    fn max(&self) -> f64 {
        self.samples.iter().map(|s| s.1).fold(0.0, f64::max)
    }
}

fn median(samples: &[(f64, f64)]) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(|s| s.1).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A publisher of `rate` events/s in batches every 100 ms, retrying
/// through restarts; counts what was acknowledged.
struct Producer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Producer {
    fn start(base: String, rate: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                    if due > sent {
                        let n = (due - sent).min(5_000);
                        if publish(&base, sent, n) {
                            sent += n;
                            acked.store(sent, Ordering::Relaxed);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Self {
            stop,
            acked,
            thread,
        }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.acked.load(Ordering::Relaxed)
    }
}

/// Publish events `from..from + n`; whether the host acknowledged them.
fn publish(base: &str, from: u64, n: u64) -> bool {
    let body: Vec<String> = (from..from + n)
        .map(|i| {
            json!({"id": format!("order-{i}"), "key": format!("customer-{}", i % 1000),
                "payload": {"order": i, "amount_cents": 129_900, "currency": "EUR"}})
            .to_string()
        })
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    agent
        .post(&format!("{base}/v1/topics/orders/events"))
        .header("content-type", "application/x-ndjson")
        .send(body.join("\n").as_bytes())
        .is_ok_and(|r| r.status() == 200)
}

/// `/metrics` as (name, labels) → value.
fn scrape(host: &Host) -> BTreeMap<(String, String), f64> {
    let Ok(mut r) = host
        .client()
        .get(&format!("{}/metrics", host.base()))
        .call()
    else {
        return BTreeMap::new();
    };
    let text = r.body_mut().read_to_string().unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            Some(((name.to_string(), labels.to_string()), value.parse().ok()?))
        })
        .collect()
}

fn sum(m: &BTreeMap<(String, String), f64>, name: &str) -> f64 {
    m.iter()
        .filter(|((n, _), _)| n == name)
        .map(|(_, v)| v)
        .sum()
}

/// Commit-latency histogram: upper bound → cumulative count.
fn commit_buckets(m: &BTreeMap<(String, String), f64>) -> BTreeMap<u64, f64> {
    let mut out = BTreeMap::new();
    for ((name, labels), v) in m {
        if name != "weir_handler_commit_seconds_bucket" {
            continue;
        }
        let Some(le) = labels
            .split("le=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue;
        };
        let bound = if le == "+Inf" {
            u64::MAX
        } else {
            (le.parse::<f64>().unwrap_or(0.0) * 1e6) as u64
        };
        *out.entry(bound).or_default() += v;
    }
    out
}

/// p99 in ms of the commits between two scrapes (the whole second one
/// after a restart reset the counters).
fn interval_p99(before: &BTreeMap<u64, f64>, now: &BTreeMap<u64, f64>) -> Option<f64> {
    let restarted = now
        .iter()
        .any(|(b, v)| before.get(b).is_some_and(|p| v < p));
    let delta: Vec<(u64, f64)> = now
        .iter()
        .map(|(b, v)| {
            (
                *b,
                if restarted {
                    *v
                } else {
                    v - before.get(b).unwrap_or(&0.0)
                },
            )
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let (bound, _) = delta.iter().find(|(_, c)| *c >= total * 0.99)?;
    Some(if *bound == u64::MAX {
        delta
            .iter()
            .rev()
            .nth(1)
            .map_or(0.0, |(b, _)| *b as f64 / 1000.0)
    } else {
        *bound as f64 / 1000.0
    })
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open_files(pid: u32) -> f64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0.0, |d| d.count() as f64)
}

/// Size on disk (allocated blocks) of everything under `dir`, in MiB.
fn disk_mb(dir: &Path) -> f64 {
    fn walk(dir: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.blocks() * 512,
                    Err(_) => 0,
                })
                .sum()
        })
    }
    walk(dir) as f64 / (1 << 20) as f64
}

/// Events/s the pipeline commits when producers publish as fast as they
/// can for `secs`.
fn measure_capacity(host: &Host, secs: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..2u64)
        .map(|p| {
            let (base, stop) = (host.base(), stop.clone());
            std::thread::spawn(move || {
                let mut next = 1_000_000_000 * (p + 1);
                while !stop.load(Ordering::Relaxed) {
                    if publish(&base, next, 1000) {
                        next += 1000;
                    }
                }
            })
        })
        .collect();
    // Skip the first seconds (compiling, warming caches).
    std::thread::sleep(Duration::from_secs(3));
    let events = |h: &Host| sum(&scrape(h), "weir_handler_events_total");
    let (start, t0) = (events(host), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let rate = (events(host) - start) / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    rate
}

fn main() {
    let minutes: f64 = std::env::args()
        .skip_while(|a| a != "--minutes")
        .nth(1)
        .map_or(30.0, |m| m.parse().expect("--minutes N"));
    let run = Duration::from_secs_f64(minutes * 60.0);
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &config());
    let capacity = measure_capacity(&host, 15);
    // Start the soak on a fresh directory.
    host.kill();
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    host.restart();
    let rate = (capacity / 2.0).max(100.0) as u64;
    println!(
        "soak: capacity {capacity:.0} events/s, offering {rate} events/s for {minutes} min, SIGKILL every {} s",
        KILL_EVERY.as_secs()
    );
    let producer = Producer::start(host.base(), rate);
    let mut metrics = [
        Metric::new("RSS", "MiB", 16.0),
        Metric::new("open files", "", 16.0),
        Metric::new("data directory", "MiB", 32.0),
        Metric::new("lag", "events", rate as f64 * 2.0),
        Metric::new("p99 commit", "ms", 20.0),
    ];
    let start = Instant::now();
    let mut last_kill = Instant::now();
    let mut kills = 0;
    let mut buckets = BTreeMap::new();
    while start.elapsed() < run {
        std::thread::sleep(SAMPLE_EVERY);
        if last_kill.elapsed() >= KILL_EVERY {
            host.kill();
            host.restart();
            kills += 1;
            last_kill = Instant::now();
        }
        let pid = host.child.as_ref().unwrap().id();
        let scraped = scrape(&host);
        let now_buckets = commit_buckets(&scraped);
        let p99 = interval_p99(&buckets, &now_buckets);
        buckets = now_buckets;
        let t = start.elapsed().as_secs_f64();
        let values = [
            Some(rss_mb(pid)),
            Some(open_files(pid)),
            Some(disk_mb(&dir.path().join("data"))),
            Some(sum(&scraped, "weir_handler_lag")),
            p99,
        ];
        for (m, v) in metrics.iter_mut().zip(values) {
            if let Some(v) = v {
                m.samples.push((t, v));
            }
        }
        println!(
            "{t:>6.0} s  rss {:>6.1} MiB  files {:>4}  data {:>7.1} MiB  lag {:>7}  p99 {:>7}",
            values[0].unwrap_or(0.0),
            values[1].unwrap_or(0.0),
            values[2].unwrap_or(0.0),
            values[3].unwrap_or(0.0),
            p99.map_or("-".into(), |v| format!("{v:.1} ms")),
        );
    }
    let acked = producer.stop();
    eventually(Duration::from_secs(120), "the soak to drain", || {
        (sum(&scrape(&host), "weir_handler_lag") == 0.0).then_some(())
    });
    let docs = workspace_root().join("docs");
    plot::metrics(&docs.join("soak-metrics.svg"), &metrics, minutes).expect("plot");
    let table = table(&metrics, minutes, capacity, rate, kills, acked);
    println!("\n{table}");
    write_table(&docs.join("RELIABILITY.md"), &table);
    let growing: Vec<&str> = metrics
        .iter()
        .filter(|m| !m.bounded())
        .map(|m| m.name)
        .collect();
    assert!(
        growing.is_empty(),
        "still growing at the end of the soak: {growing:?}"
    );
}

fn table(
    metrics: &[Metric],
    minutes: f64,
    capacity: f64,
    rate: u64,
    kills: u32,
    acked: u64,
) -> String {
    let mut out = format!(
        "{minutes} minutes, {} UTC: capacity {capacity:.0} events/s measured first, {rate} events/s offered ({acked} events acknowledged), {kills} SIGKILLs and restarts, retention 30 s, dedup sweep every 20,000 positions; a sample every {} s, the first fifth a warm-up.\n\n",
        utc_now(),
        SAMPLE_EVERY.as_secs()
    );
    out.push_str("| quantity | median, first half | median, second half | max | limit (1.5x + slack) | verdict |\n|---|---|---|---|---|---|\n");
    for m in metrics {
        let (a, b) = m.halves();
        let unit = if m.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", m.unit)
        };
        out.push_str(&format!(
            "| {} | {a:.1}{unit} | {b:.1}{unit} | {:.1}{unit} | {:.1}{unit} | {} |\n",
            m.name,
            m.max(),
            a * 1.5 + m.slack,
            if m.bounded() {
                "bounded"
            } else {
                "**growing**"
            },
        ));
    }
    out
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

const BEGIN: &str = "<!-- soak:begin (written by `cargo xtask soak`) -->";
const END: &str = "<!-- soak:end -->";

/// Replace the text between the soak markers of `path`.
fn write_table(path: &Path, table: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!("{} has no soak markers", path.display());
    };
    let new = format!("{}{BEGIN}\n{table}{}", &text[..b], &text[e..]);
    std::fs::write(path, new).unwrap();
}
