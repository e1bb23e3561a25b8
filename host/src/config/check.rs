//! The checks a whole configuration must pass after parsing, each failure
//! naming its key (`pipeline.batch_size`, `admin.token`, ...); a handler
//! spec's own rules are [`super::HandlerSpec::check`].

use super::*;

impl Config {
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if self.pipeline.batch_size == 0 || self.pipeline.batch_size > 100_000 {
            return Err(("pipeline.batch_size".into(), "must be 1..=100000".into()));
        }
        at_most(
            "pipeline.linger_ms",
            self.pipeline.linger_ms,
            bounds::LINGER_MS,
        )?;
        in_range(
            "pipeline.max_dead_letters",
            self.pipeline.max_dead_letters,
            1..=bounds::DEAD_LETTERS,
        )?;
        self.check_admin()?;
        self.telemetry
            .check()
            .map_err(|(k, m)| (format!("telemetry.{k}"), m))?;
        for (name, topic) in &self.topics {
            check_name(name).map_err(|m| (format!("topics.{name}"), m))?;
            if name.contains(".shadow.") {
                return Err((
                    format!("topics.{name}"),
                    "`.shadow.` is reserved for the topics shadow revisions write (`<topic>.shadow.<handler>`): choose another name".into(),
                ));
            }
            if topic.partitions == 0 || topic.partitions > 1024 {
                return Err((
                    format!("topics.{name}.partitions"),
                    "must be 1..=1024".into(),
                ));
            }
            let key = |k: &str| format!("topics.{name}.{k}");
            at_most(
                &key("retention_secs"),
                topic.retention_secs,
                bounds::RETENTION_SECS,
            )?;
            at_most(
                &key("retention_bytes"),
                topic.retention_bytes,
                bounds::RETENTION_BYTES,
            )?;
            if let Some(nats) = &topic.nats {
                let key = |k: &str| format!("topics.{name}.nats.{k}");
                if self.nats.is_none() {
                    return Err((
                        key("stream"),
                        "the topic is bound to NATS but there is no [nats] section".into(),
                    ));
                }
                check_name(&nats.stream).map_err(|m| (key("stream"), m))?;
                if nats.subject.is_empty() || nats.subject.contains([' ', '>']) {
                    return Err((
                        key("subject"),
                        "must be a subject without spaces or `>`".into(),
                    ));
                }
                if topic.partitions > 1 && !nats.subject.contains("{partition}") {
                    return Err((
                        key("subject"),
                        "a topic with several partitions needs `{partition}` in its subject".into(),
                    ));
                }
            }
        }
        if let Some(nats) = &self.nats {
            if nats.urls.is_empty() {
                return Err(("nats.urls".into(), "give at least one server URL".into()));
            }
            if nats.tls_cert_file.is_some() != nats.tls_key_file.is_some() {
                return Err((
                    "nats.tls_cert_file".into(),
                    "tls_cert_file and tls_key_file go together".into(),
                ));
            }
            if nats.user.is_some() != nats.password.is_some() {
                return Err(("nats.user".into(), "user and password go together".into()));
            }
            in_range(
                "nats.ack_timeout_ms",
                nats.ack_timeout_ms,
                1..=bounds::ACK_TIMEOUT_MS,
            )?;
        }
        if let Some(cluster) = &self.cluster {
            if self.nats.is_none() {
                return Err((
                    "cluster".into(),
                    "cluster mode keeps its leases in NATS JetStream: add a [nats] section".into(),
                ));
            }
            cluster.check()?;
        }
        for (name, h) in &self.handlers {
            let key = |k: &str| format!("handlers.{name}.{k}");
            check_name(name).map_err(|m| (format!("handlers.{name}"), m))?;
            h.check().map_err(|(k, m)| (key(&k), m))?;
            for (field, topics) in [("subscribe", &h.subscribe), ("outputs", &h.outputs)] {
                if let Some(t) = topics.iter().find(|t| !self.topics.contains_key(*t)) {
                    return Err((
                        key(field),
                        format!("unknown topic `{t}`; declare it under [topics.{t}]"),
                    ));
                }
            }
            if let Some(t) = h.outputs.iter().find(|t| {
                self.topics[*t]
                    .nats
                    .as_ref()
                    .is_some_and(|n| n.subject.contains('*'))
            }) {
                return Err((
                    key("outputs"),
                    format!("topic `{t}` is published to NATS, so its subject cannot hold `*`"),
                ));
            }
        }
        Ok(())
    }

    fn check_admin(&self) -> Result<(), (String, String)> {
        let a = &self.admin;
        in_range(
            "admin.max_body_bytes",
            a.max_body_bytes,
            1..=bounds::BODY_BYTES,
        )?;
        in_range(
            "admin.max_component_bytes",
            a.max_component_bytes,
            1..=bounds::COMPONENT_BYTES,
        )?;
        in_range(
            "admin.header_read_timeout_ms",
            a.header_read_timeout_ms,
            bounds::HEADER_READ_TIMEOUT_MS,
        )?;
        in_range(
            "admin.max_connections",
            a.max_connections,
            1..=bounds::CONNECTIONS,
        )
    }
}

pub(super) fn at_most(key: &str, value: u64, max: u64) -> Result<(), (String, String)> {
    in_range(key, value, 0..=max)
}

pub(super) fn in_range<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), (String, String)> {
    if range.contains(&value) {
        return Ok(());
    }
    Err((
        key.to_string(),
        format!(
            "{value} is out of range: must be {}..={}",
            range.start(),
            range.end()
        ),
    ))
}
