//! The order saga of `examples/saga/` under SIGKILL: orders → inventory
//! reservation → payment, with a compensating release for every declined
//! payment, three handlers chained through four topics. Hundreds of orders
//! (some malformed, some re-sent by a retrying producer), the host killed
//! several times while the saga is in flight; then drain and check the
//! saga's invariants from what the topics hold.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use weir_e2e::{Host, eventually, guest, header};

const ORDERS: usize = 600;
const KILLS: usize = 6;
// ORDERS / CHUNK / KILL_EVERY must reach KILLS.
const CHUNK: usize = 50;
const KILL_EVERY: usize = 2;
const PARTITIONS: u32 = 3;
/// Units of each SKU before the first order; demand is well above it.
const STOCK: u64 = 100;
/// Keys spreading over all three partitions, two SKUs sharing one
/// (CRC-32 mod 3: apples 2, pears 0, figs 1, kiwis 0).
const SKUS: [&str; 4] = ["apples", "pears", "figs", "kiwis"];
/// How many orders in twenty ask for each SKU: the first three sell out,
/// kiwis (about 60 orders, 90 units not declined) usually keep some stock.
const WEIGHTS: [u8; 4] = [7, 6, 5, 2];

fn config() -> String {
    config_with(PARTITIONS, STOCK, "")
}

/// The saga's config with `partitions` per topic, `stock` units of each
/// SKU, and `extra` TOML (a `[telemetry]` section) before the topics.
pub(crate) fn config_with(partitions: u32, stock: u64, extra: &str) -> String {
    let mut topics = String::new();
    for topic in [
        "orders",
        "order-placed",
        "reservations",
        "compensations",
        "order-results",
    ] {
        topics.push_str(&format!("[topics.{topic}]\npartitions = {partitions}\n"));
    }
    format!(
        r#"
[pipeline]
batch_size = 8
linger_ms = 1

{extra}

{topics}
[handlers.orders]
component = "{orders}"
subscribe = ["orders"]
outputs = ["order-placed"]

[handlers.inventory]
component = "{inventory}"
subscribe = ["order-placed", "compensations"]
outputs = ["reservations", "order-results"]
config = {{ initial_stock = "{stock}" }}

[handlers.payment]
component = "{payment}"
subscribe = ["reservations"]
outputs = ["compensations", "order-results"]
"#,
        orders = guest("saga-orders").display(),
        inventory = guest("saga-inventory").display(),
        payment = guest("saga-payment").display(),
    )
}

/// The producer's events, and the message IDs of the malformed ones. Each
/// order has its own `order_id`; about one in sixteen events is a producer
/// retry re-sending an earlier event whole (same message ID, key, payload).
fn workload() -> (Vec<Value>, HashSet<String>) {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut events: Vec<Value> = Vec::with_capacity(ORDERS);
    let mut malformed = HashSet::new();
    for i in 0..ORDERS {
        if i > 10 && rng.u8(0..16) == 0 {
            let earlier = events[rng.usize(0..events.len())].clone();
            events.push(earlier);
            continue;
        }
        let id = format!("m-{i}");
        let sku = pick_sku(rng.u8(0..20));
        let card = if rng.u8(0..4) == 0 { "declined" } else { "ok" };
        let mut order = json!({
            "order_id": format!("o-{i}"),
            "sku": sku,
            "qty": rng.u64(1..=3),
            "amount_cents": rng.u64(100..10_000),
            "card": card,
        });
        if i % 53 == 7 {
            match (i / 53) % 4 {
                0 => order["qty"] = json!(0),
                1 => order["card"] = json!("maybe"),
                2 => {
                    order.as_object_mut().unwrap().remove("sku");
                }
                _ => order = json!("not an order"),
            }
            malformed.insert(id.clone());
        }
        events.push(json!({"id": id, "key": sku, "payload": order}));
    }
    (events, malformed)
}

/// The SKU for a number in `0..20`, by [`WEIGHTS`].
fn pick_sku(mut n: u8) -> &'static str {
    for (sku, weight) in SKUS.iter().zip(WEIGHTS) {
        if n < weight {
            return sku;
        }
        n -= weight;
    }
    unreachable!("weights add up to 20")
}

/// What the producer meant: each valid order by `order_id`, each malformed
/// message ID.
struct Expected {
    orders: BTreeMap<String, Value>,
    malformed: HashSet<String>,
}

