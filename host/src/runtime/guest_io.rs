//! Where a guest's words go: its `weir:handler/log` lines and its
//! stdout/stderr, forwarded to the host's `tracing` log under the handler's
//! name, with a per-instance rate limit so a chatty or hostile guest cannot
//! flood the host's log. Dropped lines are counted and reported.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use wasmtime_wasi::async_trait;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Longest line forwarded; longer lines are cut and marked.
const MAX_LINE: usize = 4096;
/// Stderr lines kept for error reports.
const STDERR_TAIL: usize = 4;

/// Severity of a guest log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected.
    Warn,
    /// A failure.
    Error,
}

/// A token bucket: `burst` lines at once, refilled at `per_sec`.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
    dropped: u64,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// The log of one handler instance, shared by its log import and stdio.
#[derive(Debug, Clone)]
pub struct GuestLog {
    handler: Arc<str>,
    bucket: Arc<Mutex<Bucket>>,
    stderr_tail: Arc<Mutex<std::collections::VecDeque<String>>>,
}

impl GuestLog {
    /// A log for `handler` allowing `per_sec` lines per second (bursts of twice that).
    pub fn new(handler: &str, per_sec: u32) -> Self {
        let burst = f64::from(per_sec.max(1)) * 2.0;
        Self {
            handler: handler.into(),
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: burst,
                burst,
                per_sec: f64::from(per_sec),
                last: Instant::now(),
                dropped: 0,
            })),
            stderr_tail: Arc::default(),
        }
    }

    /// The guest's last few stderr lines since [`Self::clear_stderr`] (kept
    /// even when the rate limit drops them), so a trap can be reported with
    /// the panic message that caused it.
    pub fn stderr_tail(&self) -> Option<String> {
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (!tail.is_empty()).then(|| tail.iter().cloned().collect::<Vec<_>>().join(" | "))
    }

    /// Forget earlier stderr lines (called before each invocation).
    pub fn clear_stderr(&self) {
        self.stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Lines dropped by the rate limit so far.
    pub fn dropped(&self) -> u64 {
        self.bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dropped
    }

    /// Forward one line, if the rate limit allows.
    pub fn line(&self, level: Level, stream: &str, line: &str) {
        let allowed = self
            .bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if !allowed {
            return;
        }
        let line = truncate(line);
        let handler = &*self.handler;
        match level {
            Level::Trace => tracing::trace!(target: "weir::guest", handler, stream, "{line}"),
            Level::Debug => tracing::debug!(target: "weir::guest", handler, stream, "{line}"),
            Level::Info => tracing::info!(target: "weir::guest", handler, stream, "{line}"),
            Level::Warn => tracing::warn!(target: "weir::guest", handler, stream, "{line}"),
            Level::Error => tracing::error!(target: "weir::guest", handler, stream, "{line}"),
        }
    }

    /// A stdout/stderr stream that forwards complete lines at `level`.
    pub fn stream(&self, name: &'static str, level: Level) -> GuestStream {
        GuestStream {
            log: self.clone(),
            name,
            level,
            pending: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

fn truncate(line: &str) -> std::borrow::Cow<'_, str> {
    if line.len() <= MAX_LINE {
        return line.into();
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &line[..end], line.len() - end).into()
}

/// A guest's stdout or stderr: bytes are split into lines and logged.
#[derive(Debug, Clone)]
pub struct GuestStream {
    log: GuestLog,
    name: &'static str,
    level: Level,
    pending: Arc<Mutex<Vec<u8>>>,
}

impl GuestStream {
    fn push(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.extend_from_slice(bytes);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            self.emit(text.trim_end_matches('\r'));
        }
        if pending.len() > MAX_LINE {
            let text = String::from_utf8_lossy(&pending).into_owned();
            pending.clear();
            self.emit(&text);
        }
    }

    fn emit(&self, text: &str) {
        if self.name == "stderr" && !text.trim().is_empty() {
            let mut tail = self
                .log
                .stderr_tail
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(truncate(text).into_owned());
        }
        self.log.line(self.level, self.name, text);
    }
}

#[async_trait]
impl OutputStream for GuestStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only the WASIp2 interfaces are linked; p3 streams are never asked for.
        Box::new(tokio::io::sink())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_drops_and_counts_excess_lines() {
        let log = GuestLog::new("h", 5);
        for i in 0..100 {
            log.line(Level::Info, "log", &format!("line {i}"));
        }
        // Burst of 10 allowed, the rest (minus a tiny refill) dropped.
        assert!(log.dropped() >= 85, "dropped {}", log.dropped());
    }

    #[test]
    fn stream_splits_lines_across_writes() {
        let log = GuestLog::new("h", 1);
        let stream = log.stream("stdout", Level::Info);
        stream.push(b"hel");
        stream.push(b"lo\nwor");
        stream.push(b"ld\nthird\n");
        // Burst 2: "hello" and "world" pass, "third" is dropped.
        assert_eq!(log.dropped(), 1);
    }

    #[test]
    fn long_lines_are_cut_on_char_boundary() {
        let line = "é".repeat(MAX_LINE);
        let cut = truncate(&line);
        assert!(cut.len() < line.len());
        assert!(cut.contains("bytes cut"));
    }
}
