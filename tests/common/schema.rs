//! A careful check of a JSON value against the part of JSON Schema
//! (draft-07) that `runbookd schema` uses, as an editor's validator reads it.
//! A keyword it does not know stops the test, so the check never skips what
//! a schema asks.

use serde_json::Value;

/// Where `value` breaks `schema`, as `path: message`, in document order.
pub fn check(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    Checker { root: schema }.node(schema, value, "", &mut out);
    out
}

struct Checker<'a> {
    root: &'a Value,
}

const ANNOTATIONS: &[&str] = &["$schema", "title", "description", "definitions"];

impl Checker<'_> {
    fn node(&self, s: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
        let s = s.as_object().expect("a schema is an object");
        for (k, rule) in s {
            match k.as_str() {
                k if ANNOTATIONS.contains(&k) => {}
                "$ref" => {
                    let path = rule.as_str().unwrap().trim_start_matches('#');
                    let target = self.root.pointer(path).expect("a $ref resolves");
                    self.node(target, v, at, out);
                }
                "type" => {
                    let types: Vec<&str> = match rule {
                        Value::String(t) => vec![t],
                        _ => rule
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|t| t.as_str().unwrap())
                            .collect(),
                    };
                    if !types.iter().any(|t| is_type(v, t)) {
                        out.push(format!("{at}: {v} is not of type {}", types.join(" or ")));
                    }
                }
                "enum" if !rule.as_array().unwrap().contains(v) => {
                    out.push(format!("{at}: {v} is not one of {rule}"));
                }
                "const" if rule != v => out.push(format!("{at}: {v} is not {rule}")),
                "enum" | "const" => {}
                "minimum" => {
                    if v.as_f64().is_some_and(|n| n < rule.as_f64().unwrap()) {
                        out.push(format!("{at}: {v} is less than {rule}"));
                    }
                }
                "pattern" => {
                    // The one pattern the schemas use.
                    assert_eq!(rule, "^[a-z0-9-]+$", "an unknown pattern");
                    let ok = |t: &str| {
                        !t.is_empty() && t.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
                    };
                    if v.as_str().is_some_and(|t| !ok(t)) {
                        out.push(format!("{at}: {v} does not match {rule}"));
                    }
                }
                "required" => {
                    for key in rule.as_array().unwrap() {
                        let key = key.as_str().unwrap();
                        if v.as_object().is_some_and(|m| !m.contains_key(key)) {
                            out.push(format!("{at}: `{key}` is required"));
                        }
                    }
                }
                "properties" => self.object(s, v, at, out),
                // Checked with `properties` when the schema has both.
                "additionalProperties" if !s.contains_key("properties") => {
                    self.object(s, v, at, out)
                }
                "additionalProperties" => {}
                "items" => {
                    for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                        self.node(rule, item, &format!("{at}/{i}"), out);
                    }
                }
                "anyOf" | "oneOf" => {
                    let passing = rule
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|alt| self.passes(alt, v, at))
                        .count();
                    let ok = if k == "anyOf" {
                        passing > 0
                    } else {
                        passing == 1
                    };
                    if !ok {
                        out.push(format!(
                            "{at}: {v} matches {passing} of the {k} alternatives"
                        ));
                    }
                }
                other => panic!("the check does not know the keyword {other:?}"),
            }
        }
    }

    fn passes(&self, s: &Value, v: &Value, at: &str) -> bool {
        let mut errors = Vec::new();
        self.node(s, v, at, &mut errors);
        errors.is_empty()
    }

    /// `properties` and `additionalProperties` of one schema `s`, together.
    fn object(
        &self,
        s: &serde_json::Map<String, Value>,
        v: &Value,
        at: &str,
        out: &mut Vec<String>,
    ) {
        let Some(map) = v.as_object() else { return };
        let props = s.get("properties").and_then(Value::as_object);
        for (key, item) in map {
            let path = format!("{at}/{key}");
            match (
                props.and_then(|p| p.get(key)),
                s.get("additionalProperties"),
            ) {
                (Some(p), _) => self.node(p, item, &path, out),
                (None, Some(Value::Bool(false))) => out.push(format!("{at}: unknown key `{key}`")),
                (None, Some(extra)) if extra.is_object() => self.node(extra, item, &path, out),
                _ => {}
            }
        }
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        other => panic!("unknown type {other:?}"),
    }
}
