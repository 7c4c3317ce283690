//! The one shared HTTP client scripts use, its egress policy and retries.
//!
//! A runbook may call only the hosts of its `http.allow` plus the config-wide
//! list. The cloud metadata addresses are refused always: as literal IPs in
//! any spelling (the URL parser normalises hex and octal forms), through DNS
//! (the resolver drops them, so a name cannot rebind to them), through
//! IPv4-mapped IPv6, and on every redirect hop, which is re-checked.
//!
//! Proxy variables of the environment are ignored. A proxy set as `http.proxy`
//! carries the calls, and since it resolves names itself, each name is first
//! resolved here by the same rule and refused if any answer is a metadata
//! address.

mod guard;

use std::sync::Arc;
use std::time::{Duration, Instant};

use url::{Host, Url};

use guard::GuardedResolver;
pub use guard::{Lookup, SystemLookup, denied};

use crate::script::{HttpBody, HttpCall};

/// A call waits at most this long unless it asks for another timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses larger than this are refused.
pub const MAX_RESPONSE: usize = 10 * 1024 * 1024;
const MAX_REDIRECTS: usize = 10;

/// Whether a call may be sent again after a 429/503 or a connection error:
/// idempotent methods, or any method with an `Idempotency-Key` header.
pub fn retryable(call: &HttpCall) -> bool {
    matches!(
        call.method.as_str(),
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS"
    ) || call
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("idempotency-key"))
}

pub struct Outbound {
    client: reqwest::Client,
    /// Hosts every runbook may call (config `http.allow`).
    global_allow: Vec<String>,
    /// Whether calls go through the `http.proxy` (which resolves names itself).
    proxied: bool,
    lookup: Arc<dyn Lookup>,
}

/// What a call returned, and a line for the run log.
pub struct Reply {
    pub value: serde_json::Value,
    pub log: String,
}

/// The script's headers that follow a redirect to another origin; every
/// other one (credentials, API keys, cookies) stays with the origin it named.
pub const FOLLOWING_HEADERS: &[&str] = &["accept", "accept-language", "content-type"];

impl Outbound {
    /// Build the shared client: calls go to `proxy` when one is given, else
    /// straight to the host; names are resolved by the system.
    ///
    /// Fails when the TLS stack or the proxy cannot be set up.
    pub fn new(global_allow: Vec<String>, proxy: Option<&Url>) -> anyhow::Result<Self> {
        Self::with_lookup(global_allow, proxy, Arc::new(SystemLookup))
    }

    /// As [`Outbound::new`], with names resolved by `lookup`.
    ///
    /// Fails when the TLS stack or the proxy cannot be set up.
    pub fn with_lookup(
        global_allow: Vec<String>,
        proxy: Option<&Url>,
        lookup: Arc<dyn Lookup>,
    ) -> anyhow::Result<Self> {
        // One TLS provider for the process (ring); a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // HTTP(S)_PROXY in the daemon's environment would send calls to a
            // proxy that resolves names itself, past the metadata check: only
            // the configured proxy is used, and `follow` vets names for it.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(lookup.clone())))
            .connect_timeout(DEFAULT_TIMEOUT)
            .user_agent(concat!("runbookd/", env!("CARGO_PKG_VERSION")));
        if let Some(p) = proxy {
            builder = builder.proxy(reqwest::Proxy::all(p.as_str())?);
        }
        Ok(Outbound {
            client: builder.build()?,
            global_allow,
            proxied: proxy.is_some(),
            lookup,
        })
    }

    /// Through a proxy, refuse a host name that resolves to a metadata
    /// address (any of its answers: the proxy may pick any), as the resolver
    /// would for a direct call.
    async fn vet_name(&self, url: &Url) -> Result<(), Failure> {
        let Some(Host::Domain(name)) = url.host().filter(|_| self.proxied) else {
            return Ok(());
        };
        let found = self
            .lookup
            .lookup(name)
            .await
            .map_err(|e| Failure::Transport(format!("could not resolve {name} ({e})")))?;
        match found.iter().find(|ip| denied(**ip)) {
            Some(ip) => Err(Failure::Refused(format!(
                "{url}: {name} resolves to {ip}, a cloud metadata address; runbooks may never call it"
            ))),
            None => Ok(()),
        }
    }

    /// Check `url` against the policy for a runbook allowing `allow`
    /// (see [`guard::permitted`]).
    ///
    /// Fails with a sentence naming the host and what to change.
    pub fn check(&self, url: &Url, allow: &[String]) -> Result<(), String> {
        guard::permitted(url, allow.iter().chain(self.global_allow.iter()))
    }

