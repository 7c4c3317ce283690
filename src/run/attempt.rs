//! One attempt of a run: the steps in order, each on a blocking thread, with
//! its condition, its timeout and its record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Map};
use tokio_util::sync::CancellationToken;

use super::host::RunHost;
use super::{Executor, RunEvent, RunRequest};
use crate::runbook::Step;
use crate::script::{
    CompiledScript, EvalRequest, FailureKind, HostHandle, LogLevel, ScriptFailure, from_json,
    to_json,
};
use crate::store::{Lease, RunStatus, StepRow};

/// A script stuck in a host call past its deadline is abandoned after this.
const HARD_STOP_GRACE: Duration = Duration::from_secs(1);

pub struct AttemptResult {
    pub status: RunStatus,
    pub output: Option<serde_json::Value>,
    pub error: Option<String>,
    /// The attempt's last step, not yet written: it is recorded with what
    /// follows it (the run's end, or the attempt's before a retry), in the
    /// same commit.
    pub last_step: Option<StepRow>,
}

impl AttemptResult {
    pub fn failed(status: RunStatus, error: String) -> Self {
        AttemptResult {
            status,
            output: None,
            error: Some(error),
            last_step: None,
        }
    }
}

/// The read-only context every script of the attempt sees.
struct Context {
    params: Dynamic,
    trigger: Dynamic,
    run: Dynamic,
    steps: Map,
}

impl Context {
    fn vars(&self) -> Vec<(&'static str, Dynamic)> {
        vec![
            ("params", self.params.clone()),
            ("trigger", self.trigger.clone()),
            ("run", self.run.clone()),
            ("steps", Dynamic::from_map(self.steps.clone())),
        ]
    }
}

fn context(req: &RunRequest, host: &RunHost) -> Context {
    let mut trigger = from_json(&req.trigger.data)
        .try_cast::<Map>()
        .unwrap_or_default();
    trigger.insert("kind".into(), req.trigger.kind.as_str().into());
    trigger.insert(
        "scheduled_at".into(),
        req.trigger
            .scheduled_at
            .map(|t| Dynamic::from(crate::script::Timestamp(t)))
            .unwrap_or(Dynamic::UNIT),
    );
    let mut run = Map::new();
    run.insert("id".into(), Dynamic::from_int(host.run_id));
    run.insert("runbook".into(), host.runbook.clone().into());
    run.insert("attempt".into(), Dynamic::from_int(host.attempt() as i64));
    run.insert("host".into(), hostname().into());
    run.insert("version".into(), env!("CARGO_PKG_VERSION").into());
    Context {
        params: from_json(&serde_json::Value::Object(req.params.clone())),
        trigger: Dynamic::from_map(trigger),
        run: Dynamic::from_map(run),
        steps: Map::new(),
    }
}

/// The machine's name, for runbooks that report where they ran.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

