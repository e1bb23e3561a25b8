//! Failpoints: crash the host at an exact point, for the fault suite.
//!
//! Compiled only with the `failpoints` feature (`cargo xtask test` and
//! `cargo xtask faults` build the binary with it); otherwise [`hit`] is an
//! empty inline function and releases carry none of it. With the feature,
//! `WEIR_FAILPOINTS=name=probability[,name=probability]` makes `hit(name)`
//! abort the process with that probability.

/// Abort the process here with the probability `WEIR_FAILPOINTS` gives
/// `name` (never when it is unset).
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static POINTS: OnceLock<HashMap<String, f64>> = OnceLock::new();
    let points = POINTS.get_or_init(|| {
        std::env::var("WEIR_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| {
                let (name, p) = p.split_once('=')?;
                Some((name.trim().to_string(), p.trim().parse().ok()?))
            })
            .collect()
    });
    if let Some(&p) = points.get(name)
        && fastrand::f64() < p
    {
        tracing::error!(failpoint = name, "failpoint hit: aborting");
        std::process::abort();
    }
}

/// Without the `failpoints` feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
