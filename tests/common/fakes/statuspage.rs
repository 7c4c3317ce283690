//! A fake of the Atlassian Statuspage public API v2 (providers.md §2), serving
//! several vendors' pages by path prefix: `/{slug}/api/v2/summary.json`,
//! `status.json`, `components.json` and `incidents/unresolved.json`.
//!
//! Components start `operational`; `set_component` moves one. The page's
//! `status` is rolled up from the worst component, and each component that is
//! down has an open incident (`identified`) for as long as it stays down; one
//! `under_maintenance` shows as an in-progress scheduled maintenance instead.
//! Faults: `respond_with` (status codes) and `delay` (slow answers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{bind, json, millis, reason, spawn};

/// Component statuses from the least to the most severe.
const SEVERITY: [&str; 5] = [
    "operational",
    "under_maintenance",
    "degraded_performance",
    "partial_outage",
    "major_outage",
];

struct Component {
    id: String,
    name: String,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// The open incident (or maintenance) while the component is not operational.
    event: Option<(String, DateTime<Utc>)>,
}

struct Page {
    id: String,
    name: String,
    created_at: DateTime<Utc>,
    components: Vec<Component>,
    /// Answer the next `.1` requests with status `.0`.
    fault: Option<(u16, usize)>,
    delay: Duration,
}

struct Inner {
    now: DateTime<Utc>,
    pages: HashMap<String, Page>,
    hits: HashMap<String, usize>,
    next_event: u64,
}

/// Handle on a running fake Statuspage host; clones share its state.
#[derive(Clone)]
pub struct Statuspage {
    url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Statuspage {
    pub async fn start(now: DateTime<Utc>) -> Statuspage {
        let (listener, url) = bind().await;
        let sp = Statuspage {
            url,
            inner: Arc::new(Mutex::new(Inner {
                now,
                pages: HashMap::new(),
                hits: HashMap::new(),
                next_event: 0,
            })),
        };
        let app = Router::new()
            .route("/{slug}/api/v2/{*file}", get(answer))
            .with_state(sp.clone());
        spawn(listener, app);
        sp
    }

    /// The host's base URL; a page's API is at `{url}/{slug}/api/v2/`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub fn set_now(&self, now: DateTime<Utc>) {
        self.lock().now = now;
    }

    /// A page whose components (id, name) are all operational.
    pub fn add_page(&self, slug: &str, page_id: &str, name: &str, components: &[(&str, &str)]) {
        let mut s = self.lock();
        let now = s.now;
        let components = components
            .iter()
            .map(|(id, name)| Component {
                id: id.to_string(),
                name: name.to_string(),
                status: "operational".to_string(),
                created_at: now,
                updated_at: now,
                event: None,
            })
            .collect();
        let page = Page {
            id: page_id.to_string(),
            name: name.to_string(),
            created_at: now,
            components,
            fault: None,
            delay: Duration::ZERO,
        };
        s.pages.insert(slug.to_string(), page);
    }

    /// Move a component to `status` (one of the five component statuses).
    pub fn set_component(&self, slug: &str, component_id: &str, status: &str) {
        assert!(
            SEVERITY.contains(&status),
            "unknown component status {status}"
        );
        let mut s = self.lock();
        let (now, n) = (s.now, s.next_event + 1);
        let page = s.pages.get_mut(slug).expect("the page exists");
        let c = page
            .components
            .iter_mut()
            .find(|c| c.id == component_id)
            .expect("the component exists");
        if c.status == status {
            return;
        }
        let maintenance = |st: &str| st == "under_maintenance";
        let new_event = c.status == "operational" || maintenance(&c.status) != maintenance(status);
        c.status = status.to_string();
        c.updated_at = now;
        if status == "operational" {
            c.event = None;
        } else if new_event {
            c.event = Some((format!("inc{n:09}"), now));
            s.next_event = n;
        }
    }

    /// Answer the next `times` requests for the page with `status` (429 adds
    /// `Retry-After: 1`).
    pub fn respond_with(&self, slug: &str, status: u16, times: usize) {
        self.page(slug, |p| p.fault = Some((status, times)));
    }

    /// Wait `delay` before every later answer for the page (zero turns it off).
    pub fn delay(&self, slug: &str, delay: Duration) {
        self.page(slug, |p| p.delay = delay);
    }

    /// Requests seen for the page's path prefix, answered or not.
    pub fn hits(&self, slug: &str) -> usize {
        self.lock().hits.get(slug).copied().unwrap_or(0)
    }

    fn page(&self, slug: &str, change: impl FnOnce(&mut Page)) {
        change(self.lock().pages.get_mut(slug).expect("the page exists"));
    }
}

