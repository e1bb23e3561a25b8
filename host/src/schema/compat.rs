//! The compatibility check between two JSON Schema versions: ours, a
//! structural comparison of the keywords that decide which payloads a
//! schema admits — `type`, `properties`, `required`,
//! `additionalProperties`, `enum`, `const`, `items` — recursing into
//! properties and items.
//!
//! [`admits_all`]`(a, b)` answers "is every value valid under `a` also
//! valid under `b`?" and lists what breaks it, each with the place in the
//! schema (a JSON pointer) and the change. The modes compose it the way the
//! Confluent Schema Registry defines them: *backward* (consumers on the new
//! schema read data written with the old one: old ⊆ new), *forward* (data
//! written with the new schema is read by consumers on the old one:
//! new ⊆ old), *full* (both), *none* (no check). Like Confluent's
//! non-transitive modes, a new version is compared with the latest one.
//!
//! It is conservative: a keyword outside that subset (`minimum`, `pattern`,
//! `oneOf`, `$ref`, ...) that differs between the two at the same place is
//! reported as a break ("not compared"), never passed silently;
//! annotations (`title`, `description`, `examples`, `default`, `$comment`,
//! `$schema`, `$id`) are ignored. A check that refuses a harmless change
//! can be bypassed with mode `none`; one that passed a breaking change
//! could not.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A topic's compatibility mode (the Confluent Schema Registry meanings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compatibility {
    /// Any new version is accepted.
    None,
    /// Readers on the new version can read data written with the previous
    /// one (the default).
    #[default]
    Backward,
    /// Readers on the previous version can read data written with the new one.
    Forward,
    /// Both backward and forward.
    Full,
}

impl Compatibility {
    /// Its name, as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Backward => "backward",
            Self::Forward => "forward",
            Self::Full => "full",
        }
    }
}

/// One thing that makes a new version incompatible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// Where in the schema, as a JSON pointer (`""` is the root).
    pub at: String,
    /// What changed, and why it breaks.
    pub change: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.at.is_empty() { "/" } else { &self.at };
        write!(f, "{at}: {}", self.change)
    }
}

/// What breaks if `new` follows `old` under `mode` (empty: compatible).
pub fn check(mode: Compatibility, old: &Value, new: &Value) -> Vec<Break> {
    let mut breaks = Vec::new();
    if matches!(mode, Compatibility::Backward | Compatibility::Full) {
        let mut c = Comparer::new("old", "new", "backward");
        c.subset(old, new, "");
        breaks.extend(c.breaks);
    }
    if matches!(mode, Compatibility::Forward | Compatibility::Full) {
        let mut c = Comparer::new("new", "old", "forward");
        c.subset(new, old, "");
        breaks.extend(c.breaks);
    }
    breaks
}

/// What keeps every value valid under `a` from being valid under `b`
/// (empty: `a` admits nothing `b` refuses). `a_name` and `b_name` name
/// the two in the messages.
pub fn admits_all(a: &Value, b: &Value, a_name: &str, b_name: &str) -> Vec<Break> {
    let mut c = Comparer::new(a_name, b_name, "");
    c.subset(a, b, "");
    c.breaks
}

/// Keywords that only annotate: changes to them break nothing.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "examples",
    "default",
    "$comment",
    "$schema",
    "$id",
    "deprecated",
    "readOnly",
    "writeOnly",
];
/// Keywords the comparison understands.
const COMPARED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "const",
    "items",
];

struct Comparer<'a> {
    a: &'a str,
    b: &'a str,
    mode: &'a str,
    breaks: Vec<Break>,
}

impl<'a> Comparer<'a> {
    fn new(a: &'a str, b: &'a str, mode: &'a str) -> Self {
        Self {
            a,
            b,
            mode,
            breaks: Vec::new(),
        }
    }

    fn report(&mut self, at: &str, change: String) {
        let change = if self.mode.is_empty() {
            change
        } else {
            format!("{change} ({} check)", self.mode)
        };
        self.breaks.push(Break {
            at: at.to_string(),
            change,
        });
    }

    /// Every value valid under `a` is valid under `b`, at `at`.
    fn subset(&mut self, a: &Value, b: &Value, at: &str) {
        let (a_obj, b_obj) = match (a, b) {
            (_, Value::Bool(true)) => return,
            (Value::Bool(false), _) => return,
            (Value::Object(a), Value::Object(b)) => (a.clone(), b.clone()),
            (Value::Bool(true), Value::Object(b)) => (Map::new(), b.clone()),
            (Value::Object(_), Value::Bool(false)) => {
                self.report(at, format!("{} admits nothing here", self.b));
                return;
            }
            _ => {
                self.report(at, "a schema must be an object or a boolean".into());
                return;
            }
        };
        self.types(&a_obj, &b_obj, at);
        self.enums(&a_obj, &b_obj, at);
        self.objects(&a_obj, &b_obj, at);
        if let Some(b_items) = b_obj.get("items") {
            let a_items = a_obj.get("items").unwrap_or(&Value::Bool(true));
            if admits_type(&a_obj, "array") {
                self.subset(a_items, b_items, &format!("{at}/items"));
            }
        }
        self.uncompared(&a_obj, &b_obj, at);
    }

