//! The HTTP side of the daemon: webhooks, the `/api/v1` API, the web UI at
//! `/`, health and metrics. Runs are handed to the dispatcher; nothing here executes them.

mod actions;
mod api;
mod auth;
mod hooks;
mod problem;
mod server;
mod ui;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono_tz::Tz;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

pub use auth::{MIN_SECRET_BYTES, check_secret, hex_hmac, verify};
pub use problem::Problem;
pub use server::{ServerLimits, serve};

use crate::run::{Dispatcher, Intake};
use crate::runbook::Registry;
use crate::script::Sandbox;
use crate::secrets::Secrets;
use crate::store::Store;

/// Webhook bodies larger than this are refused (413) before they are read.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Requests that take longer than this are cut off.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a reload reports back to `POST /api/v1/reload`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub runbooks: usize,
    pub errors: Vec<String>,
}

pub type Reload =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ReloadReport> + Send>> + Send + Sync>;

pub struct AppState {
    pub registry: Arc<RwLock<Registry>>,
    pub store: Arc<dyn Store>,
    pub dispatcher: Arc<Dispatcher>,
    pub sandbox: Arc<Sandbox>,
    pub secrets: Secrets,
    /// Where every run is born (manual runs and webhook deliveries here).
    pub intake: Arc<Intake>,
    /// Cancelled when shutdown begins: webhooks get 503 from then on.
    pub closing: CancellationToken,
    /// `None`: the API is open (loopback only).
    pub api_token: Option<String>,
    pub metrics: PrometheusHandle,
    pub reload: Reload,
    pub max_body: usize,
    pub timezone: Tz,
    pub auth_failures: AuthFailures,
    /// The database, as it may be shown (its password masked).
    pub database: String,
    /// Runs older than this are pruned when `POST /api/v1/prune` names no age.
    pub retention: Duration,
}

/// Refused webhook requests (failed authentication, or a path no runbook
/// answers at) are logged at most once a minute per runbook,
/// with how many there were, so a flood cannot fill the log.
#[derive(Default)]
pub struct AuthFailures {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl AuthFailures {
    fn note(&self, runbook: &str, reason: &str) {
        let mut seen = self.seen.lock().expect("auth lock");
        let entry = seen
            .entry(runbook.to_string())
            .or_insert((Instant::now() - Duration::from_secs(61), 0));
        entry.1 += 1;
        if entry.0.elapsed() >= Duration::from_secs(60) {
            tracing::warn!(
                runbook,
                reason,
                failures = entry.1,
                "webhook requests refused"
            );
            *entry = (Instant::now(), 0);
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/hooks/{*path}", post(hooks::receive))
        .nest("/api/v1", api::routes(state.clone()))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(ui::routes(state.clone()))
        .fallback(|| async { Problem::not_found("no such route") })
        .layer(axum::middleware::map_response(as_problem))
        .layer(DefaultBodyLimit::max(state.max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}

/// Client errors the framework answers itself (a query that does not parse,
/// a wrong method, a body that is not JSON) become problem+json like ours.
async fn as_problem(resp: axum::response::Response) -> axum::response::Response {
    let status = resp.status();
    let plain = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|v| v.to_str().unwrap_or("").starts_with("text/plain"));
    if !(status.is_client_error() && plain) {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let detail = String::from_utf8_lossy(&text).trim().to_string();
    let title = status.canonical_reason().unwrap_or("Client error");
    let detail = if detail.is_empty() {
        title.to_ascii_lowercase()
    } else {
        detail
    };
    Problem::new(status, title, detail).into_response()
}

async fn ready(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    let store = app.store.ping().await.is_ok();
    let writes = app.store.writable().await;
    let loaded = app.registry.read().expect("registry lock").loaded;
    let draining = app.closing.is_cancelled();
    let mut body = serde_json::json!({ "store": store, "writes": writes.is_ok(), "runbooks_loaded": loaded, "shutting_down": draining });
    if let Err(e) = &writes {
        body["writes_failing"] = serde_json::json!(e.to_string());
    }
    let ready = store && writes.is_ok() && loaded && !draining;
    let body = axum::Json(body);
    if ready {
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    if let Ok(depth) = app.store.queue_depth().await {
        metrics::gauge!(crate::telemetry::QUEUE_DEPTH).set(depth as f64);
    }
    if let Ok(counts) = app.store.open_issue_counts().await {
        crate::telemetry::issues_open(&counts);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.metrics.render(),
    )
}

/// Whether `addr` may serve the API without a token.
pub fn check_bind(addr: &SocketAddr, token: Option<&str>) -> Result<(), String> {
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to listen on {addr} without an API token; set RUNBOOKD_API_TOKEN (or api_token in the config), or listen on 127.0.0.1"
        ));
    }
    Ok(())
}
