//! The pages' templates and the two files every page loads.
//!
//! Templates are compiled into the binary and rendered by minijinja with
//! HTML auto-escaping (on for every `.html` name): whatever a page shows of a
//! payload, a log line or an issue is text, never markup. The few helpers
//! that return markup ([`when`]) build it from values they parsed themselves.

use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::DateTime;
use minijinja::{Environment, Value};

/// Where the stylesheet and script are served (cacheable: the pages link
/// them with a `?v=` of their content).
pub const CSS_PATH: &str = "/ui/ui.css";
pub const JS_PATH: &str = "/ui/ui.js";

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("error.html", include_str!("templates/error.html")),
    ("login.html", include_str!("templates/login.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("runbook.html", include_str!("templates/runbook.html")),
    ("runs.html", include_str!("templates/runs.html")),
    ("runs_table.html", include_str!("templates/runs_table.html")),
    ("run.html", include_str!("templates/run.html")),
    ("issues.html", include_str!("templates/issues.html")),
    ("deliveries.html", include_str!("templates/deliveries.html")),
    ("emails.html", include_str!("templates/emails.html")),
    ("diff.html", include_str!("templates/diff.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not compile: {e}"));
        }
        env.add_function("when", when);
        env.add_filter("pretty", pretty);
        env.add_filter("q", query_value);
        env.add_filter("web_link", web_link);
        env.add_global("css", format!("{CSS_PATH}?v={}", short_hash(CSS)));
        env.add_global("js", format!("{JS_PATH}?v={}", short_hash(JS)));
        env
    })
}

fn short_hash(s: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..6])
}

/// Render a page; a template that fails to render is logged and answered
/// with a plain 500 (it is a bug of ours, not of the viewer's).
pub fn render(name: &str, ctx: Value) -> Response {
    let result = env().get_template(name).and_then(|t| t.render(ctx));
    match result {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render\n",
            )
                .into_response()
        }
    }
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn stylesheet() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

pub async fn script() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

/// "3 min ago" / "in 2 h", for a difference of `secs` seconds from now.
pub fn relative(secs: i64) -> String {
    let (n, future) = (secs.unsigned_abs(), secs > 0);
    let amount = match n {
        0..45 => return if future { "in a moment" } else { "just now" }.into(),
        45..5400 => format!("{} min", n.div_ceil(60).max(1)),
        5400..129_600 => format!("{} h", (n + 1800) / 3600),
        _ => format!("{} d", (n + 43_200) / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// `<time>` with the relative time as text and the absolute time (UTC) on
/// hover. Anything that is not a time is shown as it is, escaped.
fn when(t: Value) -> Value {
    let Some(at) = t
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.to_utc())
    else {
        return if t.is_none() || t.is_undefined() {
            Value::from("-")
        } else {
            t
        };
    };
    let rel = relative((at - crate::clock::now()).num_seconds());
    Value::from_safe_string(format!(
        "<time datetime=\"{}\" title=\"{}\">{rel}</time>",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at.format("%Y-%m-%d %H:%M:%S UTC")
    ))
}

/// A value as indented JSON (to be shown in `<pre>`, escaped as usual).
fn pretty(v: Value) -> String {
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
}

/// A value for a URL's query string.
fn query_value(v: Value) -> String {
    let s = v
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string());
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A link an issue carries, only when it is `http(s)` (never `javascript:`).
fn web_link(v: Value) -> Option<String> {
    let url = url::Url::parse(v.as_str()?).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_escapes_what_it_shows() {
        let hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";
        let ctx = minijinja::context! { title => "Bad", status => 400, detail => hostile };
        let html = env()
            .get_template("error.html")
            .unwrap()
            .render(ctx)
            .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
    }

    #[test]
    fn times_read_relative_with_the_absolute_time_on_hover() {
        assert_eq!(relative(-10), "just now");
        assert_eq!(relative(-180), "3 min ago");
        assert_eq!(relative(7200), "in 2 h");
        assert_eq!(relative(-3 * 86_400), "3 d ago");
        let html = when(Value::from("2026-01-02T03:04:05Z")).to_string();
        assert!(
            html.starts_with(
                "<time datetime=\"2026-01-02T03:04:05Z\" title=\"2026-01-02 03:04:05 UTC\">"
            ),
            "{html}"
        );
        assert_eq!(when(Value::from("<b>")).to_string(), "<b>");
        assert!(!when(Value::from("<b>")).is_safe());
    }

    #[test]
    fn only_web_links_are_links() {
        assert_eq!(
            web_link(Value::from("https://x.example/t/1")).as_deref(),
            Some("https://x.example/t/1")
        );
        assert_eq!(web_link(Value::from("javascript:alert(1)")), None);
        assert_eq!(web_link(Value::from("data:text/html,x")), None);
    }
}
