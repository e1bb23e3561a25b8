//! The host-wide "stop now" error: what a consumer loop, a relay or another
//! background task reports when the host must stop and recover by restarting
//! from its last commit. `serve` receives it and exits non-zero.

use crate::store::StoreError;

/// A fatal error: the host stops; a restart recovers from the last commit.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// The store failed (disk full, I/O error) or a loop was fenced.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A host-side fault: a thread could not start, an instance could not be
    /// created, a task died.
    #[error("host fault: {0}")]
    Host(String),
}

/// Where background tasks report a [`Fatal`] error.
pub type FatalSender = tokio::sync::mpsc::UnboundedSender<Fatal>;

/// Run a background task to its end; if it fails or panics, log it and
/// report a [`Fatal`] error naming `what`, so the host stops loudly instead
/// of running on with a dead task.
pub async fn supervise<F>(what: String, task: F, fatal: FatalSender)
where
    F: std::future::Future<Output = Result<(), Fatal>>,
{
    use futures_util::FutureExt as _;
    let outcome = std::panic::AssertUnwindSafe(task).catch_unwind().await;
    report(&what, outcome, &fatal);
}

/// [`supervise`] for a blocking task on its own thread.
pub fn supervise_blocking(
    what: &str,
    task: impl FnOnce() -> Result<(), Fatal>,
    fatal: &FatalSender,
) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
    report(what, outcome, fatal);
}

fn report(what: &str, outcome: std::thread::Result<Result<(), Fatal>>, fatal: &FatalSender) {
    let error = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Fatal::Host(format!("{what} panicked: {message}"))
        }
    };
    tracing::error!(task = what, error = %error, "background task stopped; the host stops");
    let _ = fatal.send(error);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_or_failing_task_is_reported_and_a_finished_one_is_not() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        supervise("relay t/0".into(), async { panic!("boom") }, tx.clone()).await;
        let e = rx.recv().await.unwrap();
        assert!(e.to_string().contains("relay t/0 panicked: boom"), "{e}");
        supervise_blocking("loop h/1", || Err(Fatal::Host("disk".into())), &tx);
        assert!(rx.recv().await.unwrap().to_string().contains("disk"));
        supervise("done".into(), async { Ok(()) }, tx.clone()).await;
        drop(tx);
        assert!(
            rx.recv().await.is_none(),
            "a task that ended well reports nothing"
        );
    }
}
