//! Evaluating a webhook's `when:` and `dedup:` expressions over a payload.
//! They see `trigger` only (the payload as data); they cannot log to a run,
//! read secrets or touch state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rhai::Dynamic;
use tokio_util::sync::CancellationToken;

use crate::script::{
    CompiledScript, EvalRequest, Host, HostHandle, LogLevel, Sandbox, from_json, to_json,
};

/// A `when:` or `dedup:` expression gets this long.
const EXPR_TIMEOUT: Duration = Duration::from_millis(500);

struct ExprHost(Tz);

impl Host for ExprHost {
    fn log(&self, level: LogLevel, message: &str) {
        tracing::debug!(level = level.as_str(), message, "webhook expression log");
    }
    fn now(&self) -> DateTime<Utc> {
        crate::clock::now()
    }
    fn timezone(&self) -> Tz {
        self.0
    }
    fn secret(&self, _: &str) -> Result<String, String> {
        Err("a webhook expression cannot read secrets".into())
    }
    fn state_get(&self, _: &str) -> Result<Option<serde_json::Value>, String> {
        Err("a webhook expression cannot use state".into())
    }
    fn state_set(&self, _: &str, _: serde_json::Value, _: Option<Duration>) -> Result<(), String> {
        Err("a webhook expression cannot use state".into())
    }
    fn state_delete(&self, _: &str) -> Result<bool, String> {
        Err("a webhook expression cannot use state".into())
    }
}

/// Evaluate `script` with `trigger` in scope, on a blocking thread.
///
/// Fails with the script's error as a sentence.
pub async fn eval(
    sandbox: &Arc<Sandbox>,
    script: &CompiledScript,
    trigger: &serde_json::Value,
    tz: Tz,
) -> Result<serde_json::Value, String> {
    let sandbox = sandbox.clone();
    let script = script.clone();
    let trigger = from_json(trigger);
    tokio::task::spawn_blocking(move || {
        let empty = Dynamic::from_map(rhai::Map::new());
        sandbox
            .eval(EvalRequest {
                script: &script,
                host: HostHandle::new(Arc::new(ExprHost(tz))),
                deadline: Instant::now() + EXPR_TIMEOUT,
                cancel: CancellationToken::new(),
                context: vec![
                    ("trigger", trigger),
                    ("params", empty.clone()),
                    ("run", empty.clone()),
                    ("steps", empty),
                ],
            })
            .map_err(|f| f.message)
            .and_then(|v| to_json(&v))
    })
    .await
    .map_err(|e| format!("the expression failed unexpectedly: {e}"))?
}
