//! Time and randomness for guests, derived from the event being handled.
//!
//! A handler sees no wall clock and no entropy: `wasi:clocks/wall-clock`
//! answers the event's timestamp, `wasi:clocks/monotonic-clock` starts at it
//! and advances one microsecond per reading, and `wasi:random` yields a
//! stream seeded from the event's ID and offset. So a retry or a replay of
//! the same event produces the same outputs.
//!
//! The monotonic clock is virtual ([`VirtualClock`], linked in place of
//! wasmtime-wasi's): a pollable that waits for it (what `sleep` compiles
//! to) is ready at once and moves the clock forward to its instant instead
//! of blocking the thread. So no host call waits on time, and the epoch
//! deadline, which is only checked while guest code runs, bounds every
//! invocation, however long the guest asks to sleep.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, async_trait};

use crate::event::Event;

#[derive(Debug, Default)]
struct Seed {
    timestamp_ms: u64,
    monotonic_ns: u64,
    rng: u64,
}

/// The per-instance source of guest time and randomness; reset per event.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventSeed(Arc<Mutex<Seed>>);

impl EventSeed {
    fn with<R>(&self, f: impl FnOnce(&mut Seed) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Derive time and randomness from `event`.
    pub(crate) fn reset(&self, event: &Event) {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in event.id.bytes().chain(event.offset.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.with(|s| {
            s.timestamp_ms = event.timestamp_ms;
            s.monotonic_ns = event.timestamp_ms.saturating_mul(1_000_000);
            s.rng = h;
        });
    }

    /// The monotonic clock's reading, without advancing it.
    fn monotonic_ns(&self) -> u64 {
        self.with(|s| s.monotonic_ns)
    }

    /// Move the monotonic clock forward to `ns` (never back).
    fn advance_to(&self, ns: u64) {
        self.with(|s| s.monotonic_ns = s.monotonic_ns.max(ns));
    }

    fn next_u64(&self) -> u64 {
        // splitmix64
        self.with(|s| {
            s.rng = s.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    }
}

impl HostWallClock for EventSeed {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.with(|s| s.timestamp_ms))
    }
}

impl HostMonotonicClock for EventSeed {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.with(|s| {
            s.monotonic_ns = s.monotonic_ns.saturating_add(1_000);
            s.monotonic_ns
        })
    }
}

/// `wasi:clocks/monotonic-clock` over the event's virtual clock; see the
/// module docs.
pub(crate) struct VirtualClock;

impl HasData for VirtualClock {
    type Data<'a> = VirtualClockView<'a>;
}

/// What [`VirtualClock`]'s imports reach in a store: the clock and the
/// table its pollables live in.
pub(crate) struct VirtualClockView<'a> {
    pub(crate) seed: &'a EventSeed,
    pub(crate) table: &'a mut ResourceTable,
}

impl VirtualClockView<'_> {
    fn wake_at(&mut self, at: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let wake = self.table.push(Wake {
            seed: self.seed.clone(),
            at,
        })?;
        subscribe(self.table, wake)
    }
}

impl monotonic_clock::Host for VirtualClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(HostMonotonicClock::now(self.seed))
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(HostMonotonicClock::resolution(self.seed))
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.wake_at(when)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let at = self.seed.monotonic_ns().saturating_add(duration);
        self.wake_at(at)
    }
}

/// A wait on the virtual clock: ready at once, having moved the clock to `at`.
struct Wake {
    seed: EventSeed,
    at: u64,
}

#[async_trait]
impl Pollable for Wake {
    async fn ready(&mut self) {
        self.seed.advance_to(self.at);
    }
}

impl rand_core::TryRng for EventSeed {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next_u64() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::TryRng;

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            topic: "t".into(),
            partition: 0,
            offset: 3,
            key: None,
            payload: vec![],
            headers: vec![],
            timestamp_ms: 42,
        }
    }

    #[test]
    fn same_event_same_time_and_randomness() {
        let mut seed = EventSeed::default();
        seed.reset(&event("a"));
        let first: Vec<u64> = (0..4).map(|_| seed.try_next_u64().unwrap()).collect();
        seed.reset(&event("a"));
        let again: Vec<u64> = (0..4).map(|_| seed.try_next_u64().unwrap()).collect();
        assert_eq!(first, again);
        seed.reset(&event("b"));
        assert_ne!(seed.try_next_u64().unwrap(), first[0]);
        assert_eq!(HostWallClock::now(&seed), Duration::from_millis(42));
        let t1 = HostMonotonicClock::now(&seed);
        assert!(HostMonotonicClock::now(&seed) > t1);
    }

    #[test]
    fn waiting_on_the_virtual_clock_moves_it_without_blocking() {
        let seed = EventSeed::default();
        seed.reset(&event("a"));
        let before = HostMonotonicClock::now(&seed);
        let started = std::time::Instant::now();
        let mut wake = Wake {
            seed: seed.clone(),
            at: u64::MAX,
        };
        futures_util::FutureExt::now_or_never(wake.ready()).expect("ready at once");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(HostMonotonicClock::now(&seed) > before);
        assert_eq!(seed.monotonic_ns(), u64::MAX);
    }
}
