//! Row 10: what span export costs per event. The sandboxed map through the
//! pipeline (batch 100, one partition) with no exporter, and with spans
//! exported to an in-process sink that accepts and drops them, sampled at
//! 100 % and at 1 %: the per-event path builds the spans and queues them;
//! the network is not measured.

use serde_json::{Value, json};
use weir::runtime::Runtime;
use weir::traces::{Sampling, Traces};

use super::schemas::pipeline_eps;

pub fn run(runtime: &Runtime, wasm: &[u8], quick: bool) -> Value {
    println!(
        "\n[10] traces: cost per event of span export (in-process sink), batch 100, 1 partition"
    );
    let n = if quick { 20_000 } else { 100_000 };
    let eps = |ratio: Option<f64>| {
        let traces = ratio.map(|ratio| {
            Traces::discarding(Sampling {
                parent_based: true,
                ratio,
            })
        });
        pipeline_eps(runtime, &|c| super::component(c, wasm), n, |p| {
            p.with_traces(traces)
        })
    };
    let off = eps(None);
    let all = eps(Some(1.0));
    let one_pct = eps(Some(0.01));
    // The baseline again, after the others: how much the machine drifted.
    let off_again = eps(None);
    let base = (off + off_again) / 2.0;
    let added = |eps: f64| (1e6 / eps - 1e6 / base).max(0.0);
    println!(
        "{:>8} | {:>10} {:>10} | {:>10} {:>7} {:>9} | {:>10} {:>7} {:>9}",
        "events", "off", "off again", "100 %", "ratio", "µs/event", "1 %", "ratio", "µs/event"
    );
    println!(
        "{n:>8} | {off:>10.0} {off_again:>10.0} | {all:>10.0} {:>6.0}% {:>9.2} | {one_pct:>10.0} {:>6.0}% {:>9.2}",
        100.0 * all / base,
        added(all),
        100.0 * one_pct / base,
        added(one_pct)
    );
    json!({"events": n, "batch": 100, "off_eps": off, "off_again_eps": off_again,
        "sampled_100_eps": all, "sampled_1_eps": one_pct,
        "added_us_per_event_100": added(all), "added_us_per_event_1": added(one_pct)})
}
