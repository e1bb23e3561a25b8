//! The host side of the `weir:handler` interfaces a guest imports — state,
//! log, config — on [`StoreData`]: each call checked against the handler's
//! limits, a misuse trapping the guest as its own fault.

use super::bindings::{WitLevel, weir::handler};
use super::guest_io::Level;
use super::instance::{InvokeError, MAX_STATE_KEY, MAX_STATE_VALUE, StoreData};
use super::overlay::Overlay;

impl handler::types::Host for StoreData {}

impl handler::state::Host for StoreData {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.read_state(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        if key.len() > MAX_STATE_KEY {
            return self.refuse(format!(
                "state key of {} bytes exceeds {MAX_STATE_KEY}",
                key.len()
            ));
        }
        if value.len() > MAX_STATE_VALUE {
            return self.refuse(format!(
                "state value of {} bytes exceeds {MAX_STATE_VALUE}",
                value.len()
            ));
        }
        self.write_state(key, Some(value))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        if key.len() > MAX_STATE_KEY {
            return self.refuse(format!(
                "state key of {} bytes exceeds {MAX_STATE_KEY}",
                key.len()
            ));
        }
        self.write_state(key, None)
    }
}

impl StoreData {
    /// Trap the guest for misusing a host function: its fault, reported as
    /// a trap with `message`.
    fn refuse(&mut self, message: String) -> wasmtime::Result<()> {
        self.guest_fault = Some(InvokeError::Trap {
            message: message.clone(),
            stderr: None,
        });
        Err(wasmtime::Error::msg(message))
    }

    /// Buffer one state write of the current event, trapping the guest if
    /// the event's writes would pass `limits.max_state_bytes`.
    fn write_state(&mut self, key: String, value: Option<Vec<u8>>) -> wasmtime::Result<()> {
        self.event.insert(key, value);
        let limit = self.settings.limits.max_state_bytes;
        if self.event.bytes() > limit {
            let error = InvokeError::StateTooLarge {
                bytes: self.event.bytes(),
                limit,
            };
            let message = error.to_string();
            self.guest_fault = Some(error);
            self.event = Overlay::default();
            return Err(wasmtime::Error::msg(message));
        }
        Ok(())
    }
}

impl handler::log::Host for StoreData {
    fn log(&mut self, level: WitLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            WitLevel::Trace => Level::Trace,
            WitLevel::Debug => Level::Debug,
            WitLevel::Info => Level::Info,
            WitLevel::Warn => Level::Warn,
            WitLevel::Error => Level::Error,
        };
        self.log.line(level, "log", &message);
        Ok(())
    }
}

impl handler::config::Host for StoreData {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.settings.config.get(&key).cloned())
    }

    fn get_all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .settings
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
