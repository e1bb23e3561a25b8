//! Cluster mode refuses a server older than the minimum, with a message
//! that says what to do.

use std::process::Command;

use weir::cluster::{Cluster, ClusterConfig, ClusterError, MIN_SERVER_VERSION};
use weir_e2e::nats::{NatsServer, nats_server_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_server_is_refused_with_a_clear_error() {
    // Debian's 2.9.10 is the `nats-server` on PATH in CI.
    let out = Command::new(nats_server_bin()).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout).to_string();
    if !version.contains("v2.9.") && !version.contains("v2.10.") && !version.contains("v2.11.") {
        eprintln!("skipped: the nats-server on PATH is {version:?}, not an old one");
        return;
    }
    let server = NatsServer::start();
    let client = async_nats::connect(server.url()).await.unwrap();
    let config = ClusterConfig {
        replicas: 1,
        ..ClusterConfig::default()
    };
    let err = Cluster::start(client, &config, "h0", Vec::new())
        .await
        .err()
        .expect("an old server must be refused");
    assert!(matches!(err, ClusterError::ServerTooOld { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(MIN_SERVER_VERSION) && text.contains("2.9"), "{text}");
    eprintln!("{text}");
}
