//! `runbookd check [PATH...]`: validate runbooks and print every problem.

use std::sync::Arc;

use super::{Env, Exit, Outcome};
use crate::cli::CheckArgs;
use crate::script::Sandbox;

pub fn run(env: &Env, sandbox: Arc<Sandbox>, args: CheckArgs) -> Outcome {
    let paths = if args.paths.is_empty() {
        vec![env.config.runbooks.clone()]
    } else {
        args.paths
    };
    let loaded = env.loader(sandbox).load(&paths);
    if args.json {
        let out = serde_json::json!({
            "runbooks": loaded.runbooks.iter().map(|rb| serde_json::json!({
                "name": rb.name,
                "path": rb.path,
                "enabled": rb.enabled,
                "triggers": rb.triggers.iter().map(|t| t.describe()).collect::<Vec<_>>(),
                "version": rb.version.hash,
            })).collect::<Vec<_>>(),
            "errors": loaded.errors.iter().map(|e| serde_json::json!({
                "path": e.path, "line": e.line, "column": e.col, "message": e.message, "hint": e.hint,
            })).collect::<Vec<_>>(),
            "warnings": loaded.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
    } else {
        for w in &loaded.warnings {
            println!(
                "{}:{}:{}: warning: {}",
                w.path.display(),
                w.line,
                w.col,
                w.message
            );
        }
        for e in &loaded.errors {
            println!("{e}");
        }
        let ok = loaded.runbooks.len();
        let failed = loaded.failed.len();
        let plural = |n: usize, w: &str| {
            if n == 1 {
                format!("{n} {w}")
            } else {
                format!("{n} {w}s")
            }
        };
        if loaded.errors.is_empty() {
            println!("{} ok", plural(ok, "runbook"));
        } else {
            println!(
                "{} ok, {} failed with {}",
                plural(ok, "runbook"),
                failed,
                plural(loaded.errors.len(), "error")
            );
        }
    }
    Ok(if loaded.errors.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}
