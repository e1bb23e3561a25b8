//! Config parsing and checking: paths in errors, defaults, interpolation,
//! NATS bindings, bounds on numbers, redacted URLs.

use super::*;

const GOOD: &str = r#"
    data_dir = "${DATA:-data}"
    [pipeline]
    batch_size = 10
    [topics.orders]
    partitions = 4
    [topics.enriched]
    [handlers.enrich]
    component = "map.wasm"
    subscribe = ["orders"]
    outputs = ["enriched"]
    limits = { deadline_ms = 50 }
    config = { greeting = "${GREETING}" }
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    let env = |v: &str| (v == "GREETING").then(|| "hi".to_string());
    Config::parse(text, Path::new("weir.toml"), Path::new("/etc/weir"), env)
}

fn key_of(text: &str) -> String {
    match parse(text) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected invalid config, got {other:?}"),
    }
}

#[test]
fn parses_defaults_paths_and_variables() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.data_dir, Some(PathBuf::from("/etc/weir/data")));
    assert_eq!(c.topics["orders"].partitions, 4);
    assert_eq!(c.topics["enriched"].partitions, 1);
    let h = &c.handlers["enrich"];
    assert_eq!(h.component, PathBuf::from("/etc/weir/map.wasm"));
    assert_eq!(h.limits.deadline_ms, 50);
    assert_eq!(h.limits.memory_bytes, Limits::default().memory_bytes);
    assert_eq!(h.config["greeting"], "hi");
    assert_eq!(c.pipeline.batch_size, 10);
}

#[test]
fn unknown_keys_are_named_by_path() {
    let text = GOOD.replace("deadline_ms = 50", "dedline_ms = 50");
    assert_eq!(key_of(&text), "handlers.enrich.limits.dedline_ms");
    let text = GOOD.replace("[pipeline]", "[pipeline]\nturbo = true");
    assert_eq!(key_of(&text), "pipeline.turbo");
}

