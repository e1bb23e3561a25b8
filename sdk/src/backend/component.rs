//! The component backend: forwards to the `weir:handler` imports.

use crate::bindings::weir::handler::{config, log as wit_log, state};
use crate::log::Level;

pub(crate) fn state_get(key: &str) -> Option<Vec<u8>> {
    state::get(key)
}

pub(crate) fn state_set(key: &str, value: &[u8]) {
    state::set(key, value);
}

pub(crate) fn state_delete(key: &str) {
    state::delete(key);
}

pub(crate) fn config_get(key: &str) -> Option<String> {
    config::get(key)
}

pub(crate) fn config_all() -> Vec<(String, String)> {
    config::get_all()
}

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => wit_log::Level::Trace,
        Level::Debug => wit_log::Level::Debug,
        Level::Info => wit_log::Level::Info,
        Level::Warn => wit_log::Level::Warn,
        Level::Error => wit_log::Level::Error,
    };
    wit_log::log(level, message);
}