    /// Perform a call within `deadline`, following redirects (each re-checked)
    /// and retrying where the call allows it.
    ///
    /// Fails on a policy refusal, a connection error or timeout after the
    /// retries, or a response over [`MAX_RESPONSE`]. A non-2xx status is a
    /// value, not an error.
    pub async fn call(
        &self,
        call: &HttpCall,
        allow: &[String],
        deadline: Instant,
    ) -> Result<Reply, String> {
        let mut url =
            Url::parse(&call.url).map_err(|e| format!("{}: not a URL ({e})", call.url))?;
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(call.query.iter());
        }
        let idempotent = retryable(call);
        let started = Instant::now();
        let mut tries = 0;
        loop {
            let outcome = self.follow(call, url.clone(), allow, deadline).await;
            let retry_after = match &outcome {
                Ok((resp_status, _, headers, _)) if matches!(*resp_status, 429 | 503) => {
                    Some(retry_after(headers).unwrap_or(backoff(tries)))
                }
                Ok(_) => None,
                Err(Failure::Transport(_)) => Some(backoff(tries)),
                Err(Failure::Refused(_)) => None,
            };
            let can_retry = idempotent
                && tries < call.retries
                && retry_after.is_some_and(|w| Instant::now() + w < deadline);
            if can_retry {
                tries += 1;
                tokio::time::sleep(retry_after.unwrap_or_default()).await;
                continue;
            }
            let elapsed = started.elapsed().as_millis() as u64;
            let tried = if tries > 0 {
                format!(" after {tries} retries")
            } else {
                String::new()
            };
            let shown = crate::secrets::shown_url(&url);
            let host = url.host_str().unwrap_or("").to_string();
            return match outcome {
                Ok((status, final_url, headers, body)) => {
                    metrics::counter!(crate::telemetry::HTTP_REQUESTS, "host" => host, "status" => status.to_string()).increment(1);
                    let json = serde_json::from_slice::<serde_json::Value>(&body)
                        .unwrap_or(serde_json::Value::Null);
                    let value = serde_json::json!({
                        "status": status,
                        "ok": (200..300).contains(&status),
                        "headers": headers,
                        "body": String::from_utf8_lossy(&body),
                        "json": json,
                        "elapsed_ms": elapsed,
                        "url": final_url.as_str(),
                    });
                    Ok(Reply {
                        value,
                        log: format!(
                            "http {} {shown} → {status} in {elapsed}ms{tried}",
                            call.method
                        ),
                    })
                }
                Err(Failure::Refused(why)) | Err(Failure::Transport(why)) => {
                    metrics::counter!(crate::telemetry::HTTP_REQUESTS, "host" => host, "status" => "error").increment(1);
                    Err(format!("http {} {shown} failed{tried}: {why}", call.method))
                }
            };
        }
    }

    async fn follow(
        &self,
        call: &HttpCall,
        mut url: Url,
        allow: &[String],
        deadline: Instant,
    ) -> Result<Response, Failure> {
        let mut method = reqwest::Method::from_bytes(call.method.as_bytes())
            .map_err(|_| Failure::Refused(format!("unknown method {}", call.method)))?;
        let mut with_body = true;
        let origin = url.origin();
        for _ in 0..=MAX_REDIRECTS {
            // The script's headers and credentials go to the origin it named;
            // another origin a redirect leads to gets only content negotiation.
            let same_origin = url.origin() == origin;
            self.check(&url, allow).map_err(Failure::Refused)?;
            self.vet_name(&url).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Refused("the step has no time left".into()));
            }
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .timeout(call.timeout.unwrap_or(DEFAULT_TIMEOUT).min(left));
            for (k, v) in &call.headers {
                if same_origin || FOLLOWING_HEADERS.iter().any(|h| k.eq_ignore_ascii_case(h)) {
                    req = req.header(k, v);
                }
            }
            if let Some(t) = call.bearer.as_ref().filter(|_| same_origin) {
                req = req.bearer_auth(t);
            }
            if let Some((u, p)) = call.basic.as_ref().filter(|_| same_origin) {
                req = req.basic_auth(u, Some(p));
            }
            if with_body {
                req = match &call.body {
                    HttpBody::None => req,
                    HttpBody::Json(v) => req.json(v),
                    HttpBody::Form(f) => req.form(f),
                    HttpBody::Text(t) => req.body(t.clone()),
                };
            }
            let mut resp = req
                .send()
                .await
                .map_err(|e| Failure::Transport(describe(&e)))?;
            let status = resp.status();
            if status.is_redirection()
                && let Some(loc) = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
            {
                url = url
                    .join(loc)
                    .map_err(|_| Failure::Refused(format!("bad redirect location {loc}")))?;
                if matches!(status.as_u16(), 301..=303) {
                    method = if method == reqwest::Method::HEAD {
                        method
                    } else {
                        reqwest::Method::GET
                    };
                    with_body = false;
                }
                continue;
            }
            let mut headers = serde_json::Map::new();
            for (k, v) in resp.headers() {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                match headers.get_mut(k.as_str()) {
                    Some(serde_json::Value::String(prev)) => *prev = format!("{prev}, {v}"),
                    _ => {
                        headers.insert(k.as_str().to_string(), serde_json::Value::String(v));
                    }
                }
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| Failure::Transport(describe(&e)))?
            {
                if body.len() + chunk.len() > MAX_RESPONSE {
                    return Err(Failure::Refused(format!(
                        "the response is larger than {} MiB",
                        MAX_RESPONSE / (1024 * 1024)
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            return Ok((
                status.as_u16(),
                url,
                serde_json::Value::Object(headers),
                body,
            ));
        }
        Err(Failure::Refused(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }
}

type Response = (u16, Url, serde_json::Value, Vec<u8>);

enum Failure {
    /// The policy or the response itself: retrying will not help.
    Refused(String),
    /// Connection, DNS or timeout: may pass.
    Transport(String),
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
        let mut last = String::new();
        while let Some(s) = src {
            last = s.to_string();
            src = s.source();
        }
        format!("could not connect ({last})")
    } else {
        e.to_string()
    }
}

fn backoff(tries: u32) -> Duration {
    Duration::from_millis(500 * 2u64.pow(tries.min(6)))
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &serde_json::Value) -> Option<Duration> {
    let v = headers.get("retry-after")?.as_str()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.to_utc() - chrono::Utc::now()).to_std().ok()
}

#[cfg(test)]
mod tests;