async fn answer(
    State(sp): State<Statuspage>,
    Path((slug, file)): Path<(String, String)>,
) -> Response {
    let delay = {
        let mut s = sp.lock();
        *s.hits.entry(slug.clone()).or_default() += 1;
        s.pages.get(&slug).map(|p| p.delay)
    };
    let Some(delay) = delay else {
        return json(404, json!({"error": "Not Found"}));
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = sp.lock();
    let page = s.pages.get_mut(&slug).expect("pages are never removed");
    if let Some((status, times)) = page.fault.as_mut()
        && *times > 0
    {
        *times -= 1;
        let status = *status;
        let resp = json(status, json!({"error": reason(status)}));
        if status == 429 {
            return ([("retry-after", "1")], resp).into_response();
        }
        return resp;
    }
    let page = &s.pages[&slug];
    let page_json = page_json(page, &format!("{}/{slug}", sp.url));
    let body = match file.as_str() {
        "status.json" => json!({"page": page_json, "status": rollup(page)}),
        "components.json" => json!({"page": page_json, "components": components(page)}),
        "incidents/unresolved.json" => json!({"page": page_json, "incidents": events(page, false)}),
        "summary.json" => json!({
            "page": page_json,
            "components": components(page),
            "incidents": events(page, false),
            "scheduled_maintenances": events(page, true),
            "status": rollup(page),
        }),
        _ => return json(404, json!({"error": "Not Found"})),
    };
    json(200, body)
}

fn page_json(page: &Page, url: &str) -> Value {
    let updated = page.components.iter().map(|c| c.updated_at).max();
    json!({
        "id": page.id,
        "name": page.name,
        "url": url,
        "time_zone": "Etc/UTC",
        "updated_at": millis(updated.unwrap_or(page.created_at).max(page.created_at)),
    })
}

fn severity(status: &str) -> usize {
    SEVERITY.iter().position(|s| *s == status).unwrap_or(0)
}

/// The page's `status`: its worst component decides.
fn rollup(page: &Page) -> Value {
    let worst = page.components.iter().map(|c| severity(&c.status)).max();
    let (indicator, description) = match SEVERITY[worst.unwrap_or(0)] {
        "major_outage" => ("critical", "Major Service Outage"),
        "partial_outage" => ("major", "Partial System Outage"),
        "degraded_performance" => ("minor", "Partially Degraded Service"),
        "under_maintenance" => ("maintenance", "Service Under Maintenance"),
        _ => ("none", "All Systems Operational"),
    };
    json!({"indicator": indicator, "description": description})
}

fn components(page: &Page) -> Vec<Value> {
    let list = page.components.iter().enumerate();
    list.map(|(i, c)| {
        json!({
            "id": c.id,
            "name": c.name,
            "status": c.status,
            "created_at": millis(c.created_at),
            "updated_at": millis(c.updated_at),
            "position": i + 1,
            "description": null,
            "showcase": true,
            "start_date": null,
            "group_id": null,
            "page_id": page.id,
            "group": false,
            "only_show_if_degraded": false,
        })
    })
    .collect()
}

/// Open incidents (`maintenance == false`) or in-progress maintenances, one
/// per component that is down or under maintenance.
fn events(page: &Page, maintenance: bool) -> Vec<Value> {
    let open = page
        .components
        .iter()
        .filter_map(|c| Some((c, c.event.as_ref()?)));
    open.filter(|(c, _)| (c.status == "under_maintenance") == maintenance)
        .map(|(c, (id, since))| {
            let (status, impact, body) = match c.status.as_str() {
                "under_maintenance" => ("in_progress", "maintenance", "Scheduled maintenance is in progress."),
                "degraded_performance" => ("identified", "minor", "We have identified elevated latency and are applying a fix."),
                "partial_outage" => ("identified", "major", "We have identified the cause of failed requests and are applying a fix."),
                _ => ("identified", "critical", "We have identified the cause of the outage and are working on a fix."),
            };
            let verb = if maintenance { "Maintenance" } else { "Problems" };
            json!({
                "id": id,
                "name": format!("{verb}: {}", c.name),
                "status": status,
                "created_at": millis(*since),
                "updated_at": millis(c.updated_at),
                "monitoring_at": null,
                "resolved_at": null,
                "impact": impact,
                "shortlink": format!("https://stspg.io/{id}"),
                "started_at": millis(*since),
                "page_id": page.id,
                "incident_updates": [{
                    "id": format!("{id}u1"),
                    "status": status,
                    "body": body,
                    "incident_id": id,
                    "created_at": millis(c.updated_at),
                    "updated_at": millis(c.updated_at),
                    "display_at": millis(c.updated_at),
                    "affected_components": [{"code": c.id, "name": c.name,
                        "old_status": "operational", "new_status": c.status}],
                    "deliver_notifications": true,
                }],
                "components": [{"id": c.id, "name": c.name, "status": c.status, "page_id": page.id}],
            })
        })
        .collect()
}