impl Expected {
    fn from(events: &[Value], malformed: &HashSet<String>) -> Self {
        let mut orders = BTreeMap::new();
        for e in events {
            if !malformed.contains(e["id"].as_str().unwrap()) {
                let order = e["payload"].clone();
                orders.insert(order["order_id"].as_str().unwrap().to_string(), order);
            }
        }
        Self {
            orders,
            malformed: malformed.clone(),
        }
    }
}

fn dead_letters(host: &Host, handler: &str) -> Vec<Value> {
    host.get(&format!("/v1/handlers/{handler}/dead-letters"))["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn saga_invariants_hold_despite_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &config());
    let (events, malformed) = workload();
    let expect = Expected::from(&events, &malformed);
    let lines: Vec<String> = events.iter().map(Value::to_string).collect();

    let mut kills = 0;
    let mut interrupted = 0;
    let mut published = HashSet::new();
    for (n, batch) in lines.chunks(CHUNK).enumerate() {
        host.publish_acked("orders", batch);
        published.extend(
            events[n * CHUNK..n * CHUNK + batch.len()]
                .iter()
                .filter(|e| !malformed.contains(e["id"].as_str().unwrap()))
                .map(|e| e["payload"]["order_id"].as_str().unwrap().to_string()),
        );
        if n % KILL_EVERY == KILL_EVERY - 1 && kills < KILLS {
            // Kill mid-saga; outstanding work: fewer outcomes than valid orders.
            kills += 1;
            if host.kill_mid_work("order-results", published.len() as u64, 20) {
                interrupted += 1;
            }
        }
    }
    eprintln!("killed {kills} times, {interrupted} with work outstanding");
    assert!(kills >= 5, "killed {kills} times");
    assert!(interrupted >= 4, "only {interrupted} kills landed mid-saga");

    eventually(Duration::from_secs(60), "the saga to drain", || {
        let outcomes = host.topic_total("order-results");
        let dead = dead_letters(&host, "orders").len();
        (outcomes >= expect.orders.len() as u64 && dead >= expect.malformed.len()).then_some(())
    });
    // Give any stray duplicate or late compensation time to show up.
    std::thread::sleep(Duration::from_millis(500));

    let topics = Topics::read(&host);
    let (placed, reserved) = check_placed_and_reserved(&topics, &expect);
    let compensations = check_compensations(&topics, &expect, &reserved);
    check_results(&topics, &expect, (&placed, &reserved, &compensations));
    let confirmed = check_stock(&topics, &reserved, &compensations);
    check_dead_letters(&host, &expect);
    check_shelves(&host, &confirmed);
}

/// Every event of the saga's output topics, by topic.
struct Topics {
    placed: Vec<Value>,
    reservations: Vec<Value>,
    compensations: Vec<Value>,
    results: Vec<Value>,
}

impl Topics {
    /// Read them all, checking on the way that no output ID appears twice in
    /// a topic, that each input gave a topic at most one output, and that
    /// each output came from a handler allowed to write it.
    fn read(host: &Host) -> Self {
        let read = |topic: &str, writers: &[&str]| {
            let events: Vec<Value> = host.read_all(topic).into_iter().flatten().collect();
            let mut ids = HashSet::new();
            let mut sources = HashSet::new();
            for e in &events {
                let id = e["id"].as_str().unwrap();
                assert!(ids.insert(id.to_string()), "{topic}: output ID {id} twice");
                let handler = header(e, "weir-handler").expect("weir-handler header");
                assert!(writers.contains(&handler), "{topic}: written by {handler}");
                let source = header(e, "weir-source-id").expect("weir-source-id header");
                assert!(
                    sources.insert((handler.to_string(), source.to_string())),
                    "{topic}: {handler} emitted twice for input {source}"
                );
                assert_eq!(id, format!("{handler}/{source}/0"), "{topic}: output ID");
            }
            events
        };
        Self {
            placed: read("order-placed", &["orders"]),
            reservations: read("reservations", &["inventory"]),
            compensations: read("compensations", &["payment"]),
            results: read("order-results", &["inventory", "payment"]),
        }
    }
}

/// A topic's events by `order_id`.
type ByOrder = BTreeMap<String, Value>;

/// Index a topic's events by `order_id`, asserting each is a valid order's,
/// keyed by its SKU, and appears at most once.
fn by_order(topic: &str, events: &[Value], expect: &Expected) -> ByOrder {
    let mut out = BTreeMap::new();
    for e in events {
        let order_id = e["payload"]["order_id"].as_str().unwrap().to_string();
        let order = expect
            .orders
            .get(&order_id)
            .unwrap_or_else(|| panic!("{topic}: {order_id} is no valid order: {e}"));
        assert_eq!(e["key"], order["sku"], "{topic}: key of {order_id}");
        if let Some(earlier) = out.insert(order_id.clone(), e.clone()) {
            panic!("{topic}: order {order_id} twice:\n{earlier}\n{e}");
        }
    }
    out
}

/// The event `e` was emitted while handling `input` (by `handler`).
fn assert_caused_by(e: &Value, handler: &str, input: &Value, what: &str) {
    assert_eq!(header(e, "weir-handler"), Some(handler), "{what}: handler");
    assert_eq!(
        header(e, "weir-source-id"),
        input["id"].as_str(),
        "{what}: lineage"
    );
}

/// Each valid order is placed exactly once, unchanged; a reservation, when
/// there is one, carries the order and `"status": "reserved"` and comes from
/// its placement. Returns the placed and the reserved orders by `order_id`.
fn check_placed_and_reserved(topics: &Topics, expect: &Expected) -> (ByOrder, ByOrder) {
    let placed = by_order("order-placed", &topics.placed, expect);
    assert_eq!(
        placed.keys().collect::<Vec<_>>(),
        expect.orders.keys().collect::<Vec<_>>(),
        "placed orders"
    );
    for (order_id, e) in &placed {
        assert_eq!(e["payload"], expect.orders[order_id], "placed {order_id}");
    }
    let reserved = by_order("reservations", &topics.reservations, expect);
    for (order_id, e) in &reserved {
        let mut want = expect.orders[order_id].clone();
        want["status"] = json!("reserved");
        assert_eq!(e["payload"], want, "reservation of {order_id}");
        assert_caused_by(e, "inventory", &placed[order_id], order_id);
    }
    (placed, reserved)
}

/// Exactly the reserved orders with a declined card are compensated, once
/// each, by the payment of their reservation. Returns the compensations by
/// `order_id`.
fn check_compensations(topics: &Topics, expect: &Expected, reserved: &ByOrder) -> ByOrder {
    let compensations = by_order("compensations", &topics.compensations, expect);
    for (order_id, e) in &compensations {
        let order = &expect.orders[order_id];
        assert_eq!(
            e["payload"],
            json!({"order_id": order_id, "sku": order["sku"], "action": "release"}),
            "compensation of {order_id}"
        );
        let reservation = reserved
            .get(order_id)
            .unwrap_or_else(|| panic!("{order_id} compensated but never reserved"));
        assert_caused_by(e, "payment", reservation, order_id);
    }
    let want: Vec<&String> = reserved
        .iter()
        .filter(|(_, e)| e["payload"]["card"] == "declined")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        compensations.keys().collect::<Vec<_>>(),
        want,
        "compensated orders"
    );
    compensations
}

