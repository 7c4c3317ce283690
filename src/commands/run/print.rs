//! What `runbookd run` prints, wherever the run happens: the opening line,
//! the progress events, how it ended (or its record with `--json`), and the
//! exit code that follows from it. Local and daemon runs both print through
//! here, so they read the same.

use chrono::{DateTime, Utc};

use crate::commands::{Exit, Failure};
use crate::output::{clock_time, elapsed};
use crate::run::RunEvent;
use crate::store::{RunDetail, RunId, RunStatus};

/// How a run ended, as this command reports it.
pub struct Ended {
    pub run_id: RunId,
    pub status: RunStatus,
    pub error: Option<String>,
    pub output: Option<serde_json::Value>,
}

pub fn print_start(run_id: RunId, runbook: &str, version_hash: &str) {
    let short = version_hash.get(..12).unwrap_or(version_hash);
    println!("run {run_id} of {runbook} (version {short})");
}

pub fn print_event(ev: &RunEvent) {
    match ev {
        RunEvent::Log(l) => {
            let step = l
                .step
                .as_deref()
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default();
            println!(
                "{} {:<5}{step} {}",
                clock_time(l.at),
                l.level.to_uppercase(),
                l.message
            );
        }
        RunEvent::AttemptStarted { attempt } if *attempt > 1 => println!("attempt {attempt}"),
        RunEvent::AttemptStarted { .. } => {}
        RunEvent::StepFinished {
            name,
            status,
            millis,
        } => {
            let took = crate::duration::human(std::time::Duration::from_millis(*millis));
            println!("step {name} {status} ({took})");
        }
    }
}

/// Print how the run ended (or `detail`, its record, for `--json`); the
/// exit code says whether it succeeded.
pub fn print_end(ended: &Ended, started: DateTime<Utc>, detail: Option<&RunDetail>) -> Exit {
    let id = ended.run_id;
    if let Some(detail) = detail {
        println!("{}", serde_json::to_string_pretty(detail).expect("json"));
    } else {
        let took = elapsed(started, Some(Utc::now()));
        match &ended.error {
            None => println!("run {id} {} in {took}", ended.status),
            Some(e) => println!("run {id} {} after {took}: {e}", ended.status),
        }
        if let Some(out) = ended.output.as_ref().filter(|o| !o.is_null()) {
            println!(
                "output: {}",
                serde_json::to_string_pretty(out).expect("json")
            );
        }
    }
    if ended.status == RunStatus::Succeeded {
        Exit::Ok
    } else {
        Exit::Failed
    }
}

/// The run was refused because another run of the runbook is active.
pub fn conflict(message: String) -> Failure {
    Failure::new(Exit::Failed, message)
        .hint("`runbookd runs --status queued` and `--status running` show it")
}
