//! The handler's own keyed state, committed atomically with its outputs.
//!
//! Reads see the writes made earlier in the same batch, including those of the
//! current event; the writes of an event that fails are discarded with it.
//! Values are bytes; [`get_json`] and [`set_json`] store typed values as JSON.

use serde::{Serialize, de::DeserializeOwned};

use crate::{HandlerError, Result, backend};

/// The value stored under `key`, if any.
///
/// ```
/// weir_sdk::state::set("greeting", b"hi");
/// assert_eq!(weir_sdk::state::get("greeting").as_deref(), Some(&b"hi"[..]));
/// assert_eq!(weir_sdk::state::get("missing"), None);
/// ```
pub fn get(key: &str) -> Option<Vec<u8>> {
    backend::state_get(key)
}

/// Store `value` under `key`, replacing any previous value.
///
/// ```
/// weir_sdk::state::set("k", b"v1");
/// weir_sdk::state::set("k", b"v2");
/// assert_eq!(weir_sdk::state::get("k").as_deref(), Some(&b"v2"[..]));
/// ```
pub fn set(key: &str, value: &[u8]) {
    backend::state_set(key, value);
}

/// Remove `key`; removing a missing key does nothing.
///
/// ```
/// weir_sdk::state::set("k", b"v");
/// weir_sdk::state::delete("k");
/// weir_sdk::state::delete("never-set");
/// assert_eq!(weir_sdk::state::get("k"), None);
/// ```
pub fn delete(key: &str) {
    backend::state_delete(key);
}

/// The JSON value stored under `key`, if any.
///
/// A stored value that does not deserialize as `T` is a
/// [`HandlerError::Reject`]: retrying would read the same bytes.
///
/// ```
/// weir_sdk::state::set_json("count", &41u64)?;
/// let n: u64 = weir_sdk::state::get_json("count")?.unwrap_or(0);
/// assert_eq!(n, 41);
/// # Ok::<(), weir_sdk::HandlerError>(())
/// ```
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>> {
    let Some(bytes) = get(key) else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        HandlerError::reject(format!(
            "state key {key:?} does not hold the expected JSON: {e}"
        ))
    })
}

/// Store `value` under `key` as JSON.
///
/// A value that cannot be serialized is a [`HandlerError::Reject`].
///
/// ```
/// weir_sdk::state::set_json("seen", &vec!["a", "b"])?;
/// assert_eq!(weir_sdk::state::get("seen").as_deref(), Some(&br#"["a","b"]"#[..]));
/// # Ok::<(), weir_sdk::HandlerError>(())
/// ```
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| {
        HandlerError::reject(format!(
            "value for state key {key:?} is not serializable: {e}"
        ))
    })?;
    set(key, &bytes);
    Ok(())
}
