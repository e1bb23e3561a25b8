//! The HTTP listener of the API: accepts connections, serves HTTP/1.1 on
//! each with hyper, and shuts down gracefully.
//!
//! Owns the connection-level limits that a router layer cannot enforce:
//! a connection must send its request headers within
//! [`ConnectionLimits::header_read_timeout`] (an idle keep-alive connection
//! too: the timer runs while hyper waits for the next request's headers),
//! and at most [`ConnectionLimits::max_connections`] are served at once. A
//! connection beyond the cap is answered `503` and closed at once, so a
//! flood of idle connections costs the host no file descriptors beyond the
//! cap and cannot starve `/healthz` for longer than the header timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connection limits of the API listener (`[admin]` in the config).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a request's headers, idle keep-alive included.
    pub header_read_timeout: Duration,
    /// Most connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
}

/// The answer to a connection beyond the cap.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 97\r\n\r\n{\"error\":{\"code\":\"too_many_connections\",\"message\":\"admin.max_connections reached; retry later\"}}\n";

/// Longest wait for open connections to finish once shutdown starts (the
/// router's request timeout is 30 s).
const DRAIN: Duration = Duration::from_secs(35);

/// Serve `app` on `listener` until `shutdown` resolves, then stop
/// accepting, let in-flight requests finish (idle connections are closed)
/// and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // accept: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept an API connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "API connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("API connections still open after {DRAIN:?}; closing them");
    }
}

async fn refuse(mut stream: TcpStream) {
    tracing::debug!("admin.max_connections reached; refusing a connection");
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(BUSY)).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_busy_answer_has_the_right_length() {
        let text = std::str::from_utf8(super::BUSY).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.ends_with(&format!("content-length: {}", body.len())));
    }
}
