//! The config parser: any text is a config or an error naming a key; never
//! a panic (interpolation, TOML, key paths and checks included).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use weir::config::Config;

fuzz_target!(|text: &str| {
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    let _ = Config::parse(text, Path::new("fuzz.toml"), Path::new("/base"), env);
});
