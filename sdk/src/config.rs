//! The handler's deployment config: key/value pairs set by the operator.

use crate::backend;

/// The value of `key`, if it is set.
///
/// ```
/// weir_sdk::testing::set_config("output_topic", "enriched");
/// assert_eq!(weir_sdk::config::get("output_topic").as_deref(), Some("enriched"));
/// assert_eq!(weir_sdk::config::get("unset"), None);
/// ```
pub fn get(key: &str) -> Option<String> {
    backend::config_get(key)
}

/// The value of `key`, or `default` if it is not set.
///
/// ```
/// assert_eq!(weir_sdk::config::get_or("output_topic", "out"), "out");
/// ```
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_owned())
}

/// Every pair, sorted by key.
///
/// ```
/// weir_sdk::testing::set_config("b", "2");
/// weir_sdk::testing::set_config("a", "1");
/// let all = weir_sdk::config::all();
/// assert_eq!(all[0], ("a".to_string(), "1".to_string()));
/// ```
pub fn all() -> Vec<(String, String)> {
    backend::config_all()
}
