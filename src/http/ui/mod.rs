//! The web UI: server-rendered pages at `/` for the people who keep the
//! daemon open in a browser tab. It owns the page routes, the headers every
//! page carries, and how a refusal is shown as a page.
//!
//! - [`guard`]: who may see the pages (the API token, exchanged for a session
//!   cookie) and the CSRF check every form post passes.
//! - [`session`]: the sessions of signed-in people, in memory.
//! - [`view`]: the templates (compiled into the binary), their filters, the
//!   stylesheet and script.
//! - [`overview`]: the overview and a runbook's page with its "Run now" form.
//! - [`runs`]: the runs list and a run in full, with cancel.
//! - [`versions`]: the versions of a runbook that ran, and a diff of two.
//! - [`issues`]: issues by status, acknowledge and resolve.
//! - [`intake`]: webhook deliveries and the email outbox.
//!
//! The pages read through the same store calls and [`super::actions`] as the
//! API, so a page and `GET /api/v1/...` never disagree.

mod guard;
mod intake;
mod issues;
mod overview;
mod runs;
mod session;
mod versions;
mod view;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::AppState;
use super::problem::Problem;

/// What the pages share beyond the daemon's state.
pub struct Ui {
    pub app: Arc<AppState>,
    /// When this process started serving, for the overview's uptime.
    pub started: Instant,
    pub sessions: session::Sessions,
}

/// The UI's routes, with their own state, ready to merge into the daemon's router.
pub fn routes(app: Arc<AppState>) -> Router<Arc<AppState>> {
    let ui = Arc::new(Ui {
        app,
        started: Instant::now(),
        sessions: session::Sessions::new(),
    });
    let pages = Router::new()
        .route("/", get(overview::page))
        .route("/runbooks/{name}", get(overview::runbook))
        .route("/runbooks/{name}/run", post(overview::run_now))
        .route("/runbooks/{name}/diff", get(versions::diff))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::detail))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/issues", get(issues::list))
        .route("/issues/ack", post(issues::ack))
        .route("/issues/resolve", post(issues::resolve))
        .route("/deliveries", get(intake::deliveries))
        .route("/emails", get(intake::emails))
        .route("/logout", post(guard::logout))
        .route_layer(middleware::from_fn_with_state(
            ui.clone(),
            guard::check_post,
        ))
        .route_layer(middleware::from_fn_with_state(ui.clone(), guard::require));
    Router::new()
        .merge(pages)
        .route("/login", get(guard::login_page).post(guard::login))
        .route(view::CSS_PATH, get(view::stylesheet))
        .route(view::JS_PATH, get(view::script))
        .layer(middleware::from_fn(protect))
        .with_state(ui)
}

/// What every UI answer carries: no framing, no sniffing, no script or style
/// but the daemon's own files, no referrer beyond this origin, and no caching
/// of pages that show a team's incidents.
async fn protect(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A page handler's refusal, shown as a page with the problem's status and
/// sentence (the same sentence the API would give).
#[derive(Debug)]
pub struct PageError(Problem);

impl From<Problem> for PageError {
    fn from(p: Problem) -> Self {
        PageError(p)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> Self {
        PageError(Problem::from(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let p = self.0;
        let ctx = minijinja::context! {
            title => p.title,
            status => p.status.as_u16(),
            detail => p.detail,
        };
        let mut resp = view::render("error.html", ctx);
        *resp.status_mut() = p.status;
        if let Some(s) = p.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

pub type Page = Result<Response, PageError>;
