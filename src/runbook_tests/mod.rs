//! Runbook tests (`runbookd test`): each case runs a runbook for real — the
//! same executor, sandbox and store code as the daemon — against recorded HTTP
//! replies, a fixed clock, given params, trigger, state and issues, in a
//! throw-away database; then compares status, HTTP calls, emails, issues,
//! state, output and log with what the case expects. The format is in
//! docs/testing.md.

pub mod compare;
mod expect;
pub mod format;
mod replay;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::outbound::Outbound;
use crate::run::intake::{Arrival, Verdict, judge};
use crate::run::{Clock, Effects, Executor, Intake, RunRequest, TriggerInfo, bind_json_params};
use crate::runbook::Runbook;
use crate::script::Sandbox;
use crate::secrets::Secrets;
use crate::store::{
    Access, DeliveryOutcome, IssueOpen, IssueStatus, Severity, Store, StoredName, TriggerKind,
};
use expect::Actual;
use format::{Case, SeedIssue, TestFile};
use replay::Replay;

/// A test file as read, or why it cannot be.
pub struct Suite {
    pub path: PathBuf,
    pub file: TestFile,
}

/// Every `*.yaml` file of `dir` (sorted), parsed; `only` keeps the files
/// testing that runbook.
///
/// Fails with one message per file that cannot be read or parsed, each
/// naming the file (and the line, for YAML errors).
pub fn discover(dir: &Path, only: Option<&str>) -> Result<Vec<Suite>, Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![format!(
            "{}: cannot read the tests directory: {e}",
            dir.display()
        )]
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    let mut suites = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_yaml::from_str::<TestFile>(&t).map_err(|e| e.to_string()));
        match parsed {
            Ok(file) if only.is_none_or(|n| n == file.runbook) => suites.push(Suite { path, file }),
            Ok(_) => {}
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    if errors.is_empty() {
        Ok(suites)
    } else {
        Err(errors)
    }
}

/// How one case went.
#[derive(Debug, serde::Serialize)]
pub struct CaseReport {
    pub runbook: String,
    pub file: String,
    pub case: String,
    /// The run's status, when it ran.
    pub status: Option<String>,
    /// One entry per expectation that did not hold (with its diff).
    pub failures: Vec<String>,
    /// The run's log, to read when a case fails.
    pub log: Vec<String>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// What every case needs from the deployment.
pub struct Bench {
    pub config: Config,
    pub sandbox: Arc<Sandbox>,
    pub runbooks: Vec<Arc<Runbook>>,
    outbound: Arc<Outbound>,
}

impl Bench {
    /// Fails when the HTTP policy cannot be set up.
    pub fn new(
        config: Config,
        sandbox: Arc<Sandbox>,
        runbooks: Vec<Arc<Runbook>>,
    ) -> anyhow::Result<Self> {
        let outbound = Arc::new(Outbound::new(config.http_allow.clone(), None)?);
        Ok(Bench {
            config,
            sandbox,
            runbooks,
            outbound,
        })
    }

    /// Run every case of a file.
    pub async fn run_suite(&self, suite: &Suite) -> Vec<CaseReport> {
        let mut out = Vec::new();
        for case in &suite.file.cases {
            let mut report = CaseReport {
                runbook: suite.file.runbook.clone(),
                file: suite.path.display().to_string(),
                case: case.name.clone(),
                status: None,
                failures: Vec::new(),
                log: Vec::new(),
            };
            if let Err(e) = self.run_case(suite, case, &mut report).await {
                report.failures.push(e);
            }
            out.push(report);
        }
        out
    }

