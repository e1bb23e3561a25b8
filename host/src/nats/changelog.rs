//! Cluster mode's state on the broker: one changelog subject and one
//! snapshot subject per (handler, partition), in two streams per cluster
//! (`weir_<name>_changelog`, `weir_<name>_snapshots`, the latter keeping
//! one message per subject), replicated like the lease buckets.
//!
//! **Fencing.** Every write carries `Nats-Expected-Last-Subject-Sequence`:
//! the broker stores it only if the subject's last message is the one this
//! owner last wrote. A new owner first writes a *fence record* (its epoch,
//! no data) on the current last sequence, so the previous owner's next
//! append is refused by the broker itself, whatever that owner believes
//! about its lease. An owner that finds an entry of a higher epoch on the
//! subject stops. (Not `Nats-Expected-Last-Msg-Id`: it breaks replicated
//! streams on 2.14+.)
//!
//! **Ambiguous writes.** Each write carries a random `Weir-Token`; when an
//! acknowledgement is lost or a precondition fails, the subject's last
//! message (read from the stream leader) tells whether the write landed.
//!
//! **Snapshots** are written on the snapshot subject's last sequence too,
//! with the changelog sequence they cover (`Weir-Covers`). Entries are
//! purged up to the cover of the snapshot a new one replaces (two
//! generations), so an owner restoring from the current snapshot, or a
//! local copy at least that recent, always finds the entries after it even
//! while a stale owner is still writing snapshots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self, consumer,
    context::PublishErrorKind,
    stream::{self, LastRawMessageErrorKind},
};
use futures_util::StreamExt as _;

use super::Nats;
use crate::cluster::ClusterConfig;
use crate::connector::{Changelog, ChangelogError, Restore};

const EXPECTED_LAST: &str = "Nats-Expected-Last-Subject-Sequence";
const EPOCH: &str = "Weir-Epoch";
const KIND: &str = "Weir-Kind";
const TOKEN: &str = "Weir-Token";
const COVERS: &str = "Weir-Covers";
const FENCE: &str = "fence";
const BATCH: &str = "batch";

/// The changelog stream's name.
pub fn changelog_stream(cluster: &str) -> String {
    format!("weir_{cluster}_changelog")
}

/// The snapshot stream's name.
pub fn snapshot_stream(cluster: &str) -> String {
    format!("weir_{cluster}_snapshots")
}

fn changelog_subject(cluster: &str, handler: &str, partition: u32) -> String {
    format!("weir.{cluster}.changelog.{handler}.{partition}")
}

fn snapshot_subject(cluster: &str, handler: &str, partition: u32) -> String {
    format!("weir.{cluster}.snapshot.{handler}.{partition}")
}

/// The two streams' configs for `cluster`.
pub(super) fn stream_configs(cluster: &ClusterConfig) -> [stream::Config; 2] {
    let name = &cluster.name;
    [
        stream::Config {
            name: changelog_stream(name),
            subjects: vec![format!("weir.{name}.changelog.>")],
            storage: stream::StorageType::File,
            num_replicas: cluster.replicas,
            description: Some("weir cluster mode: one entry per committed batch".into()),
            ..Default::default()
        },
        stream::Config {
            name: snapshot_stream(name),
            subjects: vec![format!("weir.{name}.snapshot.>")],
            storage: stream::StorageType::File,
            num_replicas: cluster.replicas,
            max_messages_per_subject: 1,
            description: Some("weir cluster mode: the last snapshot per partition".into()),
            ..Default::default()
        },
    ]
}

/// The last message of a subject, as far as fencing cares.
struct Last {
    sequence: u64,
    epoch: u64,
    token: Option<String>,
    covers: u64,
    time_ms: u64,
    payload: bytes::Bytes,
}

/// One (handler, partition)'s changelog, used by its owner of `epoch`.
pub(super) struct NatsChangelog {
    nats: Arc<Nats>,
    changelog: String,
    snapshots: String,
    subject: String,
    snapshot_subject: String,
    epoch: u64,
    /// The subject's last sequence as this owner wrote it.
    last: u64,
    /// The snapshot subject's last sequence, and the entry it covers.
    snapshot_seq: u64,
    snapshot_covers: u64,
}

impl NatsChangelog {
    pub(super) fn new(
        nats: Arc<Nats>,
        cluster: &ClusterConfig,
        handler: &str,
        partition: u32,
        epoch: u64,
    ) -> Self {
        Self {
            changelog: changelog_stream(&cluster.name),
            snapshots: snapshot_stream(&cluster.name),
            subject: changelog_subject(&cluster.name, handler, partition),
            snapshot_subject: snapshot_subject(&cluster.name, handler, partition),
            nats,
            epoch,
            last: 0,
            snapshot_seq: 0,
            snapshot_covers: 0,
        }
    }

