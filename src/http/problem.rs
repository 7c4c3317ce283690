//! Errors over HTTP as `application/problem+json` (RFC 9457).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    /// Seconds, for 503 while draining.
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "authentication failed",
        )
    }

    /// An internal failure: logged with its cause, answered generically.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "the request could not be recorded; retry later",
        )
        .retry(5)
    }

    pub fn retry(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict(m) => {
                Problem::new(StatusCode::CONFLICT, "Conflict", m)
            }
            crate::store::StoreError::Full => {
                tracing::error!("request refused: the disk holding the database is full");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "the disk holding the database is full; nothing was recorded; retry once space is freed",
                )
                .retry(30)
            }
            crate::store::StoreError::Unreachable(cause) => {
                tracing::error!(error = %cause, "request refused: the database cannot be reached");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "the database cannot be reached; nothing was recorded; retry shortly",
                )
                .retry(5)
            }
            other => Problem::internal(other),
        }
    }
}
