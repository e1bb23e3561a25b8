//! A lease manager plus a stand-in for the pipeline: every grant is held
//! until it ends (hand-over or loss), then dropped, and each step is logged
//! with its instant.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use weir::cluster::{Cluster, ClusterConfig, LeaseStatus, PartitionKey, View};

/// What happened to one grant.
#[derive(Debug, Clone)]
pub enum Event {
    Acquired {
        partition: PartitionKey,
        epoch: u64,
        at: Instant,
    },
    Ended {
        partition: PartitionKey,
        epoch: u64,
        status: LeaseStatus,
        at: Instant,
    },
}

pub type Log = Arc<Mutex<Vec<Event>>>;

/// One host under test.
pub struct TestHost {
    pub id: String,
    pub cluster: Option<Cluster>,
    pub log: Log,
    holder: JoinHandle<()>,
}

/// The config the tests use: a short TTL so expiries take seconds.
pub fn config(name: &str, ttl_ms: u64) -> ClusterConfig {
    ClusterConfig {
        name: name.into(),
        host_id: None,
        lease_ttl_ms: ttl_ms,
        renew_interval_ms: ttl_ms / 6,
        max_clock_skew_ms: ttl_ms / 6,
        replicas: 3,
        ..ClusterConfig::default()
    }
}

pub fn partitions(handlers: &[(&str, u32)]) -> Vec<PartitionKey> {
    handlers
        .iter()
        .flat_map(|&(h, n)| (0..n).map(move |p| PartitionKey::new(h, p)))
        .collect()
}

impl TestHost {
    pub async fn start(
        urls: &[String],
        config: &ClusterConfig,
        id: &str,
        partitions: Vec<PartitionKey>,
    ) -> Self {
        let client = async_nats::connect(urls).await.unwrap();
        let (cluster, mut grants) = Cluster::start(client, config, id, partitions)
            .await
            .unwrap();
        let log: Log = Arc::default();
        let holder_log = log.clone();
        let holder = tokio::spawn(async move {
            while let Some(mut grant) = grants.recv().await {
                let log = holder_log.clone();
                log.lock().unwrap().push(Event::Acquired {
                    partition: grant.partition().clone(),
                    epoch: grant.epoch(),
                    at: Instant::now(),
                });
                tokio::spawn(async move {
                    let status = grant.ended().await;
                    log.lock().unwrap().push(Event::Ended {
                        partition: grant.partition().clone(),
                        epoch: grant.epoch(),
                        status,
                        at: Instant::now(),
                    });
                    drop(grant);
                });
            }
        });
        Self {
            id: id.into(),
            cluster: Some(cluster),
            log,
            holder,
        }
    }

    pub fn view(&self) -> View {
        self.cluster.as_ref().unwrap().view().borrow().clone()
    }

    /// Partitions this host holds now, with epochs.
    pub fn owned(&self) -> BTreeMap<PartitionKey, u64> {
        self.cluster
            .as_ref()
            .map(|c| c.view().borrow().owned.clone())
            .unwrap_or_default()
    }

    pub fn events(&self) -> Vec<Event> {
        self.log.lock().unwrap().clone()
    }

    /// Stop as a crash would: no release, no goodbye.
    pub fn crash(&mut self) {
        self.cluster = None;
    }

    pub async fn shutdown(&mut self) {
        if let Some(c) = self.cluster.take() {
            c.shutdown().await.unwrap();
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.holder.abort();
    }
}

/// Every partition's owners across `hosts` (more than one is a bug).
pub fn owners(hosts: &[&TestHost]) -> BTreeMap<PartitionKey, Vec<(String, u64)>> {
    let mut out: BTreeMap<PartitionKey, Vec<(String, u64)>> = BTreeMap::new();
    for h in hosts {
        for (p, epoch) in h.owned() {
            out.entry(p).or_default().push((h.id.clone(), epoch));
        }
    }
    out
}

/// Poll until `done(owners)`, checking at every poll that no partition has
/// two owners; panics after `timeout`. Returns how long it took.
pub async fn wait_for(
    hosts: &[&TestHost],
    timeout: Duration,
    what: &str,
    done: impl Fn(&BTreeMap<PartitionKey, Vec<(String, u64)>>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let o = owners(hosts);
        if let Some((p, two)) = o.iter().find(|(_, v)| v.len() > 1) {
            panic!("partition {p} has two owners: {two:?}");
        }
        if done(&o) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}; owners now: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many partitions each host owns.
pub fn counts(o: &BTreeMap<PartitionKey, Vec<(String, u64)>>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for v in o.values() {
        for (h, _) in v {
            *out.entry(h.clone()).or_default() += 1;
        }
    }
    out
}
