//! Binding the params a person gives (`-p key=value`) to a runbook's declared,
//! typed params.

use serde_json::{Map, Value};

use crate::runbook::{ParamType, Runbook};

/// Check and convert `key=value` pairs against the runbook's params, adding
/// defaults for the ones not given.
///
/// Fails with one sentence per problem: an unknown name (with a did-you-mean),
/// a value of the wrong type, a required param missing.
pub fn bind_cli_params(
    rb: &Runbook,
    given: &[(String, String)],
) -> Result<Map<String, Value>, Vec<String>> {
    let mut out = Map::new();
    let mut problems = Vec::new();
    for (name, text) in given {
        let Some(def) = rb.param(name) else {
            let names: Vec<&str> = rb.params.iter().map(|p| p.name.as_str()).collect();
            let hint = crate::runbook::did_you_mean(name, names.iter().copied())
                .map(|h| format!(" ({h})"))
                .unwrap_or_else(|| {
                    if names.is_empty() {
                        " (it declares none)".into()
                    } else {
                        format!(" (it declares {})", names.join(", "))
                    }
                });
            problems.push(format!("runbook {} has no param \"{name}\"{hint}", rb.name));
            continue;
        };
        match convert(def.kind, text) {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(why) => {
                // Present, if wrong: not also "missing".
                out.insert(name.clone(), Value::Null);
                problems.push(format!("param {name} is {}: {why}", def.kind.as_str()));
            }
        }
    }
    fill_defaults(rb, &mut out, &mut problems);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Check params given as JSON (the API) against the runbook's params, adding
/// defaults.
///
/// Fails with one sentence per problem, as [`bind_cli_params`].
pub fn bind_json_params(
    rb: &Runbook,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = Map::new();
    for (name, v) in given {
        let Some(def) = rb.param(name) else {
            let names: Vec<&str> = rb.params.iter().map(|p| p.name.as_str()).collect();
            let hint = crate::runbook::did_you_mean(name, names.iter().copied())
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            problems.push(format!("runbook {} has no param \"{name}\"{hint}", rb.name));
            continue;
        };
        let ok = match def.kind {
            ParamType::String => v.is_string(),
            ParamType::Integer => v.is_i64() || v.is_u64(),
            ParamType::Number => v.is_number(),
            ParamType::Boolean => v.is_boolean(),
            ParamType::List => v.is_array(),
            ParamType::Map => v.is_object(),
        };
        if ok {
            out.insert(name.clone(), v.clone());
        } else {
            out.insert(name.clone(), Value::Null);
            problems.push(format!(
                "param {name} must be of type {}, not {v}",
                def.kind.as_str()
            ));
        }
    }
    fill_defaults(rb, &mut out, &mut problems);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Add the defaults of the params not given; a required one missing is a problem.
fn fill_defaults(rb: &Runbook, out: &mut Map<String, Value>, problems: &mut Vec<String>) {
    for def in &rb.params {
        if out.contains_key(&def.name) {
            continue;
        }
        match &def.default {
            Some(d) => {
                out.insert(def.name.clone(), d.clone());
            }
            None if def.required => problems.push(format!(
                "param {} is required; give it with -p {}=VALUE",
                def.name, def.name
            )),
            None => {
                out.insert(def.name.clone(), Value::Null);
            }
        }
    }
}

fn convert(kind: ParamType, text: &str) -> Result<Value, String> {
    let t = text.trim();
    match kind {
        ParamType::String => Ok(Value::String(text.to_string())),
        ParamType::Integer => t
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("\"{text}\" is not a whole number")),
        ParamType::Number => t
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("\"{text}\" is not a number")),
        ParamType::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("\"{text}\" is not true or false")),
        },
        ParamType::List => match serde_json::from_str::<Value>(t) {
            Ok(v @ Value::Array(_)) => Ok(v),
            _ if t.starts_with('[') => Err(format!("\"{text}\" is not a JSON list")),
            // a,b,c is a list of strings
            _ => Ok(Value::Array(
                t.split(',')
                    .map(|s| Value::String(s.trim().to_string()))
                    .filter(|v| v != "")
                    .collect(),
            )),
        },
        ParamType::Map => match serde_json::from_str::<Value>(t) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(format!(
                "\"{text}\" is not a JSON object such as {{\"a\": 1}}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_each_type() {
        assert_eq!(convert(ParamType::Integer, "72").unwrap(), Value::from(72));
        assert!(
            convert(ParamType::Integer, "7.5")
                .unwrap_err()
                .contains("not a whole number")
        );
        assert_eq!(
            convert(ParamType::Boolean, "yes").unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            convert(ParamType::List, "a, b").unwrap(),
            serde_json::json!(["a", "b"])
        );
        assert_eq!(
            convert(ParamType::List, "[1,2]").unwrap(),
            serde_json::json!([1, 2])
        );
        assert_eq!(
            convert(ParamType::Map, "{\"a\":1}").unwrap(),
            serde_json::json!({"a": 1})
        );
    }
}
