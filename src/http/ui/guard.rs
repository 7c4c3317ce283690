//! Who may use the UI, and which form posts are honoured.
//!
//! The UI follows the API's rule: with no `api.token` configured (loopback
//! only) it is open; with one, a person signs in by pasting the token once,
//! and gets a session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` behind
//! `X-Forwarded-Proto: https`) that ends after [`SESSION_TTL`] or at sign out.
//! The token itself is never put in a page, a URL or the cookie.
//!
//! Every form post must come from a page of this origin (`Origin` and
//! `Sec-Fetch-Site`, when the browser sends them) and carry the CSRF token of
//! the session (a random value per session, or per process when the UI is
//! open), compared in constant time.

use std::sync::Arc;

use axum::Form;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::session::SESSION_TTL;
use super::{Page, PageError, Ui, view};
use crate::http::problem::Problem;

/// The cookie holding the session id.
pub const COOKIE: &str = "runbookd_session";
/// The form field carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The largest form body read to find the CSRF token.
const MAX_FORM: usize = 64 * 1024;

/// Who is looking at a page: the CSRF token its forms carry, and whether
/// there is a session to sign out of.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Viewer {
    pub csrf: String,
    pub signed_in: bool,
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// Pages need a session when an API token is set: without one, a GET goes
/// to the sign-in page and comes back after it; a post is refused.
pub async fn require(State(ui): State<Arc<Ui>>, mut req: Request, next: Next) -> Response {
    let viewer = if ui.app.api_token.is_none() {
        if !loopback_host(&req) {
            return forbidden(
                "without an API token this UI answers only to loopback names \
                 (localhost, 127.0.0.1, [::1]); set api.token to open it under another name",
            );
        }
        Viewer {
            csrf: ui.sessions.open_csrf.clone(),
            signed_in: false,
        }
    } else {
        match session_cookie(req.headers()).and_then(|id| ui.sessions.csrf(&id)) {
            Some(csrf) => Viewer {
                csrf,
                signed_in: true,
            },
            None if req.method() == Method::GET => {
                let here = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let next: String = form_urlencoded::byte_serialize(here.as_bytes()).collect();
                return Redirect::to(&format!("/login?next={next}")).into_response();
            }
            None => return PageError(Problem::unauthorized()).into_response(),
        }
    };
    req.extensions_mut().insert(viewer);
    next.run(req).await
}

/// Whether the request names this host by a loopback name. An open UI (no
/// token, so listening on loopback) refuses other names: a page of another
/// site whose name was pointed at 127.0.0.1 (DNS rebinding) reads nothing
/// and posts nothing. Requests without a host (HTTP/1.0 scripts) pass.
fn loopback_host(req: &Request) -> bool {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request's browser says it comes from a page of this origin.
/// Clients that send neither header (scripts, old browsers) pass here and
/// still need the CSRF token.
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site")
        && site != "same-origin"
    {
        return false;
    }
    match (get("origin"), get("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        (Some(_), None) => false,
    }
}

fn forbidden(why: &str) -> Response {
    PageError(Problem::new(StatusCode::FORBIDDEN, "Forbidden", why)).into_response()
}

/// Form posts must come from this origin and carry the viewer's CSRF token.
pub async fn check_post(req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    if !same_origin(req.headers()) {
        return forbidden("this form was posted from another site; nothing was done");
    }
    let Some(expected) = req.extensions().get::<Viewer>().map(|v| v.csrf.clone()) else {
        return forbidden("no session");
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return forbidden("the form is too large");
    };
    let given = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        return forbidden(
            "the form's CSRF token is missing or out of date; reload the page and try again",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Where to go after signing in: a path of this site only.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && !p.chars().any(char::is_control) =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_page(State(ui): State<Arc<Ui>>, Query(q): Query<NextQuery>) -> Page {
    let next = local_path(q.next.as_deref());
    if ui.app.api_token.is_none() {
        return Ok(Redirect::to(&next).into_response());
    }
    Ok(view::render(
        "login.html",
        minijinja::context! { next => next, failed => false },
    ))
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

pub async fn login(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Page {
    let next = local_path(f.next.as_deref());
    let Some(token) = &ui.app.api_token else {
        return Ok(Redirect::to(&next).into_response());
    };
    if !same_origin(&headers) {
        return Ok(forbidden(
            "this form was posted from another site; nothing was done",
        ));
    }
    if !bool::from(f.token.trim().as_bytes().ct_eq(token.as_bytes())) {
        let mut resp = view::render(
            "login.html",
            minijinja::context! { next => next, failed => true },
        );
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(resp);
    }
    let id = ui.sessions.start();
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let mut resp = Redirect::to(&next).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(Problem::internal)?,
    );
    Ok(resp)
}

pub async fn logout(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        ui.sessions.end(&id);
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        ))
        .expect("a fixed cookie"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_this_origin_may_post() {
        let host = ("host", "127.0.0.1:8686");
        assert!(same_origin(&headers(&[host])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8686"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
    }

    #[test]
    fn an_open_ui_answers_to_loopback_names_only() {
        let with_host = |h: &str| {
            Request::builder()
                .uri("/")
                .header("host", h)
                .body(Body::empty())
                .unwrap()
        };
        for ok in [
            "127.0.0.1:8686",
            "localhost:8686",
            "[::1]:8686",
            "LOCALHOST",
            "app.localhost:1",
        ] {
            assert!(loopback_host(&with_host(ok)), "{ok}");
        }
        for bad in [
            "evil.example:8686",
            "10.0.0.1:8686",
            "[2001:db8::1]:8686",
            "127.0.0.1.evil.example",
        ] {
            assert!(!loopback_host(&with_host(bad)), "{bad}");
        }
    }

    #[test]
    fn sign_in_returns_to_local_paths_only() {
        assert_eq!(
            local_path(Some("/runs?status=failed")),
            "/runs?status=failed"
        );
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "x",
            "/a\nb",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }
}
