//! The script API that reaches beyond the run: `issues::*`, `email::send`
//! and `http::*`. Arguments are checked and turned into plain data here; the
//! host decides what happens (and, in a dry run, only records it).

use std::time::Duration;

use rhai::{Dynamic, EvalAltResult, Map, Module, NativeCallContext};

use super::api::{host, reg};
use super::convert::to_json;
use super::host::{Host, HttpBody, HttpCall};
use super::time::Span;

type Res<T> = Result<T, Box<EvalAltResult>>;

/// A host's JSON answer, as the script value it becomes.
fn answer(
    ctx: &NativeCallContext,
    f: impl FnOnce(&dyn Host) -> Result<serde_json::Value, String>,
) -> Res<Dynamic> {
    let value = host(ctx)?.ask_json(|h| f(h).map(Some))?;
    Ok(value.unwrap_or(Dynamic::UNIT))
}

/// `issues::open/resolve/get/list`.
pub fn issues_module() -> Module {
    let mut m = Module::new();
    reg!(&mut m, "open", |ctx: NativeCallContext,
                          key: &str,
                          fields: Map|
     -> Res<Dynamic> {
        // Script values are converted inside the call but dropped outside it,
        // where freeing them counts.
        let fields = Dynamic::from_map(fields);
        answer(&ctx, |h| h.issue_open(key, to_json(&fields)?))
    });
    reg!(&mut m, "resolve", |ctx: NativeCallContext,
                             key: &str|
     -> Res<bool> {
        host(&ctx)?
            .ask(|h| h.issue_resolve(key, None))
            .map_err(Into::into)
    });
    reg!(&mut m, "resolve", |ctx: NativeCallContext,
                             key: &str,
                             note: &str|
     -> Res<bool> {
        host(&ctx)?
            .ask(|h| h.issue_resolve(key, Some(note.to_string())))
            .map_err(Into::into)
    });
    reg!(&mut m, "get", |ctx: NativeCallContext,
                         key: &str|
     -> Res<Dynamic> {
        Ok(host(&ctx)?
            .ask_json(|h| h.issue_get(key))?
            .unwrap_or(Dynamic::UNIT))
    });
    reg!(&mut m, "list", |ctx: NativeCallContext| -> Res<Dynamic> {
        answer(&ctx, |h| h.issue_list(serde_json::json!({})))
    });
    reg!(&mut m, "list", |ctx: NativeCallContext,
                          filter: Map|
     -> Res<Dynamic> {
        let filter = Dynamic::from_map(filter);
        answer(&ctx, |h| h.issue_list(to_json(&filter)?))
    });
    m
}

/// `email::send(#{...})`.
pub fn email_module() -> Module {
    let mut m = Module::new();
    reg!(&mut m, "send", |ctx: NativeCallContext,
                          message: Map|
     -> Res<i64> {
        let message = Dynamic::from_map(message);
        host(&ctx)?
            .ask(|h| h.email_send(to_json(&message)?))
            .map_err(Into::into)
    });
    m
}

/// `data::read(name)`: a file of the deployment's `data/` directory.
pub fn data_module() -> Module {
    let mut m = Module::new();
    reg!(&mut m, "read", |ctx: NativeCallContext,
                          name: &str|
     -> Res<Dynamic> {
        answer(&ctx, |h| h.data_read(name))
    });
    m
}

fn pairs(v: Option<&Dynamic>, what: &str) -> Res<Vec<(String, String)>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let map = v
        .clone()
        .try_cast::<Map>()
        .ok_or_else(|| format!("http: `{what}` must be a map"))?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let text = if v.is_string() {
                v.into_string().unwrap_or_default()
            } else {
                v.to_string()
            };
            (k.to_string(), text)
        })
        .collect())
}

