//! Comparing what a run did with what a test expects: an expectation names
//! only what it cares about (map keys, list items), and a mismatch is shown as
//! a line diff of the two, rendered as YAML.

use serde_json::Value;

/// `actual` cut down to the shape of `expected`: maps keep the keys the
/// expectation names (a missing one stays missing), lists are compared item
/// by item (extra or missing items stay visible), anything else as it is.
pub fn project(actual: &Value, expected: &Value) -> Value {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => Value::Object(
            e.iter()
                .filter_map(|(k, ev)| a.get(k).map(|av| (k.clone(), project(av, ev))))
                .collect(),
        ),
        (Value::Array(a), Value::Array(e)) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, av)| match e.get(i) {
                    Some(ev) => project(av, ev),
                    None => av.clone(),
                })
                .collect(),
        ),
        (Value::Number(a), Value::Number(e)) if a.as_f64() == e.as_f64() => expected.clone(),
        _ => actual.clone(),
    }
}

/// Whether `actual` has everything `expected` names.
pub fn contains(actual: &Value, expected: &Value) -> bool {
    project(actual, expected) == *expected
}

fn yaml(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap_or_else(|_| v.to_string())
}

/// Compare and, on a mismatch, describe it: `what` and a diff where `-`
/// lines are expected and `+` lines are what happened.
pub fn check(what: &str, actual: &Value, expected: &Value) -> Option<String> {
    let shown = project(actual, expected);
    if shown == *expected {
        return None;
    }
    Some(format!("{what}:\n{}", diff(&yaml(expected), &yaml(&shown))))
}

/// A unified line diff, `-` expected and `+` actual.
pub fn diff(expected: &str, actual: &str) -> String {
    let d = similar::TextDiff::from_lines(expected, actual);
    let mut out = String::from("  --- expected\n  +++ actual\n");
    for change in d.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        out.push_str(&format!("  {sign} {}", change.value()));
        if change.missing_newline() {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expectations_name_only_what_they_care_about() {
        let actual =
            json!({"n": 3, "items": [{"id": 1, "x": "a"}, {"id": 2, "x": "b"}], "extra": true});
        assert!(contains(&actual, &json!({"n": 3})));
        assert!(contains(&actual, &json!({"n": 3.0})));
        assert!(contains(&actual, &json!({"items": [{"id": 1}, {"id": 2}]})));
        assert!(
            !contains(&actual, &json!({"items": [{"id": 1}]})),
            "an extra item shows"
        );
        assert!(
            !contains(&actual, &json!({"missing": null})),
            "a missing key shows"
        );
        let report = check(
            "output",
            &actual,
            &json!({"n": 4, "items": [{"id": 1}, {"id": 2}]}),
        )
        .unwrap();
        assert!(report.contains("  - n: 4\n"), "{report}");
        assert!(report.contains("  + n: 3\n"), "{report}");
        assert!(report.contains("    - id: 1\n"), "{report}");
    }
}