    /// The last message on `subject` of `stream`, read from the stream's
    /// leader; `Ok(None)` if the subject has none.
    async fn last_of(&self, stream: &str, subject: &str) -> Result<Option<Last>, String> {
        let stream = self
            .nats
            .js
            .get_stream_no_info(stream)
            .await
            .map_err(|e| e.to_string())?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => {
                let header = |name: &str| m.headers.get(name).map(|v| v.as_str().to_string());
                let number = |name: &str| header(name).and_then(|v| v.parse().ok()).unwrap_or(0);
                Ok(Some(Last {
                    sequence: m.sequence,
                    epoch: number(EPOCH),
                    token: header(TOKEN),
                    covers: number(COVERS),
                    time_ms: u64::try_from(m.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
                    payload: m.payload,
                }))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn headers(&self, kind: &str, token: &str, expected: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(EXPECTED_LAST, expected.to_string().as_str());
        h.insert(EPOCH, self.epoch.to_string().as_str());
        h.insert(KIND, kind);
        h.insert(TOKEN, token);
        h
    }

    /// Write one message of `kind` on the changelog subject after
    /// `self.last`; returns its sequence. Retries a broker that does not
    /// answer until `until`; a subject that moved on without this write is
    /// a fence.
    async fn write(
        &mut self,
        kind: &str,
        payload: bytes::Bytes,
        until: Instant,
    ) -> Result<u64, ChangelogError> {
        let token = fastrand::u64(..).to_string();
        let mut failures = 0u32;
        loop {
            if Instant::now() >= until {
                return Err(ChangelogError::Unavailable(format!(
                    "no answer from JetStream for {} before the lease ran out",
                    self.subject
                )));
            }
            let headers = self.headers(kind, &token, self.last);
            let published = async {
                self.nats
                    .js
                    .publish_with_headers(self.subject.clone(), headers, payload.clone())
                    .await?
                    .await
            };
            let left = until.saturating_duration_since(Instant::now());
            let error = match tokio::time::timeout(left, published).await {
                Ok(Ok(ack)) => {
                    self.last = ack.sequence;
                    return Ok(ack.sequence);
                }
                Ok(Err(e)) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    return Err(ChangelogError::Unavailable(format!(
                        "a changelog entry of {} bytes is over the server's max_payload: lower pipeline.batch_size",
                        payload.len()
                    )));
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_string(),
            };
            // Did it land, is the subject where we left it, or did someone
            // else write?
            match self.last_of(&self.changelog, &self.subject).await {
                Ok(Some(last)) if last.token.as_deref() == Some(token.as_str()) => {
                    self.last = last.sequence;
                    return Ok(last.sequence);
                }
                Ok(last) => {
                    let (seq, epoch) = last.map_or((0, 0), |l| (l.sequence, l.epoch));
                    if seq != self.last {
                        return Err(ChangelogError::Fenced(format!(
                            "{} moved to sequence {seq} (epoch {epoch}) past this owner's {} (epoch {})",
                            self.subject, self.last, self.epoch
                        )));
                    }
                }
                Err(_) => {}
            }
            failures += 1;
            if super::worth_logging(failures, 10) {
                tracing::warn!(subject = %self.subject, error, "changelog write failed; retrying");
            }
            tokio::time::sleep(super::backoff(failures).min(Duration::from_millis(500))).await;
        }
    }

    /// Batch entries on the subject with sequences in `from..=to`, fences
    /// left out, with the bytes read.
    async fn read_entries(
        &self,
        from: u64,
        to: u64,
        until: Instant,
    ) -> Result<(Vec<(u64, Vec<u8>)>, u64), String> {
        let mut out = Vec::new();
        let mut bytes = 0u64;
        if from > to {
            return Ok((out, bytes));
        }
        let stream = self
            .nats
            .js
            .get_stream_no_info(&self.changelog)
            .await
            .map_err(|e| e.to_string())?;
        let config = consumer::pull::OrderedConfig {
            filter_subject: self.subject.clone(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            },
            ..Default::default()
        };
        let consumer = stream
            .create_consumer(config)
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let msg = match tokio::time::timeout(left, messages.next()).await {
                Ok(Some(Ok(msg))) => msg,
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(None) => return Err("consumer closed".into()),
                Err(_) => return Err("timed out reading the changelog".into()),
            };
            let sequence = msg.info().map_err(|e| e.to_string())?.stream_sequence;
            if sequence > to {
                return Ok((out, bytes));
            }
            bytes += msg.payload.len() as u64;
            let kind = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(KIND))
                .map(|v| v.as_str().to_string());
            if kind.as_deref() == Some(BATCH) {
                out.push((sequence, msg.payload.to_vec()));
            }
            if sequence >= to {
                return Ok((out, bytes));
            }
        }
    }

    async fn open_async(
        &mut self,
        applied: u64,
        until: Instant,
    ) -> Result<Restore, ChangelogError> {
        let unavailable = |e: String| ChangelogError::Unavailable(e);
        // Fence: our record on whatever the subject's last sequence is.
        let mut last_write_ms = None;
        loop {
            if Instant::now() >= until {
                return Err(unavailable(format!(
                    "cannot fence {} before the lease ran out",
                    self.subject
                )));
            }
            let last = loop {
                match self.last_of(&self.changelog, &self.subject).await {
                    Ok(last) => break last,
                    Err(e) if Instant::now() >= until => return Err(unavailable(e)),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            if let Some(l) = &last {
                if l.epoch > self.epoch {
                    return Err(ChangelogError::Fenced(format!(
                        "{} already holds an entry of epoch {} (this owner's is {})",
                        self.subject, l.epoch, self.epoch
                    )));
                }
                last_write_ms = Some(l.time_ms);
            }
            self.last = last.map_or(0, |l| l.sequence);
            match self.write(FENCE, bytes::Bytes::new(), until).await {
                Ok(_) => break,
                // Someone wrote between our read and our fence: read again.
                Err(ChangelogError::Fenced(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        let fence = self.last;
        let snapshot = self
            .last_of(&self.snapshots, &self.snapshot_subject)
            .await
            .map_err(unavailable)?;
        let (snapshot_seq, covers) = snapshot.as_ref().map_or((0, 0), |s| (s.sequence, s.covers));
        self.snapshot_seq = snapshot_seq;
        self.snapshot_covers = covers;
        // A local copy at least as recent as the snapshot needs only the
        // entries after it (they are kept: see the module doc).
        let local_usable = applied > 0 && applied >= covers && applied < fence;
        let (from, snapshot_body) = if local_usable {
            (applied + 1, None)
        } else {
            let body = snapshot.map(|s| s.payload.to_vec()).unwrap_or_default();
            (covers + 1, Some(body))
        };
        let (entries, bytes) = self
            .read_entries(from, fence, until)
            .await
            .map_err(unavailable)?;
        let snapshot_bytes = snapshot_body.as_ref().map_or(0, |b| b.len() as u64);
        Ok(Restore {
            snapshot: snapshot_body,
            entries,
            last: fence,
            bytes: bytes + snapshot_bytes,
            last_write_ms,
        })
    }

    async fn snapshot_async(&mut self, covers: u64, body: Vec<u8>) -> Result<(), ChangelogError> {
        let limit = self
            .nats
            .client
            .server_info()
            .max_payload
            .saturating_sub(4096);
        if body.len() > limit {
            return Err(ChangelogError::Unavailable(format!(
                "a snapshot of {} bytes is over the server's max_payload; restore reads the changelog instead",
                body.len()
            )));
        }
        let token = fastrand::u64(..).to_string();
        let mut headers = self.headers("snapshot", &token, self.snapshot_seq);
        headers.insert(COVERS, covers.to_string().as_str());
        let published = async {
            self.nats
                .js
                .publish_with_headers(self.snapshot_subject.clone(), headers, body.into())
                .await?
                .await
        };
        match published.await {
            Ok(ack) => {
                let replaced = std::mem::replace(&mut self.snapshot_covers, covers);
                self.snapshot_seq = ack.sequence;
                if replaced > 0 {
                    self.purge_through(replaced).await;
                }
                Ok(())
            }
            Err(e) => {
                // Another owner wrote a snapshot: learn where it stands.
                if let Ok(Some(s)) = self.last_of(&self.snapshots, &self.snapshot_subject).await {
                    self.snapshot_seq = s.sequence;
                    self.snapshot_covers = s.covers;
                }
                Err(ChangelogError::Unavailable(e.to_string()))
            }
        }
    }

    /// Drop the subject's entries up to and including `sequence`.
    async fn purge_through(&self, sequence: u64) {
        let purged = async {
            let stream = self.nats.js.get_stream_no_info(&self.changelog).await?;
            stream
                .purge()
                .filter(self.subject.clone())
                .sequence(sequence + 1)
                .await?;
            Ok::<_, async_nats::Error>(())
        };
        if let Err(e) = purged.await {
            tracing::debug!(subject = %self.subject, error = %e, "cannot trim the changelog; the next snapshot tries again");
        }
    }
}

impl Changelog for NatsChangelog {
    fn open(&mut self, applied: u64, until: Instant) -> Result<Restore, ChangelogError> {
        let runtime = self.nats.runtime.clone();
        runtime.block_on(self.open_async(applied, until))
    }

    fn append(&mut self, entry: Vec<u8>, until: Instant) -> Result<u64, ChangelogError> {
        let runtime = self.nats.runtime.clone();
        runtime.block_on(self.write(BATCH, entry.into(), until))
    }

    fn snapshot(&mut self, covers: u64, body: Vec<u8>) -> Result<(), ChangelogError> {
        let runtime = self.nats.runtime.clone();
        runtime.block_on(self.snapshot_async(covers, body))
    }
}

/// Make `js` hold both streams of `cluster`.
pub(super) async fn ensure_streams(
    js: &jetstream::Context,
    cluster: &ClusterConfig,
) -> Result<(), String> {
    for config in stream_configs(cluster) {
        let name = config.name.clone();
        js.get_or_create_stream(config)
            .await
            .map_err(|e| format!("stream `{name}`: {e}"))?;
    }
    Ok(())
}
