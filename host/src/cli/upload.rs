//! Uploading a component for `weir deploy`. The host compiles it inside the
//! request, and a Python or JavaScript component (an interpreter inside,
//! 12-20 MB) can take longer than the API's 30 s request timeout on a busy
//! machine. The compilation goes on after the timeout, and an upload of the
//! same bytes waits for it and then finds the component stored, so a 408
//! (or a 503 `compiler_busy`) is answered by uploading again, for up to
//! [`PATIENCE`].

use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::Client;

/// How long `weir deploy` keeps uploading while the host compiles.
const PATIENCE: Duration = Duration::from_secs(600);

/// POST `bytes` to `/v1/components`, again while the host is compiling.
pub(super) fn component(client: &Client, bytes: &[u8]) -> anyhow::Result<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match client.post_bytes("/v1/components", bytes) {
            Err(e) if still_compiling(&e) && Instant::now() < deadline => {
                eprintln!("the host is still compiling the component; waiting for it");
                std::thread::sleep(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// Whether the host answered that the compilation outlasted the request
/// (408) or that the compiler is busy (503 `compiler_busy`).
fn still_compiling(error: &anyhow::Error) -> bool {
    let text = error.to_string();
    text.contains(" 408 ") || text.contains("compiler_busy")
}
