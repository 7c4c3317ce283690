//! What a run does to the world through its host: issues, email and HTTP.
//! Each checks its input, honours a dry run, and logs what it did.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::host::RunHost;
use crate::config::Config;
use crate::notify::Mailer;
use crate::outbound::Outbound;
use crate::script::{HttpCall, LogLevel};
use crate::secrets::Secrets;
use crate::store::Store;
use crate::store::{IssueFilter, IssueOpen, IssueRow, IssueStatus, NewEmail, Severity, StoredName};
use strum::VariantArray;

/// What runs need to reach the world, shared by all of them.
pub struct Effects {
    pub outbound: Arc<Outbound>,
    /// Email templates; built-in defaults cover the rest.
    pub templates: PathBuf,
    /// The From address of every email.
    pub mail_from: String,
    /// Wakes the mailer when an email is queued (`None`: no mailer runs here).
    pub mail_wake: Option<Arc<Notify>>,
    /// The read-only files `data::read` may open.
    pub data: PathBuf,
    /// Answers HTTP calls from recorded fixtures instead of the network
    /// (runbook tests); the allow list is still enforced.
    pub replay: Option<Arc<dyn HttpReplay>>,
}

/// Recorded answers to HTTP calls, for runbook tests.
pub trait HttpReplay: Send + Sync {
    /// The reply map a live call would give (`status`, `ok`, `headers`,
    /// `body`, `json`, `elapsed_ms`), or why there is none.
    fn answer(&self, call: &HttpCall) -> Result<serde_json::Value, String>;
}