/// Every valid order ends exactly once, and the right way: cancelled "out of
/// stock" by its placement if it was never reserved, confirmed by the payment
/// of its reservation, or cancelled "payment declined" by its compensation.
fn check_results(
    topics: &Topics,
    expect: &Expected,
    (placed, reserved, compensations): (&ByOrder, &ByOrder, &ByOrder),
) {
    let results = by_order("order-results", &topics.results, expect);
    assert_eq!(
        results.keys().collect::<Vec<_>>(),
        expect.orders.keys().collect::<Vec<_>>(),
        "orders with an outcome"
    );
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for (order_id, e) in &results {
        let order = &expect.orders[order_id];
        let (sku, qty) = (&order["sku"], &order["qty"]);
        let (kind, want, handler, cause) = if let Some(c) = compensations.get(order_id) {
            let want = json!({"order_id": order_id, "sku": sku, "qty": qty,
                              "status": "cancelled", "reason": "payment declined"});
            ("payment declined", want, "inventory", c)
        } else if let Some(r) = reserved.get(order_id) {
            let want = json!({"order_id": order_id, "sku": sku, "qty": qty,
                              "amount_cents": order["amount_cents"], "status": "confirmed"});
            ("confirmed", want, "payment", r)
        } else {
            let want = json!({"order_id": order_id, "sku": sku, "qty": qty,
                              "status": "cancelled", "reason": "out of stock"});
            ("out of stock", want, "inventory", &placed[order_id])
        };
        assert_eq!(e["payload"], want, "outcome of {order_id}");
        assert_caused_by(e, handler, cause, order_id);
        *tally.entry(kind).or_default() += 1;
    }
    eprintln!("outcomes: {tally:?}");
    for kind in ["confirmed", "payment declined", "out of stock"] {
        assert!(tally.contains_key(kind), "no order ended {kind}: {tally:?}");
    }
}

