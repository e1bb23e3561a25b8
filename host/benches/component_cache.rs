//! Loading a handler after a restart: compiling its component from scratch
//! against loading the cached compiled artifact, in the same run.
//!
//! Run: `cargo bench -p weir --bench component_cache` (or `cargo xtask bench`).
//! Needs the guests built (`cargo xtask guests`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use weir::runtime::{ComponentStore, Runtime};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<F: FnMut()>(iterations: usize, mut f: F) -> Duration {
    let samples = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    median(samples)
}

fn main() -> anyhow::Result<()> {
    let guest = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-wasip2/release/map.wasm");
    let bytes = std::fs::read(&guest)
        .map_err(|e| anyhow::anyhow!("{}: {e}; run `cargo xtask guests` first", guest.display()))?;
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::new()?;
    let store = ComponentStore::open(dir.path(), runtime.clone())?;
    let digest = store.put(&bytes)?.digest;

    let compile = time(10, || {
        let _ = wasmtime::component::Component::new(runtime.engine(), &bytes).map(drop);
    });
    // A fresh store over the same directory each time, as after a restart.
    let cached = time(200, || {
        let store = ComponentStore::open(dir.path(), runtime.clone()).map(|s| s.load(&digest));
        assert!(matches!(store, Ok(Ok(_))), "cached load failed");
    });
    let ratio = compile.as_secs_f64() / cached.as_secs_f64();
    println!(
        "component cache: map handler ({} bytes), medians",
        bytes.len()
    );
    println!(
        "  compile from scratch      {:>10.3} ms  (10 runs)",
        compile.as_secs_f64() * 1e3
    );
    println!(
        "  load cached artifact      {:>10.3} ms  (200 runs, incl. world check)",
        cached.as_secs_f64() * 1e3
    );
    println!("  speed-up                  {ratio:>10.1}x  (target >= 100x)");
    Ok(())
}