    async fn run_case(
        &self,
        suite: &Suite,
        case: &Case,
        report: &mut CaseReport,
    ) -> Result<(), String> {
        let tf = &suite.file;
        let dir = suite.path.parent().unwrap_or(Path::new("."));
        let rb = self
            .runbooks
            .iter()
            .find(|r| r.name == tf.runbook)
            .ok_or_else(|| format!("there is no runbook named \"{}\" (or it has errors; `runbookd check` lists them)", tf.runbook))?;
        // Retries happen, but without waiting: the clock stands still.
        let mut copy = (**rb).clone();
        copy.retry.delay = Duration::ZERO;
        copy.retry.max_delay = Duration::ZERO;
        let rb = Arc::new(copy);
        let now = time(&case.now, "now")?;

        let (tmp, store) = seeded_store(&rb.name, case, now).await?;
        let fixtures: Vec<_> = case.http.iter().chain(tf.http.iter()).collect();
        let replay = Arc::new(Replay::load(&fixtures, dir)?);
        let effects = self.effects(tf, case, dir, replay.clone())?;
        let secrets = Secrets::only(
            tf.secrets
                .iter()
                .chain(case.secrets.iter())
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let params = bind_json_params(&rb, &case.params).map_err(|p| p.join("; "))?;
        let trigger = trigger(case, now, dir)?;
        let tz = self.timezone(tf)?;
        let trigger = match trigger.kind {
            TriggerKind::Webhook => match self.webhook_gate(&rb, &trigger, case, tz, report).await?
            {
                Some(judged) => judged,
                None => return Ok(()),
            },
            _ => trigger,
        };
        let executor = Executor::new(store.clone(), self.sandbox.clone(), secrets, tz, 1)
            .with_effects(Arc::new(effects));
        let mut req = RunRequest::new(rb.clone(), trigger, params, &CancellationToken::new());
        req.clock = Clock::fixed(now);
        req.dry_run = case.dry_run;
        let run_id = Intake::start(store.clone(), None)
            .submit(&req)
            .await
            .map_err(|e| format!("cannot record the run: {e}"))?;
        let outcome = executor.execute(run_id, req).await;
        report.status = Some(outcome.status.as_str().to_string());
        if let Ok(Some(detail)) = store.run_detail(run_id).await {
            report.log = detail
                .logs
                .iter()
                .map(|l| {
                    let step = l.step.as_deref().unwrap_or("-");
                    format!("{:<5} [{step}] {}", l.level, l.message)
                })
                .collect();
        }
        let calls: Vec<_> = replay.calls.lock().expect("calls lock").clone();
        let actual = Actual {
            status: outcome.status.as_str().to_string(),
            error: outcome.error.clone(),
            output: outcome.output.clone().unwrap_or(Value::Null),
            calls: calls.iter().map(|c| c.to_json()).collect(),
            store,
            runbook: rb.name.clone(),
            now,
            log: report.log.clone(),
        };
        report.failures = actual.compare(&case.expect).await;
        drop(tmp);
        Ok(())
    }

    /// HTTP (recorded replies, the file's extra `allow`), email and data for a case.
    fn effects(
        &self,
        tf: &TestFile,
        case: &Case,
        dir: &Path,
        replay: Arc<Replay>,
    ) -> Result<Effects, String> {
        let outbound = if tf.allow.is_empty() {
            self.outbound.clone()
        } else {
            let mut allow = self.config.http_allow.clone();
            allow.extend(tf.allow.iter().cloned());
            Arc::new(Outbound::new(allow, None).map_err(|e| format!("{e:#}"))?)
        };
        Ok(Effects {
            outbound,
            templates: self.config.templates.clone(),
            mail_from: self
                .config
                .smtp
                .as_ref()
                .map(|s| s.from.clone())
                .unwrap_or_else(|| "runbookd@localhost".into()),
            mail_wake: None,
            data: case
                .data
                .as_ref()
                .map(|d| dir.join(d))
                .unwrap_or_else(|| self.config.data.clone()),
            replay: Some(replay),
        })
    }

    /// What the daemon decides before a delivery runs (the same judge): its
    /// dedup key and its `when:` filter. Returns the trigger the run sees,
    /// or `None` when the delivery would not run (the case's status is then
    /// `filtered`). The test file gives the body as data, read as JSON.
    async fn webhook_gate(
        &self,
        rb: &Runbook,
        trigger: &TriggerInfo,
        case: &Case,
        tz: chrono_tz::Tz,
        report: &mut CaseReport,
    ) -> Result<Option<TriggerInfo>, String> {
        let Some(w) = rb.triggers.iter().find_map(|t| match t {
            crate::runbook::Trigger::Webhook(w) => Some(w),
            _ => None,
        }) else {
            return Err(format!("runbook {} has no webhook trigger", rb.name));
        };
        let raw = trigger.data["body"].to_string();
        let arrival = Arrival {
            trigger: w,
            content_type: "application/json",
            raw: raw.as_bytes(),
            headers: trigger.data["headers"].clone(),
            query: trigger.data["query"].clone(),
        };
        let expect = &case.expect;
        let (dedup_key, data) = match judge(&self.sandbox, tz, &arrival).await {
            Verdict::Rejected { detail } => return Err(detail),
            Verdict::Filtered { dedup_key } => (dedup_key, None),
            Verdict::Run { dedup_key, data } => (dedup_key, Some(data)),
        };
        if let Some(want) = &expect.dedup {
            report
                .failures
                .extend(compare::check("dedup", &json!(dedup_key), &json!(want)));
        }
        let Some(mut data) = data else {
            report.status = Some(DeliveryOutcome::Filtered.to_string());
            let want = expect.status.as_deref().unwrap_or("succeeded");
            report
                .failures
                .extend(compare::check("status", &json!("filtered"), &json!(want)));
            let e = expect;
            if e.output.is_some()
                || e.http.is_some()
                || e.emails.is_some()
                || e.issues.is_some()
                || e.state.is_some()
                || !e.logs.is_empty()
            {
                report.failures.push(
                    "`when:` is false, so nothing ran: only `status` and `dedup` can be expected"
                        .into(),
                );
            }
            return Ok(None);
        };
        data["delivery_id"] = trigger.data["delivery_id"].clone();
        Ok(Some(TriggerInfo {
            data,
            ..trigger.clone()
        }))
    }

    /// The file's `timezone`, else the deployment's.
    fn timezone(&self, tf: &TestFile) -> Result<chrono_tz::Tz, String> {
        match &tf.timezone {
            None => Ok(self.config.timezone),
            Some(z) => z
                .parse()
                .map_err(|_| format!("timezone \"{z}\" is not an IANA zone such as Europe/Paris")),
        }
    }
}

fn time(text: &str, what: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|_| {
            format!("`{what}: {text}` is not an RFC 3339 time such as 2025-01-08T12:00:00Z")
        })
}

fn trigger(case: &Case, now: DateTime<Utc>, dir: &Path) -> Result<TriggerInfo, String> {
    let Some(t) = &case.trigger else {
        return Ok(TriggerInfo::manual());
    };
    let kind = TriggerKind::named("trigger.kind", t.kind.as_deref().unwrap_or("manual"))?;
    match kind {
        TriggerKind::Manual => Ok(TriggerInfo::manual()),
        TriggerKind::Cron | TriggerKind::Every => {
            let at = match &t.scheduled_at {
                Some(s) => time(s, "trigger.scheduled_at")?,
                None => now,
            };
            Ok(TriggerInfo {
                kind,
                key: Some("test".into()),
                scheduled_at: Some(at),
                data: json!({}),
            })
        }
        TriggerKind::Webhook => {
            let body = match (&t.body, &t.body_file) {
                (Some(b), _) => b.clone(),
                (None, Some(f)) => {
                    let path = dir.join(f);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    serde_json::from_str(&text)
                        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?
                }
                (None, None) => Value::Null,
            };
            let headers: serde_json::Map<String, Value> = t
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), Value::String(v.clone())))
                .collect();
            Ok(TriggerInfo {
                kind,
                key: None,
                scheduled_at: None,
                data: json!({
                    "body": body,
                    "raw": body.to_string(),
                    "headers": headers,
                    "query": t.query,
                    "delivery_id": t.delivery_id.clone().unwrap_or(json!(1)),
                }),
            })
        }
    }
}

