//! The functions a script can call: context helpers, `secret`, `log::*`,
//! `state::*`, JSON and `fail`. Time lives in `time.rs`.
//!
//! Every function is registered once, into shared modules; the run it serves is
//! found through the engine's tag ([`HostHandle`]), so building a per-run
//! engine costs nothing but a few pointer copies.

use std::time::Duration;

use rhai::{Dynamic, EvalAltResult, Module, NativeCallContext, Position};

use super::convert::{from_json, to_json};
use super::host::{HostHandle, LogLevel};
use super::time::Span;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Why a script was stopped from outside its own logic. Carried in
/// `ErrorTerminated`, which `try`/`catch` cannot intercept.
#[derive(Debug, Clone)]
pub enum Stop {
    Deadline,
    Cancelled,
    /// `fail(msg)`: the run ends as failed with this message.
    Fail(String),
    /// The script holds more memory than its budget.
    Memory,
}

/// Register a function that is never constant-folded (time, state and secrets
/// change between calls) and can be called as a method.
macro_rules! reg {
    ($m:expr, $name:expr, $f:expr) => {
        rhai::FuncRegistration::new($name)
            .with_volatility(true)
            .with_namespace(rhai::FnNamespace::Global)
            .set_into_module($m, $f)
    };
}
pub(crate) use reg;

/// The run a function serves, or an error when called while a runbook is
/// being loaded (a module's top level runs then, with no run to serve).
pub fn host(ctx: &NativeCallContext) -> Res<HostHandle> {
    ctx.tag()
        .and_then(|t| t.clone().try_cast::<HostHandle>())
        .ok_or_else(|| {
            format!(
                "{}() cannot be called at the top level of a module; call it inside a function",
                ctx.fn_name()
            )
            .into()
        })
}

fn log_with(level: LogLevel) -> impl Fn(NativeCallContext, Dynamic) -> Res<()> + Send + Sync {
    move |ctx, msg| {
        let text = if msg.is_string() {
            msg.into_string().unwrap_or_default()
        } else {
            msg.to_string()
        };
        host(&ctx)?.ask(|h| h.log(level, &text));
        Ok(())
    }
}

fn ttl_of(v: &Dynamic) -> Res<Duration> {
    if let Some(s) = v.clone().try_cast::<Span>() {
        return s
            .0
            .to_std()
            .map_err(|_| "a state ttl must be positive".into());
    }
    if let Ok(s) = v.clone().into_string() {
        return crate::duration::parse(&s).map_err(Into::into);
    }
    if let Ok(n) = v.as_int() {
        return u64::try_from(n)
            .map(Duration::from_secs)
            .map_err(|_| "a state ttl must be positive".into());
    }
    Err("a state ttl is a duration such as \"1h\" or duration(\"1h\")".into())
}

/// Global functions: `secret`, `fail`, `parse_json`, `to_json`, and time.
pub fn globals() -> Module {
    let mut m = Module::new();
    reg!(&mut m, "secret", |ctx: NativeCallContext,
                            name: &str|
     -> Res<String> {
        host(&ctx)?.ask(|h| h.secret(name)).map_err(Into::into)
    });
    reg!(&mut m, "fail", |msg: Dynamic| -> Res<()> {
        Err(EvalAltResult::ErrorTerminated(
            Dynamic::from(Stop::Fail(msg.to_string())),
            Position::NONE,
        )
        .into())
    });
    reg!(&mut m, "parse_json", |text: &str| -> Res<Dynamic> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("parse_json: not valid JSON: {e}"))?;
        Ok(from_json(&v))
    });
    // The standard package has its own `to_json` for maps, which cannot
    // render timestamps; these more specific ones take its place.
    reg!(&mut m, "to_json", |v: Dynamic| -> Res<String> {
        Ok(to_json(&v)?.to_string())
    });
    reg!(&mut m, "to_json", |v: rhai::Map| -> Res<String> {
        Ok(to_json(&Dynamic::from_map(v))?.to_string())
    });
    reg!(&mut m, "to_json", |v: rhai::Array| -> Res<String> {
        Ok(to_json(&Dynamic::from_array(v))?.to_string())
    });
    // A sleeping script holds a worker and cannot be stopped by its deadline.
    let no_sleep = || -> Res<()> {
        Err("sleep() is not available in runbooks: a step cannot block its worker; use a schedule, or retry with a delay".into())
    };
    reg!(&mut m, "sleep", move |_: i64| no_sleep());
    reg!(&mut m, "sleep", move |_: f64| no_sleep());
    super::time::register(&mut m);
    m
}

/// `log::info/warn/error(msg)`. (`debug` is a Rhai keyword: `debug(msg)` logs at debug level.)
pub fn log_module() -> Module {
    let mut m = Module::new();
    for level in [LogLevel::Info, LogLevel::Warn, LogLevel::Error] {
        reg!(&mut m, level.as_str(), log_with(level));
    }
    m
}

/// `state::get(key [, default])`, `state::set(key, value [, ttl])`, `state::delete(key)`.
pub fn state_module() -> Module {
    let mut m = Module::new();
    reg!(&mut m, "get", |ctx: NativeCallContext,
                         key: &str|
     -> Res<Dynamic> {
        Ok(host(&ctx)?
            .ask_json(|h| h.state_get(key))?
            .unwrap_or(Dynamic::UNIT))
    });
    reg!(&mut m, "get", |ctx: NativeCallContext,
                         key: &str,
                         default: Dynamic|
     -> Res<Dynamic> {
        Ok(host(&ctx)?
            .ask_json(|h| h.state_get(key))?
            .unwrap_or(default))
    });
    reg!(&mut m, "set", |ctx: NativeCallContext,
                         key: &str,
                         value: Dynamic|
     -> Res<()> {
        host(&ctx)?
            .ask(|h| h.state_set(key, to_json(&value)?, None))
            .map_err(Into::into)
    });
    reg!(&mut m, "set", |ctx: NativeCallContext,
                         key: &str,
                         value: Dynamic,
                         ttl: Dynamic|
     -> Res<()> {
        let ttl = ttl_of(&ttl)?;
        host(&ctx)?
            .ask(|h| h.state_set(key, to_json(&value)?, Some(ttl)))
            .map_err(Into::into)
    });
    reg!(&mut m, "delete", |ctx: NativeCallContext,
                            key: &str|
     -> Res<bool> {
        host(&ctx)?.ask(|h| h.state_delete(key)).map_err(Into::into)
    });
    m
}