    fn types(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str) {
        let Some(b_types) = type_set(b) else { return };
        match type_set(a) {
            None => self.report(
                at,
                format!(
                    "type narrowed from any to {} ({} admits values {} refuses)",
                    list(&b_types),
                    self.a,
                    self.b
                ),
            ),
            Some(a_types) => {
                let lost: Vec<&String> = a_types
                    .iter()
                    .filter(|t| !admitted_by(t, &b_types))
                    .collect();
                if !lost.is_empty() {
                    self.report(
                        at,
                        format!(
                            "type changed from {} ({}) to {} ({}): {} no longer admitted",
                            list(&a_types),
                            self.a,
                            list(&b_types),
                            self.b,
                            lost.iter()
                                .map(|t| format!("`{t}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
        }
    }

    fn enums(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str) {
        let Some(b_values) = allowed_values(b) else {
            return;
        };
        match allowed_values(a) {
            None => self.report(
                at,
                format!(
                    "enum {} in {} where {} admits any value",
                    Value::Array(b_values),
                    self.b,
                    self.a
                ),
            ),
            Some(a_values) => {
                for v in a_values {
                    if !b_values.contains(&v) {
                        self.report(
                            at,
                            format!(
                                "enum value {v} is admitted by {} but not by {}",
                                self.a, self.b
                            ),
                        );
                    }
                }
            }
        }
    }

    fn objects(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str) {
        if !admits_type(a, "object") {
            return;
        }
        let empty = Map::new();
        let a_props = a
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let b_props = b
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let a_extra = a.get("additionalProperties").unwrap_or(&Value::Bool(true));
        let b_extra = b.get("additionalProperties").unwrap_or(&Value::Bool(true));
        let names: BTreeSet<&String> = a_props.keys().chain(b_props.keys()).collect();
        for name in names {
            let here = format!("{at}/properties/{}", escape(name));
            match (a_props.get(name), b_props.get(name)) {
                (Some(a_p), Some(b_p)) => self.subset(a_p, b_p, &here),
                (Some(a_p), None) => {
                    if b_extra == &Value::Bool(false) {
                        self.report(
                            &here,
                            format!(
                                "property `{name}` is in {} but {} has no such property and additionalProperties false",
                                self.a, self.b
                            ),
                        );
                    } else {
                        self.subset(a_p, b_extra, &here);
                    }
                }
                (None, Some(b_p)) => {
                    if a_extra != &Value::Bool(false) {
                        let before = self.breaks.len();
                        self.subset(a_extra, b_p, &here);
                        if self.breaks.len() > before {
                            self.breaks.truncate(before);
                            self.report(
                                &here,
                                format!(
                                    "property `{name}` is added in {} with a schema narrower than what {} admits for it (an open content model: make {}'s additionalProperties false, or the property admit any value)",
                                    self.b, self.a, self.a
                                ),
                            );
                        }
                    }
                }
                (None, None) => {}
            }
        }
        if a_extra != &Value::Bool(false) && b_extra != &Value::Bool(true) {
            let before = self.breaks.len();
            self.subset(a_extra, b_extra, &format!("{at}/additionalProperties"));
            if self.breaks.len() > before {
                self.breaks.truncate(before);
                self.report(
                    &format!("{at}/additionalProperties"),
                    format!(
                        "additionalProperties is narrower in {} than in {}: other properties {} admits are refused",
                        self.b, self.a, self.a
                    ),
                );
            }
        }
        let a_required = string_set(a.get("required"));
        for name in string_set(b.get("required")) {
            if !a_required.contains(&name) {
                self.report(
                    &format!("{at}/required"),
                    format!(
                        "property `{name}` is required in {} but optional in {}",
                        self.b, self.a
                    ),
                );
            }
        }
    }

    fn uncompared(&mut self, a: &Map<String, Value>, b: &Map<String, Value>, at: &str) {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            if ANNOTATIONS.contains(&key.as_str()) || COMPARED.contains(&key.as_str()) {
                continue;
            }
            if a.get(key) != b.get(key) {
                self.report(
                    at,
                    format!(
                        "keyword `{key}` differs and is not compared (only {} are); register with compatibility none to accept it",
                        COMPARED.join(", ")
                    ),
                );
            }
        }
    }
}

/// The types a schema admits, or `None` for any.
fn type_set(schema: &Map<String, Value>) -> Option<BTreeSet<String>> {
    match schema.get("type")? {
        Value::String(t) => Some([t.clone()].into()),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        _ => None,
    }
}

/// Whether values of JSON type `kind` are among `types` (an integer is a
/// number).
fn admitted_by(kind: &str, types: &BTreeSet<String>) -> bool {
    types.contains(kind) || (kind == "integer" && types.contains("number"))
}

/// Whether the schema may admit values of JSON type `kind`.
fn admits_type(schema: &Map<String, Value>, kind: &str) -> bool {
    type_set(schema).is_none_or(|ts| ts.contains(kind))
}

/// The values `enum` or `const` allows, or `None` for any.
fn allowed_values(schema: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(c) = schema.get("const") {
        return Some(vec![c.clone()]);
    }
    schema.get("enum").and_then(Value::as_array).cloned()
}

fn string_set(value: Option<&Value>) -> BTreeSet<String> {
    value
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn list(types: &BTreeSet<String>) -> String {
    types
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join("|")
}

/// A property name as a JSON pointer token.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn breaks(mode: Compatibility, old: Value, new: Value) -> Vec<String> {
        check(mode, &old, &new)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn adding_a_required_property_breaks_backward_not_forward() {
        let old = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let new = json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {}},
            "required": ["b"]});
        let b = breaks(Compatibility::Backward, old.clone(), new.clone());
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(b[0].contains("`b` is required in new"), "{b:?}");
        assert!(breaks(Compatibility::Forward, old.clone(), new.clone()).is_empty());
        assert_eq!(
            breaks(Compatibility::Full, old.clone(), new.clone()).len(),
            1
        );
        assert!(breaks(Compatibility::None, old, new).is_empty());
    }

    #[test]
    fn a_changed_property_type_names_the_property_and_the_change() {
        let old = json!({"type": "object", "properties": {"amount": {"type": "integer"}}});
        let new = json!({"type": "object", "properties": {"amount": {"type": "string"}}});
        let b = breaks(Compatibility::Backward, old, new);
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(
            b[0].starts_with("/properties/amount: type changed"),
            "{b:?}"
        );
        // integer → number widens: backward holds, forward does not.
        let old = json!({"type": "integer"});
        let new = json!({"type": "number"});
        assert!(breaks(Compatibility::Backward, old.clone(), new.clone()).is_empty());
        assert_eq!(breaks(Compatibility::Forward, old, new).len(), 1);
    }

    #[test]
    fn enums_closed_models_and_items() {
        let old = json!({"enum": ["a", "b"]});
        let new = json!({"enum": ["a"]});
        let b = breaks(Compatibility::Backward, old.clone(), new.clone());
        assert!(b[0].contains("\"b\""), "{b:?}");
        assert!(breaks(Compatibility::Forward, old, new).is_empty());

        let closed = json!({"type": "object", "properties": {"a": {}, "b": {}},
            "additionalProperties": false});
        let fewer = json!({"type": "object", "properties": {"a": {}},
            "additionalProperties": false});
        let b = breaks(Compatibility::Backward, closed.clone(), fewer.clone());
        assert!(b[0].starts_with("/properties/b:"), "{b:?}");
        assert!(breaks(Compatibility::Forward, closed, fewer).is_empty());

        let old = json!({"type": "array", "items": {"type": "string"}});
        let new = json!({"type": "array", "items": {"type": "integer"}});
        assert!(breaks(Compatibility::Full, old, new)[0].starts_with("/items:"));
    }

    #[test]
    fn an_open_model_gaining_a_typed_property_breaks_backward() {
        let old = json!({"type": "object", "properties": {"a": {}}});
        let new = json!({"type": "object", "properties": {"a": {}, "n": {"type": "integer"}}});
        let b = breaks(Compatibility::Backward, old.clone(), new.clone());
        assert!(b[0].contains("open content model"), "{b:?}");
        let closed = json!({"type": "object", "properties": {"a": {}},
            "additionalProperties": false});
        assert!(breaks(Compatibility::Backward, closed, new).is_empty());
    }

    #[test]
    fn keywords_outside_the_subset_are_reported_and_annotations_ignored() {
        let old = json!({"type": "integer", "minimum": 0, "description": "x"});
        let same = json!({"type": "integer", "minimum": 0, "description": "y"});
        assert!(breaks(Compatibility::Full, old.clone(), same).is_empty());
        let new = json!({"type": "integer", "minimum": 1});
        let b = breaks(Compatibility::Backward, old, new);
        assert!(
            b[0].contains("`minimum` differs and is not compared"),
            "{b:?}"
        );
    }

    #[test]
    fn admits_all_compares_one_way() {
        let narrow = json!({"type": "object", "properties": {"a": {"type": "string"}},
            "required": ["a"], "additionalProperties": false});
        let wide = json!({"type": "object"});
        assert!(admits_all(&narrow, &wide, "handler", "topic").is_empty());
        assert!(!admits_all(&wide, &narrow, "topic", "handler").is_empty());
    }
}
