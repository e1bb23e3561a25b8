//! What cluster mode refuses at start, with a message that says what to
//! do: a server older than the minimum, a bucket with another TTL.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::cluster::{Cluster, ClusterConfig, ClusterError, MIN_SERVER_VERSION};
use weir_e2e::free_port;

/// An old `nats-server` (Debian's 2.9.10): `$NATS_SERVER_OLD`, else the
/// first of `nats-server` on PATH and `/usr/sbin/nats-server` that is
/// older than 2.12.
fn old_nats_server() -> Option<String> {
    let candidates = [
        std::env::var("NATS_SERVER_OLD").ok(),
        Some("nats-server".into()),
        Some("/usr/sbin/nats-server".into()),
    ];
    candidates.into_iter().flatten().find(|bin| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|out| {
                let v = String::from_utf8_lossy(&out.stdout).to_string();
                ["v2.9.", "v2.10.", "v2.11."]
                    .iter()
                    .any(|old| v.contains(old))
            })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_server_is_refused_with_a_clear_error() {
    let Some(bin) = old_nats_server() else {
        eprintln!("skipped: no nats-server older than 2.12 here (set NATS_SERVER_OLD)");
        return;
    };
    let store = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Command::new(&bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        if let Ok(client) = async_nats::connect(&url).await {
            break client;
        }
        assert!(Instant::now() < deadline, "{bin} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let config = ClusterConfig {
        replicas: 1,
        ..ClusterConfig::default()
    };
    let result = Cluster::start(client, &config, "h0", Vec::new()).await;
    let _ = server.kill();
    let _ = server.wait();
    let err = result.expect_err("an old server must be refused");
    assert!(matches!(err, ClusterError::ServerTooOld { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(MIN_SERVER_VERSION) && text.contains("2.9"),
        "{text}"
    );
    eprintln!("{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_another_ttl_is_refused() {
    let nats = weir_e2e::nats_cluster::NatsCluster::start(3);
    let urls = nats.urls_from(0);
    let config = crate::hosts::config("mismatch", 3_000);
    let client = async_nats::connect(&urls).await.unwrap();
    let (_first, _grants) = Cluster::start(client, &config, "h0", Vec::new())
        .await
        .unwrap();
    let other = ClusterConfig {
        lease_ttl_ms: 6_000,
        ..config
    };
    let client = async_nats::connect(&urls).await.unwrap();
    let err = Cluster::start(client, &other, "h1", Vec::new())
        .await
        .expect_err("a host with another TTL must be refused");
    assert!(
        matches!(err, ClusterError::BucketMismatch { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("3000 ms") && text.contains("6000 ms"),
        "{text}"
    );
}
