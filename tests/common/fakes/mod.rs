//! Stateful fake provider servers for integration tests, each on its own
//! 127.0.0.1 port and speaking the formats in `/work/shared/providers.md`:
//!
//! - [`zendesk::Zendesk`]: Zendesk Support API v2 (search, tickets, rate limits).
//! - [`statuspage::Statuspage`]: Atlassian Statuspage public API v2, several pages.
//! - [`evm::Evm`]: EVM JSON-RPC 2.0 nodes (block head, sync state, chain id).
//! - [`prometheus::Prometheus`]: the Prometheus HTTP query API, from recorded series.
//! - [`recorder::Recorder`]: any management API; records requests, answers canned JSON.
//!
//! Every fake is a cheap `Clone` handle over shared state, takes "now" as an
//! injected value (never the wall clock) and has explicit fault-injection methods.

pub mod evm;
pub mod prometheus;
pub mod recorder;
pub mod statuspage;
pub mod zendesk;

// Not every test binary uses every fake.
#[allow(unused_imports)]
pub use evm::Evm;
#[allow(unused_imports)]
pub use prometheus::Prometheus;
#[allow(unused_imports)]
pub use recorder::{Recorded, Recorder};
#[allow(unused_imports)]
pub use statuspage::Statuspage;
#[allow(unused_imports)]
pub use zendesk::{Ticket, Write, Zendesk};

use chrono::{DateTime, SecondsFormat, Utc};

/// A listener on an ephemeral loopback port, and its base URL
/// (`http://127.0.0.1:PORT`, no trailing slash).
async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("the listener has an address");
    (listener, format!("http://{addr}"))
}

/// Serve `app` on `listener` in the background, for as long as the runtime lives.
fn spawn(listener: tokio::net::TcpListener, app: axum::Router) {
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("the fake serves");
    });
}

/// A JSON reply with the given status code.
fn json(status: u16, body: serde_json::Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    let code = axum::http::StatusCode::from_u16(status).expect("a valid status code");
    (code, axum::Json(body)).into_response()
}

/// The canonical reason phrase of a status code ("Service Unavailable").
fn reason(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("Error")
}

/// `2025-01-08T12:00:00Z` (whole seconds, as Zendesk writes times).
fn secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2025-01-08T12:00:00.000Z` (milliseconds, as Statuspage writes times).
fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