pub async fn run(
    ex: &Executor,
    req: &RunRequest,
    host: &Arc<RunHost>,
    lease: &Lease,
) -> AttemptResult {
    let rb = &req.runbook;
    let run_deadline = Instant::now() + rb.timeout;
    let mut ctx = context(req, host);
    let mut output = None;
    let mut last_step = None;
    for (position, step) in rb.steps.iter().enumerate() {
        host.set_step(Some(&step.name));
        let started = crate::clock::now();
        let clock = Instant::now();
        let step_deadline = step
            .timeout
            .map(|t| (clock + t).min(run_deadline))
            .unwrap_or(run_deadline);
        *host.deadline.lock().expect("deadline lock") = Some(step_deadline);
        let outcome = run_step(ex, req, host, step, &ctx, step_deadline).await;
        let ended = judge_step(req, host, step, outcome, run_deadline, step_deadline);
        host.set_step(None);
        let row = StepRow {
            attempt_id: lease.attempt,
            position: position as u32,
            name: step.name.clone(),
            // A step stopped by shutdown was cancelled; the run is what is interrupted.
            status: if ended.status == RunStatus::Interrupted {
                RunStatus::Cancelled
            } else {
                ended.status
            },
            started_at: started,
            finished_at: crate::clock::now(),
            output: ended.json.clone(),
            error: ended.error.clone(),
        };
        let stops = ends_attempt(step, &ended);
        if stops || position + 1 == rb.steps.len() {
            // Written with the run's end (or the attempt's), in one commit.
            last_step = Some(row);
        } else {
            // The step and the lines it logged since the last write share one commit.
            let (turn, lines) = host.take_pending().await;
            let written = match host.made().await {
                Ok(()) => ex.store.insert_step(lease, &row, &lines).await,
                Err(e) => Err(e),
            };
            drop(turn);
            if let Err(e) = written {
                super::lost_if_fenced(host, &e);
                tracing::error!(run.id = host.run_id, error = %e, "could not record a step");
            }
        }
        if let Some(tx) = &req.events {
            let _ = tx.send(RunEvent::StepFinished {
                name: step.name.clone(),
                status: ended.status,
                millis: clock.elapsed().as_millis() as u64,
            });
        }
        let value = ended.value.unwrap_or(Dynamic::UNIT);
        ctx.steps.insert(step.name.as_str().into(), value);
        // The last step's value is the run's output (null when it did not give one).
        output = ended.json;
        if !stops {
            if matches!(ended.status, RunStatus::Failed | RunStatus::TimedOut) {
                host.note(
                    LogLevel::Warn,
                    &format!("continuing after step {} (continue_on_error)", step.name),
                );
            }
            continue;
        }
        let error = ended.error.unwrap_or_default();
        let mut failed =
            AttemptResult::failed(ended.status, format!("step {}: {error}", step.name));
        failed.last_step = last_step;
        return failed;
    }
    AttemptResult {
        status: RunStatus::Succeeded,
        output: Some(output.unwrap_or(serde_json::Value::Null)),
        error: None,
        last_step,
    }
}

/// Whether a step's end ends the attempt: it failed (or timed out, or was
/// stopped) and may not be continued after.
fn ends_attempt(step: &Step, ended: &StepEnd) -> bool {
    match ended.status {
        RunStatus::Succeeded | RunStatus::Skipped => false,
        RunStatus::Failed | RunStatus::TimedOut => !step.continue_on_error || ended.fatal,
        _ => true,
    }
}

/// How a step ended, as recorded and as the next steps see it.
struct StepEnd {
    status: RunStatus,
    value: Option<Dynamic>,
    json: Option<serde_json::Value>,
    error: Option<String>,
    /// `fail()` or the run's own deadline: the run ends whatever the step says.
    fatal: bool,
}

/// What a step's outcome means for the run, with its value as JSON and its
/// error masked.
fn judge_step(
    req: &RunRequest,
    host: &RunHost,
    step: &Step,
    outcome: StepOutcome,
    run_deadline: Instant,
    step_deadline: Instant,
) -> StepEnd {
    let mut fatal = false;
    let (status, value, error) = match outcome {
        StepOutcome::Skipped => (RunStatus::Skipped, None, None),
        StepOutcome::Done(v) => (RunStatus::Succeeded, Some(v), None),
        StepOutcome::Failed(f) => {
            let by_run = Instant::now() >= run_deadline && step_deadline == run_deadline;
            fatal = by_run || matches!(f.kind, FailureKind::Fail | FailureKind::Cancelled);
            let (mut status, message) = describe(&f, step, by_run, req.runbook.timeout);
            if status == RunStatus::Cancelled && req.interrupt.is_cancelled() {
                status = RunStatus::Interrupted;
            }
            host.note(
                LogLevel::Error,
                &format!("step {} {}: {message}", step.name, status),
            );
            (status, None, Some(message))
        }
    };
    let json = value
        .as_ref()
        .map(|v| to_json(v).map(|j| host.redactor.redact_json(j)));
    let (status, json, error) = match json {
        Some(Err(e)) => (
            RunStatus::Failed,
            None,
            Some(format!("the step's value cannot be recorded: {e}")),
        ),
        Some(Ok(j)) => (status, Some(j), error),
        None => (status, None, error),
    };
    StepEnd {
        status,
        value,
        json,
        error: error.map(|e| host.redactor.redact(&e)),
        fatal,
    }
}