/// No reservation leaks: per SKU, the units reserved minus the units
/// released are exactly the units confirmed, and never more than the stock.
/// Returns the units confirmed per SKU.
fn check_stock(
    topics: &Topics,
    reserved: &ByOrder,
    compensations: &ByOrder,
) -> HashMap<String, u64> {
    let qty = |e: &Value| e["payload"]["qty"].as_u64().unwrap();
    let sku = |e: &Value| e["payload"]["sku"].as_str().unwrap().to_string();
    let mut reserved_units: HashMap<String, u64> = HashMap::new();
    let mut released_units: HashMap<String, u64> = HashMap::new();
    let mut confirmed_units: HashMap<String, u64> = HashMap::new();
    for e in reserved.values() {
        *reserved_units.entry(sku(e)).or_default() += qty(e);
    }
    for order_id in compensations.keys() {
        let e = &reserved[order_id];
        *released_units.entry(sku(e)).or_default() += qty(e);
    }
    for e in &topics.results {
        if e["payload"]["status"] == "confirmed" {
            *confirmed_units.entry(sku(e)).or_default() += qty(e);
        }
    }
    for sku in SKUS {
        let reserved = reserved_units.get(sku).copied().unwrap_or(0);
        let released = released_units.get(sku).copied().unwrap_or(0);
        let confirmed = confirmed_units.get(sku).copied().unwrap_or(0);
        eprintln!("{sku}: reserved {reserved}, released {released}, confirmed {confirmed}");
        assert_eq!(reserved - released, confirmed, "units of {sku} leaked");
        assert!(confirmed <= STOCK, "{sku} oversold: {confirmed} > {STOCK}");
    }
    confirmed_units
}

/// The topics agree with the inventory's own state: with the saga drained,
/// each SKU has exactly the initial stock minus the units confirmed left
/// (a lost release would leave fewer, a doubled one more). Probe it with
/// orders one unit too large, exactly as large, and of one more unit.
fn check_shelves(host: &Host, confirmed: &HashMap<String, u64>) {
    let mut probes = Vec::new();
    let mut want = BTreeMap::new();
    for sku in SKUS {
        let left = STOCK - confirmed.get(sku).copied().unwrap_or(0);
        let mut probe = |n: usize, qty: u64, outcome: &str| {
            let order_id = format!("probe-{sku}-{n}");
            let order = json!({"order_id": order_id, "sku": sku, "qty": qty,
                               "amount_cents": 100, "card": "ok"});
            probes.push(json!({"id": order_id, "key": sku, "payload": order}).to_string());
            want.insert(order_id, outcome.to_string());
        };
        probe(1, left + 1, "out of stock");
        if left > 0 {
            probe(2, left, "confirmed");
        }
        probe(3, 1, "out of stock");
    }
    let (status, body) = host.publish("orders", &probes).unwrap();
    assert_eq!(status, 200, "{body}");
    let got = eventually(Duration::from_secs(20), "the probes' outcomes", || {
        let outcomes: BTreeMap<String, String> = host
            .read_all("order-results")
            .into_iter()
            .flatten()
            .filter(|e| want.contains_key(e["payload"]["order_id"].as_str().unwrap()))
            .map(|e| {
                let p = &e["payload"];
                let outcome = p["reason"].as_str().or(p["status"].as_str()).unwrap();
                (
                    p["order_id"].as_str().unwrap().to_string(),
                    outcome.to_string(),
                )
            })
            .collect();
        (outcomes.len() == want.len()).then_some(outcomes)
    });
    assert_eq!(got, want, "stock left on the shelves");
}

/// The malformed orders, and only they, are dead-lettered, once each, by the
/// orders handler; the other two handlers dead-letter nothing.
fn check_dead_letters(host: &Host, expect: &Expected) {
    let dead = dead_letters(host, "orders");
    let ids: Vec<String> = dead
        .iter()
        .map(|d| {
            assert_eq!(d["kind"], "reject", "{d}");
            assert_eq!(d["attempts"], 1, "{d}");
            d["event"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(
        ids.len(),
        unique.len(),
        "a malformed order dead-lettered twice"
    );
    assert_eq!(unique, expect.malformed, "dead-lettered orders");
    for handler in ["inventory", "payment"] {
        assert_eq!(
            dead_letters(host, handler),
            Vec::<Value>::new(),
            "{handler}"
        );
    }
}
