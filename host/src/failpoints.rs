//! Failpoints: crash the host at an exact point, for the fault suite.
//!
//! Compiled only with the `failpoints` feature (`cargo xtask test` and
//! `cargo xtask faults` build the binary with it); otherwise [`hit`] is an
//! empty inline function and releases carry none of it. With the feature,
//! `WEIR_FAILPOINTS=name=probability[,name=probability]` makes `hit(name)`
//! abort the process with that probability, and [`is_set`] report a
//! behaviour switch (`name=1`).
//!
//! Switches: `cluster-zombie` makes a partition's loop ignore its lease
//! (as a host whose clock stopped with it, a paused VM, would), so only
//! the broker's fence can stop it.

#[cfg(feature = "failpoints")]
fn points() -> &'static std::collections::HashMap<String, f64> {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static POINTS: OnceLock<HashMap<String, f64>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var("WEIR_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| {
                let (name, p) = p.split_once('=')?;
                Some((name.trim().to_string(), p.trim().parse().ok()?))
            })
            .collect()
    })
}

/// Abort the process here with the probability `WEIR_FAILPOINTS` gives
/// `name` (never when it is unset).
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if let Some(&p) = points().get(name)
        && fastrand::f64() < p
    {
        tracing::error!(failpoint = name, "failpoint hit: aborting");
        std::process::abort();
    }
}

/// Whether `WEIR_FAILPOINTS` turns the switch `name` on.
#[cfg(feature = "failpoints")]
pub fn is_set(name: &str) -> bool {
    points().get(name).is_some_and(|&p| p > 0.0)
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Without the `failpoints` feature: never.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn is_set(_name: &str) -> bool {
    false
}