#[test]
fn bad_values_are_named_by_path() {
    let text = GOOD.replace("partitions = 4", "partitions = \"four\"");
    assert_eq!(key_of(&text), "topics.orders.partitions");
    let text = GOOD.replace("partitions = 4", "partitions = 0");
    assert_eq!(key_of(&text), "topics.orders.partitions");
    let text = GOOD.replace("outputs = [\"enriched\"]", "outputs = [\"nowhere\"]");
    assert_eq!(key_of(&text), "handlers.enrich.outputs");
    let text = GOOD.replace("[topics.orders]", "[topics.\"bad name\"]");
    assert!(key_of(&text).starts_with("topics.bad name"));
    // A shadow's topic name is reserved.
    let text = GOOD.replace("[topics.orders]", "[topics.\"orders.shadow.enrich\"]");
    match parse(&text) {
        Err(ConfigError::Invalid { key, message, .. }) => {
            assert_eq!(key, "topics.orders.shadow.enrich");
            assert!(message.contains("reserved"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_toml_and_missing_variables_are_clear() {
    assert!(matches!(parse("[[["), Err(ConfigError::Invalid { .. })));
    let text = GOOD.replace("${GREETING}", "${NOPE}");
    match parse(&text) {
        Err(e @ ConfigError::MissingVar { .. }) => assert!(e.to_string().contains("NOPE")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn nats_bindings_are_checked() {
    let bound = GOOD.replace(
        "partitions = 4",
        "partitions = 4\nnats = { stream = \"ORDERS\", subject = \"orders.{partition}\" }",
    );
    assert_eq!(key_of(&bound), "topics.orders.nats.stream");
    let with_nats = format!(
        "{bound}\n[nats]\nurls = [\"nats://127.0.0.1:4333\"]\ncredentials_file = \"weir.creds\""
    );
    let c = parse(&with_nats).unwrap();
    let b = c.topics["orders"].nats.as_ref().unwrap();
    assert_eq!(b.subject_of(3), "orders.3");
    assert_eq!(b.msg_id_header, "Nats-Msg-Id");
    assert!(b.create_stream);
    let nats = c.nats.unwrap();
    assert_eq!(
        nats.credentials_file,
        Some(PathBuf::from("/etc/weir/weir.creds"))
    );
    assert_eq!(nats.ack_timeout_ms, 5_000);
    let one_subject = with_nats.replace("orders.{partition}", "orders");
    assert_eq!(key_of(&one_subject), "topics.orders.nats.subject");
    let no_urls = with_nats.replace("urls = [\"nats://127.0.0.1:4333\"]", "urls = []");
    assert_eq!(key_of(&no_urls), "nats.urls");
}

#[test]
fn cluster_section_is_checked() {
    let nats = "[nats]\nurls = [\"nats://127.0.0.1:4222\"]\n";
    let text = format!("{GOOD}\n{nats}[cluster]\nname = \"prod\"\nlease_ttl_ms = 6000\n");
    let c = parse(&text).unwrap().cluster.unwrap();
    assert_eq!(c.name, "prod");
    assert_eq!(c.lease_ttl_ms, 6_000);
    assert_eq!(
        c.renew_interval_ms,
        ClusterConfig::default().renew_interval_ms
    );
    let typo = format!("{GOOD}\n{nats}[cluster]\nlease_tll_ms = 6000\n");
    assert_eq!(key_of(&typo), "cluster.lease_tll_ms");
    let slow = format!("{GOOD}\n{nats}[cluster]\nrenew_interval_ms = 9000\n");
    assert_eq!(key_of(&slow), "cluster.renew_interval_ms");
    let no_nats = format!("{GOOD}\n[cluster]\n");
    assert_eq!(key_of(&no_nats), "cluster");
}

#[test]
fn interpolation_escapes_and_defaults() {
    let env = |_: &str| None;
    assert_eq!(interpolate("a$${b}c", &env).unwrap(), "a${b}c");
    assert_eq!(interpolate("${X:-}", &env).unwrap(), "");
    assert_eq!(interpolate("x${Y:-1}y", &env).unwrap(), "x1y");
}

#[test]
fn numbers_that_would_overflow_are_refused_with_their_key() {
    let text = GOOD.replace(
        "partitions = 4",
        "partitions = 4\nretention_secs = 9223372036854775807",
    );
    assert_eq!(key_of(&text), "topics.orders.retention_secs");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("out of range"), "{err}");
    let text = GOOD.replace("batch_size = 10", "linger_ms = 18446744073709551615");
    assert_eq!(key_of(&text), "pipeline.linger_ms");
    let text = GOOD.replace("batch_size = 10", "max_dead_letters = 0");
    assert_eq!(key_of(&text), "pipeline.max_dead_letters");
    let text = format!("{GOOD}\n[admin]\nheader_read_timeout_ms = 0");
    assert_eq!(key_of(&text), "admin.header_read_timeout_ms");
    let text = format!("{GOOD}\n[admin]\nmax_connections = 0");
    assert_eq!(key_of(&text), "admin.max_connections");
    let text = format!("{GOOD}\n[nats]\nack_timeout_ms = 18446744073709551615");
    assert_eq!(key_of(&text), "nats.ack_timeout_ms");
    let at_max = GOOD.replace(
        "partitions = 4",
        &format!(
            "partitions = 4\nretention_secs = {}",
            bounds::RETENTION_SECS
        ),
    );
    assert!(parse(&at_max).is_ok());
}

#[test]
fn credentials_in_urls_are_redacted() {
    assert_eq!(
        redact_urls("nats://weir:hunter2@h:4222,tls://tok@h2,nats://h3:4222"),
        "nats://***@h:4222,tls://***@h2,nats://h3:4222"
    );
    assert_eq!(redact_url("h:4222/a@b"), "h:4222/a@b");
}

#[test]
fn store_durability_defaults_to_power_cut_and_names_bad_values() {
    assert_eq!(parse(GOOD).unwrap().store.durability, Durability::PowerCut);
    let text = format!("{GOOD}\n[store]\ndurability = \"process-crash-only\"\n");
    assert_eq!(
        parse(&text).unwrap().store.durability,
        Durability::ProcessCrashOnly
    );
    let text = format!("{GOOD}\n[store]\ndurability = \"eventually\"\n");
    assert_eq!(key_of(&text), "store.durability");
}