fn describe(
    f: &ScriptFailure,
    step: &Step,
    by_run: bool,
    run_timeout: Duration,
) -> (RunStatus, String) {
    match f.kind {
        FailureKind::TimedOut if by_run => (
            RunStatus::TimedOut,
            format!(
                "the run timed out after {}",
                crate::duration::spec(run_timeout)
            ),
        ),
        FailureKind::TimedOut => (
            RunStatus::TimedOut,
            format!(
                "timed out after {}",
                step.timeout.map(crate::duration::spec).unwrap_or_default()
            ),
        ),
        FailureKind::Cancelled => (RunStatus::Cancelled, "stopped before it finished".into()),
        FailureKind::Fail => (RunStatus::Failed, f.message.clone()),
        FailureKind::Error => (RunStatus::Failed, f.message.clone()),
    }
}

enum StepOutcome {
    Skipped,
    Done(Dynamic),
    Failed(ScriptFailure),
}

async fn run_step(
    ex: &Executor,
    req: &RunRequest,
    host: &Arc<RunHost>,
    step: &Step,
    ctx: &Context,
    deadline: Instant,
) -> StepOutcome {
    if let Some(cond) = &step.condition {
        match eval(ex, host, cond, ctx.vars(), deadline, &req.cancel).await {
            Ok(v) => match v.as_bool() {
                Ok(true) => {}
                Ok(false) => {
                    host.note(
                        LogLevel::Info,
                        &format!("step {} skipped: its `if:` is false", step.name),
                    );
                    return StepOutcome::Skipped;
                }
                Err(kind) => {
                    return StepOutcome::Failed(ScriptFailure {
                        kind: FailureKind::Error,
                        message: format!("`if:` must give true or false, not {kind}"),
                    });
                }
            },
            Err(f) => {
                return StepOutcome::Failed(ScriptFailure {
                    kind: f.kind,
                    message: format!("in `if:`: {}", f.message),
                });
            }
        }
    }
    match eval(ex, host, &step.script, ctx.vars(), deadline, &req.cancel).await {
        Ok(v) => StepOutcome::Done(v),
        Err(f) => StepOutcome::Failed(f),
    }
}

/// A script error raised once the run was stopped or its deadline passed
/// (a host call, such as an HTTP request, cut short by it) is that stop or
/// that timeout, as if the engine had stopped the script itself.
fn stopped(f: ScriptFailure, cancel: &CancellationToken, deadline: Instant) -> ScriptFailure {
    let kind = match f.kind {
        FailureKind::Error if cancel.is_cancelled() => FailureKind::Cancelled,
        FailureKind::Error if Instant::now() >= deadline => FailureKind::TimedOut,
        kind => kind,
    };
    ScriptFailure { kind, ..f }
}

/// Evaluate a script on a blocking thread, with a hard stop shortly after the
/// deadline should the script be stuck where the engine cannot interrupt it.
async fn eval(
    ex: &Executor,
    host: &Arc<RunHost>,
    script: &CompiledScript,
    context: Vec<(&'static str, Dynamic)>,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Dynamic, ScriptFailure> {
    let sandbox = ex.sandbox.clone();
    let script = script.clone();
    let handle = HostHandle::new(host.clone());
    let stop = cancel.child_token();
    let inner = stop.clone();
    let task = tokio::task::spawn_blocking(move || {
        sandbox.eval(EvalRequest {
            script: &script,
            host: handle,
            deadline,
            cancel: inner,
            context,
        })
    });
    let hard = tokio::time::Instant::from_std(deadline + HARD_STOP_GRACE);
    match tokio::time::timeout_at(hard, task).await {
        Ok(Ok(result)) => result.map_err(|f| stopped(f, cancel, deadline)),
        Ok(Err(join)) => {
            let why = join
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                })
                .unwrap_or_else(|| "unknown cause".into());
            tracing::error!(run.id = host.run_id, cause = %why, "the script engine panicked");
            Err(ScriptFailure {
                kind: FailureKind::Error,
                message: format!("the script engine failed unexpectedly ({why})"),
            })
        }
        Err(_) => {
            stop.cancel();
            Err(ScriptFailure {
                kind: FailureKind::TimedOut,
                message: "timed out".into(),
            })
        }
    }
}