/// HTTP and email for runs, and the mailer when SMTP is configured.
///
/// Fails when the HTTP client or the SMTP settings cannot be set up.
pub fn build_effects(
    config: &Config,
    store: &Arc<dyn Store>,
    secrets: &Secrets,
) -> anyhow::Result<(Arc<Effects>, Option<Mailer>)> {
    let outbound = Arc::new(Outbound::new(
        config.http_allow.clone(),
        config.http_proxy.as_ref().map(|p| &p.0),
    )?);
    let mailer = match &config.smtp {
        Some(s) => Some(Mailer::new(store.clone(), s, secrets).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let effects = Effects {
        outbound,
        templates: config.templates.clone(),
        mail_from: config
            .smtp
            .as_ref()
            .map(|s| s.from.clone())
            .unwrap_or_else(|| "runbookd@localhost".into()),
        mail_wake: mailer.as_ref().map(|m| m.wake.clone()),
        data: config.data.clone(),
        replay: None,
    };
    Ok((Arc::new(effects), mailer))
}

/// A field naming a stored status or kind; other text is the script's error.
fn named<T: StoredName>(
    call: &str,
    field: &str,
    text: Option<String>,
) -> Result<Option<T>, String> {
    text.map(|t| T::named(&format!("{call}: {field}"), &t))
        .transpose()
}

fn issue_json(i: &IssueRow) -> serde_json::Value {
    serde_json::to_value(i).unwrap_or_default()
}

fn text_field(fields: &serde_json::Value, name: &str) -> Option<String> {
    match &fields[name] {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn publish_issue_counts(host: &RunHost) {
    if let Ok(counts) = host.block(host.store.open_issue_counts()) {
        crate::telemetry::issues_open(&counts);
    }
}

pub fn issue_open(
    host: &RunHost,
    key: &str,
    fields: serde_json::Value,
) -> Result<serde_json::Value, String> {
    if key.is_empty() || key.len() > 256 {
        return Err("issues::open: the key is 1 to 256 bytes long".into());
    }
    let key = &host.redactor.redact(key);
    let title = text_field(&fields, "title").ok_or("issues::open: `title` is required")?;
    let severity = named("issues::open", "severity", text_field(&fields, "severity"))?
        .unwrap_or(Severity::Medium);
    let redact = |s: Option<String>| s.map(|v| host.redactor.redact(&v));
    let open = IssueOpen {
        runbook: host.runbook.clone(),
        key: key.to_string(),
        title: host.redactor.redact(&title),
        severity,
        details: redact(text_field(&fields, "details")),
        link: redact(text_field(&fields, "link")),
        at: host.clock.now(),
    };
    if host.planned(format!(
        "open issue {key} ({}): {}",
        open.severity, open.title
    )) {
        let current = host
            .block(host.store.issue(key))
            .map_err(|e| e.to_string())?;
        let is_new = current
            .as_ref()
            .is_none_or(|c| c.status == IssueStatus::Resolved);
        return Ok(serde_json::json!({
            "key": key, "is_new": current.is_none(), "reopened": current.is_some() && is_new,
            "occurrences": current.as_ref().map(|c| c.occurrences + 1).unwrap_or(1),
            "status": current.as_ref().map(|c| c.status).filter(|s| *s != IssueStatus::Resolved).unwrap_or(IssueStatus::Open),
            "dry_run": true,
        }));
    }
    let before = host
        .block(host.store.issue(key))
        .map_err(|e| e.to_string())?;
    let (row, is_new) = host
        .fenced(|fence| async move { host.store.open_issue(fence.as_ref(), &open).await })
        .map_err(|e| format!("issues::open failed: {e}"))?;
    let reopened = before.is_some_and(|b| b.status == IssueStatus::Resolved);
    let what = if is_new {
        "opened"
    } else if reopened {
        "reopened"
    } else {
        "still open"
    };
    host.note(
        LogLevel::Info,
        &format!(
            "issue {key} {what} ({}, seen {}×)",
            row.severity, row.occurrences
        ),
    );
    publish_issue_counts(host);
    let mut v = issue_json(&row);
    v["is_new"] = serde_json::json!(is_new);
    v["reopened"] = serde_json::json!(reopened);
    Ok(v)
}

pub fn issue_resolve(host: &RunHost, key: &str, note: Option<String>) -> Result<bool, String> {
    let key = &host.redactor.redact(key);
    if host.planned(format!("resolve issue {key}")) {
        let current = host
            .block(host.store.issue(key))
            .map_err(|e| e.to_string())?;
        return Ok(current.is_some_and(|c| c.status != IssueStatus::Resolved));
    }
    let note = note.map(|n| host.redactor.redact(&n));
    let was_open = host
        .fenced(|fence| async move {
            let at = host.clock.now();
            let store = &host.store;
            store
                .resolve_issue(fence.as_ref(), key, note.as_deref(), at)
                .await
        })
        .map_err(|e| format!("issues::resolve failed: {e}"))?;
    if was_open {
        host.note(LogLevel::Info, &format!("issue {key} resolved"));
        publish_issue_counts(host);
    }
    Ok(was_open)
}

pub fn issue_get(host: &RunHost, key: &str) -> Result<Option<serde_json::Value>, String> {
    Ok(host
        .block(host.store.issue(&host.redactor.redact(key)))
        .map_err(|e| e.to_string())?
        .as_ref()
        .map(issue_json))
}

pub fn issue_list(host: &RunHost, filter: serde_json::Value) -> Result<serde_json::Value, String> {
    let known = ["status", "severity", "runbook", "older_than", "limit"];
    if let Some(k) = filter
        .as_object()
        .and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())))
    {
        return Err(format!(
            "issues::list: unknown filter `{k}`; filters are {}",
            known.join(", ")
        ));
    }
    let older_than = match text_field(&filter, "older_than") {
        Some(d) => Some(
            host.clock.now()
                - chrono::TimeDelta::from_std(crate::duration::parse(&d)?)
                    .map_err(|_| "older_than is too long")?,
        ),
        None => None,
    };
    let statuses = match text_field(&filter, "status").as_deref() {
        Some("all") => IssueStatus::VARIANTS.to_vec(),
        other => named("issues::list", "status", other.map(str::to_string))?
            .into_iter()
            .collect(),
    };
    let f = IssueFilter {
        statuses,
        severity: named("issues::list", "severity", text_field(&filter, "severity"))?,
        runbook: text_field(&filter, "runbook"),
        older_than,
        limit: filter["limit"].as_u64().unwrap_or(1000) as u32,
    };
    let rows = host
        .block(host.store.list_issues(&f))
        .map_err(|e| format!("issues::list failed: {e}"))?;
    Ok(serde_json::Value::Array(
        rows.iter().map(issue_json).collect(),
    ))
}

pub fn email_send(host: &RunHost, message: serde_json::Value) -> Result<i64, String> {
    let effects = host.effects.as_ref().ok_or("email is not available here")?;
    let composed = crate::notify::compose(&message, &effects.templates)?;
    let n = host
        .sends
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let key = composed.key.clone().unwrap_or_else(|| format!("#{n}"));
    let email = NewEmail {
        idem_key: host
            .redactor
            .redact(&format!("{}|{}|{key}", host.runbook, host.identity)),
        runbook: host.runbook.clone(),
        run_id: Some(host.run_id),
        sender: effects.mail_from.clone(),
        to: composed.to.clone(),
        cc: composed.cc.clone(),
        subject: host.redactor.redact(&composed.subject),
        text: composed.text.as_deref().map(|t| host.redactor.redact(t)),
        html: composed.html.as_deref().map(|t| host.redactor.redact(t)),
        message_id: crate::notify::message_id(&effects.mail_from),
        at: crate::clock::now(),
    };
    if host.planned(format!(
        "email \"{}\" to {}",
        email.subject,
        email.to.join(", ")
    )) {
        return Ok(0);
    }
    let (id, new) = host
        .fenced(|fence| {
            let email = &email;
            async move { host.store.queue_email(fence.as_ref(), email).await }
        })
        .map_err(|e| format!("email::send failed: {e}"))?;
    if new {
        host.note(
            LogLevel::Info,
            &format!(
                "email {id} \"{}\" queued for {}",
                email.subject,
                email.to.join(", ")
            ),
        );
        if let Some(w) = &effects.mail_wake {
            w.notify_one();
        }
    } else {
        host.note(LogLevel::Info, &format!("email {id} was already queued by an earlier attempt (key {key}); not sending it again"));
    }
    Ok(id)
}

pub fn http(host: &RunHost, call: HttpCall) -> Result<serde_json::Value, String> {
    let effects = host.effects.as_ref().ok_or("http is not available here")?;
    // A dry run refuses what the real run would refuse.
    let url = url::Url::parse(&call.url).map_err(|e| format!("{}: not a URL ({e})", call.url))?;
    if let Err(e) = effects.outbound.check(&url, &host.http_allow) {
        // Logged even when the script catches the error.
        host.note(
            LogLevel::Warn,
            &format!("http {} refused: {e}", call.method),
        );
        return Err(e);
    }
    if !matches!(call.method.as_str(), "GET" | "HEAD")
        && !call.read_only
        && host.planned(format!("{} {}", call.method, call.url))
    {
        return Ok(
            serde_json::json!({"status": 0, "ok": true, "headers": {}, "body": "", "json": null, "elapsed_ms": 0, "dry_run": true}),
        );
    }
    if let Some(replay) = &effects.replay {
        let reply = replay.answer(&call);
        let line = match &reply {
            Ok(v) => format!(
                "http {} {} → {} (recorded)",
                call.method, call.url, v["status"]
            ),
            Err(e) => e.clone(),
        };
        host.note(LogLevel::Info, &line);
        return reply.map(|v| host.redactor.redact_json(v));
    }
    let deadline = host
        .deadline
        .lock()
        .expect("deadline lock")
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(30));
    let cancel = host.cancel.clone();
    let outcome = host.block(async {
        // Nothing leaves for a run whose start is not on disk.
        if let Err(e) = host.started().await {
            return Err(format!(
                "http {} {}: the run's start could not be recorded ({e})",
                call.method, call.url
            ));
        }
        // Keep the runbook's spacing between calls, within the step's time.
        let last = *host.last_http.lock().expect("http spacing lock");
        if let Some(at) = last.map(|l| l + host.http_min_interval)
            && at > Instant::now()
        {
            if at >= deadline {
                return Err(format!(
                    "http {} {}: the step has no time left for the runbook's http.min_interval",
                    call.method, call.url
                ));
            }
            tokio::select! {
                _ = tokio::time::sleep_until(at.into()) => {}
                _ = cancel.cancelled() => return Err(format!("http {} {}: the run was stopped", call.method, call.url)),
            }
        }
        let r = tokio::select! {
            r = effects.outbound.call(&call, &host.http_allow, deadline) => r,
            _ = cancel.cancelled() => Err(format!("http {} {}: the run was stopped", call.method, call.url)),
        };
        *host.last_http.lock().expect("http spacing lock") = Some(Instant::now());
        r
    });
    match outcome {
        Ok(reply) => {
            host.note(LogLevel::Info, &reply.log);
            Ok(host.redactor.redact_json(reply.value))
        }
        Err(e) => {
            host.note(LogLevel::Warn, &e);
            Err(host.redactor.redact(&e))
        }
    }
}
