//! Contract tests for `weir run --expect FILE`: the outputs a component
//! emitted compared with expected ones, and a readable diff when they
//! differ (docs/contracts.md).
//!
//! The expected file is NDJSON, one line per output in order, in the shape
//! `weir run` prints (`input`, `index`, `topic`, `key`, `headers`,
//! `payload` or `payload_base64`). Only the fields a line gives are
//! compared; inside them the comparison is exact JSON, except that the
//! string `"{{any}}"` matches any value (for fields that vary: times,
//! random IDs).

use serde_json::Value;

/// The placeholder that matches any value.
pub const ANY: &str = "{{any}}";

/// Parse the expected outputs.
pub fn parse(text: &str) -> Result<Vec<Value>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            if v.is_object() {
                Ok(v)
            } else {
                Err(format!(
                    "line {}: an expected output is a JSON object",
                    i + 1
                ))
            }
        })
        .collect()
}

/// Compare `actual` outputs with `expected` ones: `Ok` when they match,
/// else the diff, one paragraph per output that differs.
pub fn compare(expected: &[Value], actual: &[Value]) -> Result<(), String> {
    let mut report = Vec::new();
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(want), Some(got)) => {
                let mut diffs = Vec::new();
                if let (Value::Object(want_fields), Value::Object(_)) = (want, got) {
                    for (field, w) in want_fields {
                        let here = format!("/{field}");
                        match got.get(field) {
                            Some(g) => diff(w, g, &here, &mut diffs),
                            None => diffs.push(format!("{here}: expected {w}, got nothing")),
                        }
                    }
                } else {
                    diff(want, got, "", &mut diffs);
                }
                if !diffs.is_empty() {
                    report.push(format!(
                        "output {i}:\n{}\n  expected {want}\n  actual   {got}",
                        diffs
                            .iter()
                            .map(|d| format!("  {d}"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ));
                }
            }
            (Some(want), None) => report.push(format!(
                "output {i}: missing (the component emitted {} outputs)\n  expected {want}",
                actual.len()
            )),
            (None, Some(got)) => report.push(format!(
                "output {i}: unexpected (only {} expected)\n  actual   {got}",
                expected.len()
            )),
            (None, None) => {}
        }
    }
    if report.is_empty() {
        return Ok(());
    }
    Err(format!(
        "contract test failed: {} of {} outputs differ\n\n{}",
        report.len(),
        expected.len().max(actual.len()),
        report.join("\n\n")
    ))
}

/// Exact comparison of `want` and `got` at the JSON pointer `at`, with
/// [`ANY`] matching anything.
fn diff(want: &Value, got: &Value, at: &str, out: &mut Vec<String>) {
    if want.as_str() == Some(ANY) {
        return;
    }
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match g.get(k) {
                    Some(gv) => diff(wv, gv, &here, out),
                    None => out.push(format!("{here}: expected {wv}, got nothing")),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    out.push(format!("{at}/{k}: unexpected {gv}"));
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                diff(wv, gv, &format!("{at}/{i}"), out);
            }
        }
        _ if want == got => {}
        _ => {
            let at = if at.is_empty() { "/" } else { at };
            out.push(format!("{at}: expected {want}, got {got}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_fields_compare_exactly_with_placeholders() {
        let expected = parse(
            r#"{"input": "e1", "payload": {"n": 1, "at": "{{any}}"}}
               {"input": "e2", "topic": "out"}"#,
        )
        .unwrap();
        let ok = [
            json!({"input": "e1", "index": 0, "topic": "out", "payload": {"n": 1, "at": 17}}),
            json!({"input": "e2", "index": 0, "topic": "out", "payload": {}}),
        ];
        assert_eq!(compare(&expected, &ok), Ok(()));
        let bad =
            [json!({"input": "e1", "topic": "out", "payload": {"n": 2, "at": 17, "x": true}})];
        let report = compare(&expected, &bad).unwrap_err();
        assert!(report.contains("2 of 2 outputs differ"), "{report}");
        assert!(report.contains("/payload/n: expected 1, got 2"), "{report}");
        assert!(report.contains("/payload/x: unexpected true"), "{report}");
        assert!(report.contains("output 1: missing"), "{report}");
        assert!(parse("[1]").is_err());
    }
}
