//! Row 6: the `weir` binary's footprint. Time from start to ready and
//! resident memory idle and under load, with 1 and with 100 handlers
//! deployed (each a map handler on the same topic; the compiled component
//! cache warm, as after any restart).

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::PAYLOAD;

struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn get(url: &str) -> Option<(u16, String)> {
    let mut r = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .ok()?;
    let status = r.status().as_u16();
    let mut body = String::new();
    r.body_mut().as_reader().read_to_string(&mut body).ok()?;
    Some((status, body))
}

/// Start `weir serve`; returns the process and the seconds until /readyz.
fn start(
    config: &std::path::Path,
    data: &std::path::Path,
    port: u16,
) -> Result<(Host, f64), String> {
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--admin-addr", &format!("127.0.0.1:{port}")])
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let host = Host(child);
    let url = format!("http://127.0.0.1:{port}/readyz");
    while get(&url).is_none_or(|(s, _)| s != 200) {
        if started.elapsed() > Duration::from_secs(60) {
            return Err("weir did not become ready in 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((host, started.elapsed().as_secs_f64()))
}

fn measure(wasm: &[u8], handlers: usize, events: usize) -> Result<Value, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let component = dir.path().join("map.wasm");
    std::fs::write(&component, wasm).map_err(|e| e.to_string())?;
    let mut config = String::from("[topics.in]\npartitions = 1\n[topics.out]\npartitions = 1\n");
    for i in 0..handlers {
        config.push_str(&format!(
            "[handlers.h{i}]\ncomponent = \"map.wasm\"\nsubscribe = [\"in\"]\noutputs = [\"out\"]\nconfig = {{ output_topic = \"out\" }}\n"
        ));
    }
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // First start compiles the component into the cache; measure the second.
    drop(start(&path, &data, port)?);
    let (host, ready_s) = start(&path, &data, port)?;
    std::thread::sleep(Duration::from_secs(1));
    let idle = rss_mb(host.0.id());
    let body: Vec<String> = (0..events)
        .map(|i| format!(r#"{{"id":"e{i}","payload":{PAYLOAD}}}"#))
        .collect();
    let base = format!("http://127.0.0.1:{port}");
    for chunk in body.chunks(1000) {
        ureq::post(&format!("{base}/v1/topics/in/events"))
            .header("content-type", "application/x-ndjson")
            .send(chunk.join("\n").as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let want = (events * handlers) as u64;
    let started = Instant::now();
    let mut peak = idle;
    loop {
        peak = peak.max(rss_mb(host.0.id()));
        let (_, topics) = get(&format!("{base}/v1/topics")).ok_or("no /v1/topics")?;
        let v: Value = serde_json::from_str(&topics).map_err(|e| e.to_string())?;
        let out: u64 = v["topics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["name"] == "out")
            .flat_map(|t| t["heads"].as_array().cloned().unwrap_or_default())
            .filter_map(|h| h.as_u64())
            .sum();
        if out >= want || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "{handlers:>9} | {:>12.3} {:>12.1} {:>15.1}",
        ready_s, idle, peak
    );
    Ok(
        json!({"handlers": handlers, "ready_s": ready_s, "rss_idle_mb": idle,
        "rss_load_mb": peak, "load_events": events}),
    )
}

pub fn run(wasm: &[u8], quick: bool) -> Result<Value, String> {
    println!("\n[6] footprint of `weir serve` (release build), compiled-component cache warm");
    println!(
        "{:>9} | {:>12} {:>12} {:>15}",
        "handlers", "ready s", "idle RSS MB", "load RSS MB"
    );
    let events = if quick { 2_000 } else { 10_000 };
    let one = measure(wasm, 1, events)?;
    let hundred = measure(wasm, 100, events / 10)?;
    Ok(json!([one, hundred]))
}
