//! `weir publish` and `weir tail`: events in and out of a running host.

use std::io::{BufRead, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use super::client::Client;

pub(super) fn publish(
    client: &Client,
    topic: &str,
    file: Option<PathBuf>,
    batch: usize,
) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = match &file {
        Some(path) if path.as_os_str() != "-" => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
        _ => Box::new(std::io::stdin().lock()),
    };
    let path = format!("/v1/topics/{topic}/events");
    let (mut sent, mut chunk, mut lines) = (0usize, Vec::new(), 0usize);
    let mut flush = |chunk: &mut Vec<u8>, lines: &mut usize| -> anyhow::Result<()> {
        if *lines == 0 {
            return Ok(());
        }
        client
            .post_ndjson(&path, std::mem::take(chunk))
            .with_context(|| format!("after {sent} events were published"))?;
        sent += *lines;
        *lines = 0;
        eprint!("\rpublished {sent} events to {topic}");
        Ok(())
    };
    for line in reader.lines() {
        let line = line.context("cannot read input")?;
        if line.trim().is_empty() {
            continue;
        }
        chunk.extend_from_slice(line.as_bytes());
        chunk.push(b'\n');
        lines += 1;
        if lines >= batch {
            flush(&mut chunk, &mut lines)?;
        }
    }
    flush(&mut chunk, &mut lines)?;
    eprintln!();
    Ok(())
}

pub(super) fn tail(
    client: &Client,
    topic: &str,
    from_beginning: bool,
    follow: bool,
    only: Option<u32>,
) -> anyhow::Result<()> {
    let topics = client.get("/v1/topics")?;
    let Some(info) = topics["topics"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == topic))
    else {
        bail!("unknown topic `{topic}` on {}", client.base());
    };
    let heads: Vec<u64> = info["heads"]
        .as_array()
        .map(|h| h.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let mut cursors: Vec<(u32, u64)> = heads
        .iter()
        .enumerate()
        .filter_map(|(p, head)| {
            let p = u32::try_from(p).ok()?;
            (only.is_none() || only == Some(p))
                .then_some((p, if from_beginning { 0 } else { *head }))
        })
        .collect();
    let stdout = std::io::stdout();
    loop {
        let mut progressed = false;
        for (partition, from) in &mut cursors {
            let page = client.get(&format!(
                "/v1/topics/{topic}/events?partition={partition}&from={from}&limit=1000"
            ))?;
            let mut out = stdout.lock();
            for event in page["events"].as_array().into_iter().flatten() {
                writeln!(out, "{event}")?;
                progressed = true;
            }
            *from = page["next"].as_u64().unwrap_or(*from);
        }
        if !progressed {
            if !follow {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
