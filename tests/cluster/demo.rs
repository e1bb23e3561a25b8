//! The cluster demo (`cargo xtask cluster-demo`, examples/cluster): three
//! hosts serving examples/cluster/weir.toml on a 3-node JetStream cluster,
//! under load; one is SIGKILLed and its data directory deleted; the
//! partition table is printed before and after, then the checker's verdict.

use std::time::Duration;

use serde_json::Value;

use crate::failover::{World, join, one_at_a_time, produce};

/// The partitions each live host owns, as `weir cluster status` shows them.
fn print_table(world: &World, title: &str) {
    println!("\n== {title}");
    println!(
        "{:<8} {:>5} {:<6} {:>7} {:>6} {:>11} {:>11}",
        "HANDLER", "PART", "OWNER", "EPOCH", "LAG", "RESTORE MS", "IDLE MS"
    );
    let mut rows: Vec<Value> = Vec::new();
    for host in world.live() {
        let status = host.get("/v1/cluster");
        for p in status["partitions"].as_array().unwrap() {
            if p["owner"] == status["host"] {
                rows.push(p.clone());
            }
        }
    }
    rows.sort_by_key(|p| p["partition"].as_u64());
    let dash = |v: &Value| {
        if v.is_null() {
            "-".into()
        } else {
            v.to_string()
        }
    };
    for p in rows {
        let t = &p["last_takeover"];
        println!(
            "{:<8} {:>5} {:<6} {:>7} {:>6} {:>11} {:>11}",
            p["handler"].as_str().unwrap_or("-"),
            p["partition"].to_string(),
            p["owner"].as_str().unwrap_or("-"),
            dash(&p["epoch"]),
            dash(&p["lag"]),
            dash(&t["restore_ms"]),
            dash(&t["idle_ms"]),
        );
    }
}

#[test]
#[ignore = "a demo, run by `cargo xtask cluster-demo`"]
fn cluster_demo() {
    let _one = one_at_a_time();
    println!("starting 3 JetStream nodes and 3 weir hosts (examples/cluster/weir.toml)");
    let mut world = World::new();
    for _ in 0..3 {
        world.start(Vec::new());
    }
    world.wait_owned(Duration::from_secs(30), &[0, 1, 2]);
    print_table(&world, "3 hosts share the 6 partitions");
    println!("\nproducers publish to the input stream ...");
    let producers = produce(&world.js);
    std::thread::sleep(Duration::from_secs(3));
    println!("SIGKILL h1 and delete its data directory");
    world.destroy(1);
    world.wait_owned(Duration::from_secs(30), &[0, 2]);
    print_table(&world, "h1's partitions moved: restored from the changelog");
    let acked = join(producers);
    println!("\nproducers done; draining, then checking input against output ...");
    world.drain();
    let report = world.verdict("demo: a host and its disk lost", 1, &acked);
    println!(
        "\nverdict: {} events, {} anomalies (lost, duplicated, unexpected, reordered)",
        report.events,
        report.anomalies()
    );
}