/// A throw-away database for one case, with the case's state and issues.
async fn seeded_store(
    runbook: &str,
    case: &Case,
    now: DateTime<Utc>,
) -> Result<(tempfile::TempDir, Arc<dyn Store>), String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let url = tmp.path().join("test.db").display().to_string();
    let store = crate::store::open(&url, Access::Exclusive)
        .await
        .map_err(|e| format!("cannot open a test database: {e}"))?;
    for (k, v) in &case.state {
        store
            .state_set(None, runbook, k, v, None, now)
            .await
            .map_err(|e| e.to_string())?;
    }
    for issue in &case.issues {
        seed_issue(store.as_ref(), runbook, issue, now).await?;
    }
    Ok((tmp, store))
}

async fn seed_issue(
    store: &dyn Store,
    runbook: &str,
    i: &SeedIssue,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let first = match &i.first_seen {
        Some(t) => time(t, "issues.first_seen")?,
        None => now,
    };
    let last = match &i.last_seen {
        Some(t) => time(t, "issues.last_seen")?,
        None => first,
    };
    let mut open = IssueOpen {
        runbook: i.runbook.clone().unwrap_or_else(|| runbook.to_string()),
        key: i.key.clone(),
        title: i.title.clone(),
        severity: Severity::named("issues: severity", &i.severity)?,
        details: i.details.clone(),
        link: i.link.clone(),
        at: first,
    };
    let err = |e: crate::store::StoreError| format!("cannot seed issue {}: {e}", i.key);
    store.open_issue(None, &open).await.map_err(err)?;
    open.at = last;
    for _ in 1..i.occurrences.unwrap_or(1).max(1) {
        store.open_issue(None, &open).await.map_err(err)?;
    }
    let status = i.status.as_deref().unwrap_or("open");
    match IssueStatus::named(&format!("issue {}: status", i.key), status)? {
        IssueStatus::Open => {}
        IssueStatus::Acknowledged => {
            store.ack_issue(&i.key, last).await.map_err(err)?;
        }
        IssueStatus::Resolved => {
            store
                .resolve_issue(None, &i.key, None, last)
                .await
                .map_err(err)?;
        }
    }
    Ok(())
}
