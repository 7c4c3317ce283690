//! `runbookd test [NAME]`: run the runbook tests of the deployment's tests
//! directory and print each case with, for a failure, what differed.

use std::sync::Arc;

use super::{Env, Exit, Failure, Outcome};
use crate::cli::TestArgs;
use crate::runbook_tests::{Bench, discover};
use crate::script::Sandbox;

pub async fn run(env: &Env, sandbox: Arc<Sandbox>, args: TestArgs) -> Outcome {
    let dir = &env.config.tests;
    if !dir.is_dir() {
        return Err(Failure::new(
            Exit::Usage,
            format!("there is no tests directory {}", dir.display()),
        )
        .hint("put test files in tests/runbooks/, or set `tests:` in runbookd.yaml; docs/testing.md describes them"));
    }
    let suites = discover(dir, args.name.as_deref()).map_err(|errors| {
        for e in &errors {
            eprintln!("{e}");
        }
        Failure::new(
            Exit::Usage,
            format!("{} test file(s) cannot be read", errors.len()),
        )
        .hint("docs/testing.md describes the format")
    })?;
    if suites.is_empty() {
        let what = match &args.name {
            Some(n) => format!("no test in {} is for runbook {n}", dir.display()),
            None => format!("there are no tests in {}", dir.display()),
        };
        return Err(Failure::new(Exit::Usage, what).hint(
            "a test file is a YAML file naming its `runbook:`; docs/testing.md describes it",
        ));
    }
    // Tests give their own secret values: the deployment's need not be set.
    let mut loader = env.loader(sandbox.clone());
    loader.secret_value = Box::new(|_| Some("a-stand-in-secret-for-runbook-tests".into()));
    // Tests pin the runbook as shipped: the deployment's settings never change their outcome.
    loader.settings = None;
    let loaded = loader.load(std::slice::from_ref(&env.config.runbooks));
    for e in &loaded.errors {
        eprintln!("{e}");
    }
    let bench = Bench::new(env.config.clone(), sandbox, loaded.runbooks.clone())
        .map_err(|e| Failure::new(Exit::Unavailable, format!("{e:#}")))?;
    let mut reports = Vec::new();
    for suite in &suites {
        for r in bench.run_suite(suite).await {
            if !args.json {
                if r.passed() {
                    println!("ok    {} › {}", r.runbook, r.case);
                } else {
                    println!("FAIL  {} › {}  ({})", r.runbook, r.case, r.file);
                    for f in &r.failures {
                        for line in f.lines() {
                            println!("      {line}");
                        }
                    }
                    if !r.log.is_empty() {
                        println!("      run log:");
                        for line in &r.log {
                            println!("        {line}");
                        }
                    }
                }
            }
            reports.push(r);
        }
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "cases": reports, "failed": failed })
            )
            .expect("json")
        );
    } else {
        println!("{} passed, {failed} failed", reports.len() - failed);
    }
    if failed > 0 {
        return Err(Failure::new(
            Exit::Failed,
            format!("{failed} runbook test case(s) failed"),
        ));
    }
    Ok(Exit::Ok)
}
