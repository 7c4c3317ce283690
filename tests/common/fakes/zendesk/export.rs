//! The fake's `GET /api/v2/search/export.json` (providers.md §1.1): the same
//! query subset as search, without the 1,000-result cap, paged by an opaque
//! cursor (`page[after]`, `meta.has_more`, `links.next`). `filter[type]` is
//! required, as it is by Zendesk; `page[size]` is 1 to 1,000.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};

use super::{Zendesk, error, find, ticket_json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn cursor(offset: usize) -> String {
    B64.encode(json!({"o": offset}).to_string())
}

fn offset(cursor: &str) -> Option<usize> {
    let bytes = B64.decode(cursor).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["o"].as_u64().map(|n| n as usize)
}

pub(super) async fn export(State(z): State<Zendesk>, RawQuery(raw): RawQuery) -> Response {
    let (params, mut found) = match find(&mut z.lock(), raw) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    if params.get("filter[type]").map(String::as_str) != Some("ticket") {
        return error(400, "InvalidParameter", "filter[type] is required");
    }
    let size = match params.get("page[size]") {
        None => Some(1000),
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=1000).contains(n)),
    };
    let start = match params.get("page[after]") {
        None => Some(0),
        Some(c) => offset(c),
    };
    let (Some(size), Some(start)) = (size, start) else {
        return error(
            400,
            "InvalidPaginationParameter",
            "bad page[size] or page[after]",
        );
    };
    // Export does not sort: results come in the index's own order.
    found.sort_by_key(|t| t.id);
    let end = (start + size).min(found.len());
    let results: Vec<Value> = found[start.min(end)..end]
        .iter()
        .map(|t| ticket_json(&z.url, t, true))
        .collect();
    let has_more = end < found.len();
    let next = has_more.then(|| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("filter[type]", "ticket");
        q.append_pair("page[after]", &cursor(end));
        q.append_pair("page[size]", &size.to_string());
        q.append_pair("query", &params["query"]);
        format!("{}/api/v2/search/export.json?{}", z.url, q.finish())
    });
    let body = json!({
        "results": results,
        "meta": {"has_more": has_more, "after_cursor": has_more.then(|| cursor(end)), "before_cursor": null},
        "links": {"next": next, "prev": null},
    });
    super::json(200, body)
}
