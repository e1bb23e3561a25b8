//! The linker guests are instantiated against.
//!
//! Gives a handler the `weir:handler` imports and all of WASI 0.2, deny by
//! default: the WASI context each store gets (see `instance`) has an empty
//! environment and arguments, no stdin, stdout/stderr into the host's log,
//! no preopened directories, all sockets refused, and clocks and randomness
//! derived from the event (see `determinism`). `wasi:clocks/monotonic-clock`
//! is replaced by the event's virtual clock, so no WASI call blocks on time.
//! So a std guest instantiates, and whatever it tries to reach finds
//! nothing. A component importing
//! anything else (another WASI world, another package) is refused at upload.

use wasmtime::Engine;
use wasmtime::component::{Component, HasData, Linker};

use super::bindings;
use super::determinism::{VirtualClock, VirtualClockView};
use super::instance::StoreData;

/// The one linker every handler is instantiated against.
pub(crate) struct GuestLinker {
    linker: Linker<StoreData>,
}

struct Weir;

impl HasData for Weir {
    type Data<'a> = &'a mut StoreData;
}

impl GuestLinker {
    pub(crate) fn new(engine: &Engine) -> wasmtime::Result<Self> {
        let mut linker = Linker::<StoreData>::new(engine);
        bindings::Handler::add_to_linker::<StoreData, Weir>(&mut linker, |s| s)?;
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        // Replace wasmtime-wasi's monotonic clock, whose pollables sleep in
        // host code, past the epoch deadline.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<
            StoreData,
            VirtualClock,
        >(&mut linker, |s| VirtualClockView {
            seed: &s.seed,
            table: &mut s.table,
        })?;
        linker.allow_shadowing(false);
        Ok(Self { linker })
    }

    /// Resolve `component`'s imports; fails naming an import we do not provide.
    pub(crate) fn pre(
        &self,
        component: &Component,
    ) -> wasmtime::Result<bindings::HandlerPre<StoreData>> {
        bindings::HandlerPre::new(self.linker.instantiate_pre(component)?)
    }
}
