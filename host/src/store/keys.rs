//! Key construction for every prefix of the keyspace (the table is in the
//! [`store`](super) module doc), and decoding the offset that ends a key.

fn join(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(prefix);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(b'/');
        }
        k.extend_from_slice(p);
    }
    k
}

/// `t/topic`
pub fn topic(topic: &str) -> Vec<u8> {
    join(b"t/", &[topic.as_bytes()])
}
/// `l/topic/<p>`: prefix of one partition's records.
pub fn log_partition(topic: &str, partition: u32) -> Vec<u8> {
    join(b"l/", &[topic.as_bytes(), &partition.to_be_bytes()])
}
/// `l/topic/<p><offset>`
pub fn log(topic: &str, partition: u32, offset: u64) -> Vec<u8> {
    let mut k = log_partition(topic, partition);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}
/// `f/topic/<p>`: the offset after the last record removed.
pub fn floor(topic: &str, partition: u32) -> Vec<u8> {
    join(b"f/", &[topic.as_bytes(), &partition.to_be_bytes()])
}
/// `c/handler/topic/<p>`
pub fn cursor(handler: &str, topic: &str, partition: u32) -> Vec<u8> {
    join(
        b"c/",
        &[
            handler.as_bytes(),
            topic.as_bytes(),
            &partition.to_be_bytes(),
        ],
    )
}
/// `e/handler/<p>`
pub fn epoch(handler: &str, partition: u32) -> Vec<u8> {
    join(b"e/", &[handler.as_bytes(), &partition.to_be_bytes()])
}
/// `d/handler/topic/<p>`: prefix of one partition's dedup marks.
pub fn dedup_partition(handler: &str, topic: &str, partition: u32) -> Vec<u8> {
    join(
        b"d/",
        &[
            handler.as_bytes(),
            topic.as_bytes(),
            &partition.to_be_bytes(),
        ],
    )
}
/// `d/handler/topic/<p>id`
pub fn dedup(handler: &str, topic: &str, partition: u32, id: &str) -> Vec<u8> {
    let mut k = dedup_partition(handler, topic, partition);
    k.extend_from_slice(id.as_bytes());
    k
}
/// `s/handler/<p>`: prefix of one partition's state.
pub fn state_partition(handler: &str, partition: u32) -> Vec<u8> {
    join(b"s/", &[handler.as_bytes(), &partition.to_be_bytes()])
}
/// `s/handler/<p>key`
pub fn state(handler: &str, partition: u32, key: &str) -> Vec<u8> {
    let mut k = state_partition(handler, partition);
    k.extend_from_slice(key.as_bytes());
    k
}
/// `x/handler/`: prefix of a handler's dead letters.
pub fn dead_handler(handler: &str) -> Vec<u8> {
    join(b"x/", &[handler.as_bytes(), b""])
}
/// `h/handler`
pub fn handler(handler: &str) -> Vec<u8> {
    join(b"h/", &[handler.as_bytes()])
}
/// `k/handler`: its canary, running and last ended (`handlers::CanaryRecord`).
pub fn canary(handler: &str) -> Vec<u8> {
    join(b"k/", &[handler.as_bytes()])
}
/// `m/records`: the format of the handler records (`handlers/migrate.rs`).
pub fn records_format() -> Vec<u8> {
    b"m/records".to_vec()
}
/// `j/topic`: the topic's schema versions and compatibility mode.
pub fn schema(topic: &str) -> Vec<u8> {
    join(b"j/", &[topic.as_bytes()])
}
/// `w/handler`: the handler's shadow revision (`handlers::shadow`).
pub fn shadow(handler: &str) -> Vec<u8> {
    join(b"w/", &[handler.as_bytes()])
}
/// `d/handler/`: prefix of every dedup mark of `handler`.
pub fn dedup_handler(handler: &str) -> Vec<u8> {
    join(b"d/", &[handler.as_bytes(), b""])
}
/// `g/handler/<p>`: the last changelog sequence applied (cluster mode).
pub fn changelog(handler: &str, partition: u32) -> Vec<u8> {
    join(b"g/", &[handler.as_bytes(), &partition.to_be_bytes()])
}
/// Every prefix holding keys of `handler` (cursors, epochs, dedup marks,
/// state, dead letters, replay queue, changelog position).
pub fn handler_prefixes(handler: &str) -> Vec<Vec<u8>> {
    [b"c/", b"e/", b"d/", b"s/", b"x/", b"q/", b"g/"]
        .iter()
        .map(|p| join(*p, &[handler.as_bytes(), b""]))
        .collect()
}
/// `q/handler/<p>`: prefix of one partition's replay queue.
pub fn replay_partition(handler: &str, partition: u32) -> Vec<u8> {
    join(b"q/", &[handler.as_bytes(), &partition.to_be_bytes()])
}
/// `q/handler/<p>topic/<offset>`
pub fn replay(handler: &str, partition: u32, topic: &str, offset: u64) -> Vec<u8> {
    let mut k = replay_partition(handler, partition);
    k.extend_from_slice(topic.as_bytes());
    k.push(b'/');
    k.extend_from_slice(&offset.to_be_bytes());
    k
}
/// `x/handler/topic/<p>`: prefix of one partition's dead letters.
pub fn dead_partition(handler: &str, topic: &str, partition: u32) -> Vec<u8> {
    join(
        b"x/",
        &[
            handler.as_bytes(),
            topic.as_bytes(),
            &partition.to_be_bytes(),
        ],
    )
}
/// `x/handler/topic/<p><offset>`
pub fn dead(handler: &str, topic: &str, partition: u32, offset: u64) -> Vec<u8> {
    let mut k = dead_partition(handler, topic, partition);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// The offset that ends a log, dead-letter or replay key (the last 8
/// bytes, big-endian).
pub fn offset_in(key: &[u8]) -> super::Result<u64> {
    super::decode_u64(key, &key[key.len().saturating_sub(8)..])
}
