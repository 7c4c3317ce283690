//! Script values to JSON and back: how params, step values, outputs, state and
//! payloads cross the boundary of the sandbox.

use rhai::{Array, Dynamic, Map};
use serde_json::Value;

use super::time::{Span, Timestamp};

/// Values nested deeper than this are refused rather than walked.
const MAX_DEPTH: usize = 64;

/// Why a value nested too deep is refused.
pub const TOO_DEEP: &str = "value nested more than 64 levels deep";

/// A value that would take more than this as JSON is refused: the script's
/// memory budget (64 MiB by default) counts a string once, however many times
/// a value refers to it, but each reference would be a copy here.
pub const MAX_JSON_BYTES: usize = 64 << 20;

/// What one JSON value (a number in an array, say) takes in memory.
const VALUE_BYTES: usize = 32;

/// Why a value too large as JSON is refused.
pub const TOO_LARGE: &str =
    "value larger than 64 MiB as JSON (a large value referred to many times is copied each time)";

/// Whether `v` nests arrays and maps more than [`MAX_DEPTH`] levels deep
/// (it looks no deeper than that).
pub fn nested_too_deep(v: &Dynamic) -> bool {
    fn deeper(v: &Dynamic, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return true;
        }
        if let Some(arr) = v.read_lock::<Array>() {
            return arr.iter().any(|x| deeper(x, depth + 1));
        }
        if let Some(map) = v.read_lock::<Map>() {
            return map.values().any(|x| deeper(x, depth + 1));
        }
        false
    }
    deeper(v, 0)
}

/// JSON → script value. Objects become maps, integers stay integers.
pub fn from_json(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(items) => Dynamic::from_array(items.iter().map(from_json).collect::<Array>()),
        Value::Object(obj) => {
            let mut map = Map::new();
            for (k, v) in obj {
                map.insert(k.as_str().into(), from_json(v));
            }
            Dynamic::from_map(map)
        }
    }
}

/// Script value → JSON. Timestamps become RFC 3339 strings, durations their
/// spelling (`1h 30m`), non-finite floats `null`.
///
/// Fails on values nested more than 64 levels deep, or larger than
/// [`MAX_JSON_BYTES`] as JSON (counted as it is built, so it never is).
pub fn to_json(v: &Dynamic) -> Result<Value, String> {
    let mut left = MAX_JSON_BYTES;
    walk(v, 0, &mut left)
}

/// Spend `n` bytes of the budget.
fn spend(left: &mut usize, n: usize) -> Result<(), String> {
    *left = left.checked_sub(n).ok_or(TOO_LARGE)?;
    Ok(())
}

fn walk(v: &Dynamic, depth: usize, left: &mut usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(TOO_DEEP.into());
    }
    // Every value costs what a JSON value takes in memory (32 bytes), and a
    // string its length on top.
    spend(left, VALUE_BYTES)?;
    if v.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = v.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = v.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = v.as_float() {
        return Ok(serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null));
    }
    if let Ok(c) = v.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if v.is_string() {
        let s = v.clone().into_immutable_string().unwrap_or_default();
        spend(left, s.len())?;
        return Ok(Value::String(s.to_string()));
    }
    if v.is_array() {
        let arr = v.read_lock::<Array>().ok_or("array is locked")?;
        return arr
            .iter()
            .map(|x| walk(x, depth + 1, left))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if v.is_map() {
        let map = v.read_lock::<Map>().ok_or("map is locked")?;
        let mut obj = serde_json::Map::new();
        for (k, x) in map.iter() {
            spend(left, k.len())?;
            obj.insert(k.to_string(), walk(x, depth + 1, left)?);
        }
        return Ok(Value::Object(obj));
    }
    if v.is_blob() {
        let blob = v.read_lock::<rhai::Blob>().ok_or("blob is locked")?;
        spend(left, blob.len().saturating_mul(VALUE_BYTES))?;
        return Ok(Value::Array(blob.iter().map(|b| Value::from(*b)).collect()));
    }
    if let Some(t) = v.read_lock::<Timestamp>() {
        return Ok(Value::String(t.to_string()));
    }
    if let Some(s) = v.read_lock::<Span>() {
        return Ok(Value::String(s.to_string()));
    }
    Ok(Value::String(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_json() {
        let v = serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": -3}});
        assert_eq!(to_json(&from_json(&v)).unwrap(), v);
    }

    #[test]
    fn a_value_referred_to_many_times_is_refused_before_it_is_copied() {
        // 1 MiB once in memory, 1,000 times as JSON.
        let s = Dynamic::from(rhai::ImmutableString::from("x".repeat(1 << 20)));
        let many = Dynamic::from_array(vec![s.clone(); 1000]);
        assert_eq!(to_json(&many), Err(TOO_LARGE.to_string()));
        let few = Dynamic::from_array(vec![s; 8]);
        assert_eq!(to_json(&few).unwrap().as_array().unwrap().len(), 8);
    }
}
