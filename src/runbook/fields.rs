//! Validation of a runbook's fields: secrets, params, the HTTP allow list
//! and the retry policy.

use std::collections::BTreeMap;
use std::time::Duration;

use super::model::*;
use super::spec::{ParamSpec, RunbookSpec};
use super::validate::{Ctx, Loc, is_identifier, is_secret_name};

pub(super) fn secrets(names: &[String], ctx: &mut Ctx) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let path = format!("secrets.{i}");
        if !is_secret_name(name) {
            ctx.error(
                Loc::Value(path),
                format!(
                    "secret name \"{name}\" must be an environment variable name (A-Z, 0-9, _)"
                ),
                Some(format!(
                    "did you mean \"{}\"?",
                    name.to_ascii_uppercase().replace(['-', '.', ' '], "_")
                )),
            );
        } else if out.contains(name) {
            ctx.error(
                Loc::Value(path),
                format!("secret {name} is declared twice"),
                None,
            );
        } else {
            out.push(name.clone());
        }
    }
    out
}

pub(super) fn params(specs: &BTreeMap<String, ParamSpec>, ctx: &mut Ctx) -> Vec<ParamDef> {
    let order: Vec<String> = ctx.index.keys_in_order("params").to_vec();
    let mut out = Vec::new();
    for name in order {
        let Some(spec) = specs.get(&name) else {
            continue;
        };
        let path = format!("params.{name}");
        if !is_identifier(&name) {
            ctx.error(
                Loc::Key(path.clone()),
                format!("param name \"{name}\" must be a word of letters, digits and _ (scripts read it as params.{name})"),
                None,
            );
            continue;
        }
        let Some(kind_text) = spec.kind.as_deref() else {
            ctx.error(
                Loc::Key(path),
                format!(
                    "param {name} needs a `type:` ({})",
                    ParamType::ALL.join(", ")
                ),
                None,
            );
            continue;
        };
        let Some(kind) = ctx.choice(
            &format!("{path}.type"),
            kind_text,
            ParamType::parse,
            ParamType::ALL,
        ) else {
            continue;
        };
        let default = match &spec.default {
            None => None,
            Some(v) => match typed_default(kind, v) {
                Ok(j) => Some(j),
                Err(found) => {
                    ctx.error(
                        Loc::Value(format!("{path}.default")),
                        format!(
                            "default of param {name} is {found}, but its type is {}",
                            kind.as_str()
                        ),
                        None,
                    );
                    continue;
                }
            },
        };
        if spec.required == Some(true) && default.is_some() {
            ctx.error(
                Loc::Key(format!("{path}.required")),
                format!("param {name} has a default, so it is never missing; drop `required: true` or the default"),
                None,
            );
            continue;
        }
        let required = spec.required.unwrap_or(default.is_none());
        out.push(ParamDef {
            name,
            kind,
            default,
            description: spec.description.clone(),
            required,
        });
    }
    out
}

pub(super) fn typed_default(
    kind: ParamType,
    v: &serde_yaml::Value,
) -> Result<serde_json::Value, &'static str> {
    use serde_yaml::Value as Y;
    let ok = match (kind, v) {
        (ParamType::String, Y::String(_))
        | (ParamType::Boolean, Y::Bool(_))
        | (ParamType::List, Y::Sequence(_))
        | (ParamType::Map, Y::Mapping(_)) => true,
        (ParamType::Integer, Y::Number(n)) => n.is_i64() || n.is_u64(),
        (ParamType::Number, Y::Number(_)) => true,
        _ => false,
    };
    if !ok {
        return Err(match v {
            Y::Null => "empty",
            Y::Bool(_) => "a boolean",
            Y::Number(n) if n.is_f64() => "a number",
            Y::Number(_) => "an integer",
            Y::String(_) => "a string",
            Y::Sequence(_) => "a list",
            Y::Mapping(_) => "a map",
            Y::Tagged(_) => "a tagged value",
        });
    }
    serde_json::to_value(v).map_err(|_| "not representable as JSON")
}

pub(super) fn http_allow(hosts: &[String], ctx: &mut Ctx) -> Vec<String> {
    let mut out = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        match host_problem(host) {
            None => out.push(host.to_ascii_lowercase()),
            Some((message, hint)) => {
                ctx.error(Loc::Value(format!("http.allow.{i}")), message, hint)
            }
        }
    }
    out
}

/// Why `host` cannot be an entry of an allow list (with a hint), or `None` when it can.
pub(super) fn host_problem(host: &str) -> Option<(String, Option<String>)> {
    let bare = host.strip_prefix("*.").unwrap_or(host);
    let (name, port) = bare.rsplit_once(':').unwrap_or((bare, "1"));
    let valid = !name.is_empty()
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        && port.parse::<u16>().is_ok();
    if valid {
        return None;
    }
    let hint = host
        .split("://")
        .nth(1)
        .map(|h| format!("did you mean \"{}\"?", h.trim_end_matches('/')));
    Some((
        format!("\"{host}\" is not a host name; write hosts like api.example.com or *.example.com"),
        hint,
    ))
}

pub(super) fn retry(spec: &RunbookSpec, ctx: &mut Ctx) -> RetryPolicy {
    let Some(r) = &spec.retry else {
        return RetryPolicy::NONE;
    };
    let mut policy = RetryPolicy {
        attempts: 3,
        ..RetryPolicy::NONE
    };
    if let Some(a) = r.attempts {
        if a == 0 || a > 100 {
            ctx.error(
                Loc::Value("retry.attempts".into()),
                "`retry.attempts` counts the first try and must be 1 to 100",
                None,
            );
        }
        policy.attempts = a.clamp(1, 100);
    }
    if let Some(d) = r
        .delay
        .as_deref()
        .and_then(|t| ctx.duration("retry.delay", t, Duration::ZERO))
    {
        policy.delay = d;
    }
    if let Some(b) = r.backoff {
        if !(1.0..=10.0).contains(&b) {
            ctx.error(Loc::Value("retry.backoff".into()), "`retry.backoff` multiplies the delay after each attempt and must be between 1.0 and 10.0", None);
        }
        policy.backoff = b.clamp(1.0, 10.0);
    }
    if let Some(d) = r
        .max_delay
        .as_deref()
        .and_then(|t| ctx.duration("retry.max_delay", t, Duration::ZERO))
    {
        policy.max_delay = d;
    }
    policy
}
