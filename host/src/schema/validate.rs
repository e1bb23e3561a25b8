//! Validating payloads against a compiled schema (the `jsonschema` crate,
//! draft detected from `$schema`, 2020-12 by default; no remote or file
//! `$ref`s are fetched), and the [`Violation`] that names where a payload
//! fails as a JSON pointer.

use serde_json::Value;

/// A compiled schema version.
pub struct Compiled {
    /// The version.
    pub version: u32,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Why a payload fails its topic's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The schema version it failed.
    pub version: u32,
    /// Where in the payload, as a JSON pointer (`""` is the whole payload).
    pub pointer: String,
    /// What is wrong there.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(
            f,
            "fails schema v{} at `{at}`: {}",
            self.version, self.message
        )
    }
}

impl Compiled {
    /// Compile `schema` as version `version`; the error says why it is not
    /// a usable JSON Schema.
    pub fn new(version: u32, schema: &Value) -> Result<Self, String> {
        let validator = jsonschema::validator_for(schema).map_err(|e| e.to_string())?;
        Ok(Self { version, validator })
    }

    /// Check a payload (bytes that must be JSON).
    pub fn check(&self, payload: &[u8]) -> Result<(), Violation> {
        let value: Value = serde_json::from_slice(payload).map_err(|e| Violation {
            version: self.version,
            pointer: String::new(),
            message: format!("the payload is not JSON ({e})"),
        })?;
        self.check_value(&value)
    }

    /// Check a parsed payload.
    pub fn check_value(&self, value: &Value) -> Result<(), Violation> {
        self.validator.validate(value).map_err(|error| Violation {
            version: self.version,
            pointer: error.instance_path().to_string(),
            message: error.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_name_the_json_pointer() {
        let schema = json!({"type": "object", "properties": {"items": {"type": "array",
            "items": {"type": "object", "properties": {"qty": {"type": "integer"}}}}}});
        let c = Compiled::new(3, &schema).unwrap();
        assert!(c.check(br#"{"items": [{"qty": 1}]}"#).is_ok());
        let v = c
            .check(br#"{"items": [{"qty": 1}, {"qty": "two"}]}"#)
            .unwrap_err();
        assert_eq!(v.pointer, "/items/1/qty");
        assert!(v.to_string().contains("schema v3 at `/items/1/qty`"), "{v}");
        let v = c.check(b"not json").unwrap_err();
        assert!(v.message.contains("not JSON"), "{v}");
        assert!(Compiled::new(1, &json!({"type": 12})).is_err());
    }
}