/// Build a call from a method, a URL, an optional body and the options map.
fn call(method: &str, url: &str, body: Option<Dynamic>, opts: Map) -> Res<HttpCall> {
    let known = [
        "headers", "query", "json", "form", "body", "timeout", "bearer", "basic", "retry", "read",
        "method", "url",
    ];
    if let Some(k) = opts.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!(
            "http: unknown option `{k}`; options are {}",
            known[..10].join(", ")
        )
        .into());
    }
    let mut c = HttpCall {
        method: method.to_ascii_uppercase(),
        url: url.to_string(),
        ..HttpCall::default()
    };
    c.headers = pairs(opts.get("headers"), "headers")?;
    c.query = pairs(opts.get("query"), "query")?;
    c.body = match (body, opts.get("json"), opts.get("form"), opts.get("body")) {
        (Some(b), ..) if b.is_string() => HttpBody::Text(b.into_string().unwrap_or_default()),
        (Some(b), ..) if !b.is_unit() => HttpBody::Json(to_json(&b)?),
        (_, Some(j), ..) => HttpBody::Json(to_json(j)?),
        (_, _, Some(f), _) => HttpBody::Form(pairs(Some(f), "form")?),
        (_, _, _, Some(b)) => HttpBody::Text(b.to_string()),
        _ => HttpBody::None,
    };
    if let Some(t) = opts.get("timeout") {
        c.timeout = Some(if let Some(s) = t.clone().try_cast::<Span>() {
            s.0.to_std().map_err(|_| "http: timeout must be positive")?
        } else if t.is_string() {
            crate::duration::parse(&t.clone().into_string().unwrap_or_default())
                .map_err(|e| format!("http: timeout: {e}"))?
        } else {
            Duration::from_secs(
                t.as_int()
                    .map_err(|_| "http: timeout is a duration such as \"5s\"")?
                    .max(0) as u64,
            )
        });
    }
    c.bearer = opts.get("bearer").map(|b| b.to_string());
    if let Some(b) = opts.get("basic") {
        let arr = b
            .clone()
            .try_cast::<rhai::Array>()
            .filter(|a| a.len() == 2)
            .ok_or("http: `basic` is [user, password]")?;
        c.basic = Some((arr[0].to_string(), arr[1].to_string()));
    }
    c.read_only = match opts.get("read") {
        None => false,
        Some(r) => r.as_bool().map_err(|_| "http: `read` is true or false")?,
    };
    c.retries = match opts.get("retry") {
        None => 0,
        Some(r) if r.is_bool() => u32::from(r.as_bool().unwrap_or(false)) * 3,
        Some(r) => r
            .as_int()
            .map_err(|_| "http: `retry` is a number of retries or true")?
            .clamp(0, 10) as u32,
    };
    Ok(c)
}

/// Make the call. The host takes a copy: `c` was built by the script and is
/// freed here, where that counts.
fn run(ctx: &NativeCallContext, c: HttpCall) -> Res<Dynamic> {
    answer(ctx, |h| h.http(c.clone()))
}

/// `http::get/post/put/patch/delete/request`.
pub fn http_module() -> Module {
    let mut m = Module::new();
    for method in ["get", "delete", "head", "post", "put", "patch"] {
        reg!(&mut m, method, move |ctx: NativeCallContext,
                                   url: &str|
              -> Res<Dynamic> {
            run(&ctx, call(method, url, None, Map::new())?)
        });
    }
    for method in ["get", "delete", "head"] {
        reg!(&mut m, method, move |ctx: NativeCallContext,
                                   url: &str,
                                   opts: Map|
              -> Res<Dynamic> {
            run(&ctx, call(method, url, None, opts)?)
        });
    }
    for method in ["post", "put", "patch"] {
        reg!(&mut m, method, move |ctx: NativeCallContext,
                                   url: &str,
                                   body: Dynamic|
              -> Res<Dynamic> {
            run(&ctx, call(method, url, Some(body), Map::new())?)
        });
        reg!(&mut m, method, move |ctx: NativeCallContext,
                                   url: &str,
                                   body: Dynamic,
                                   opts: Map|
              -> Res<Dynamic> {
            run(&ctx, call(method, url, Some(body), opts)?)
        });
    }
    reg!(&mut m, "request", |ctx: NativeCallContext,
                             opts: Map|
     -> Res<Dynamic> {
        let method = opts
            .get("method")
            .map(|m| m.to_string())
            .unwrap_or_else(|| "GET".into());
        let url = opts
            .get("url")
            .map(|u| u.to_string())
            .ok_or("http::request needs `url`")?;
        run(&ctx, call(&method, &url, None, opts)?)
    });
    m
}
