//! Hostile scripts end as failed runs with a clear error, in a process that
//! stays healthy: each test runs many of them through one executor and one
//! SQLite file, then a normal run.

mod common;

use std::time::{Duration, Instant};

use common::{Deployment, Harness, SECRET_VALUE};
use runbookd::script::Limits;
use runbookd::store::RunStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_fail_their_run_and_nothing_else() {
    let d = Deployment::new();
    let cases: &[(&str, &str, &str)] = &[
        (
            "endless-loop",
            "loop { }",
            "script exceeded its budget of 50000000 operations",
        ),
        (
            "string-doubling",
            "let s = \"xxxxxxxx\"; loop { s += s; }",
            "Length of string over the sandbox limit",
        ),
        (
            "deep-recursion",
            "fn f(x) { f(x + 1) }\nf(0)",
            "script called functions more than 48 levels deep",
        ),
        (
            "huge-array",
            "let a = []; a.pad(200000, 0); a",
            "Size of array/BLOB over the sandbox limit",
        ),
        // Rhai checks a map grown key by key when it is next used.
        (
            "huge-map",
            "let m = #{}; for i in 0..200000 { m[`k${i}`] = i; } m.len()",
            "Size of object map over the sandbox limit",
        ),
        (
            "dynamic-import",
            "let p = \"../outside\"; import p as m; 1",
            "import \"../outside\" refused: modules are imported by a literal name",
        ),
        ("thrown", "throw \"provider said no\"", "provider said no"),
        (
            "type-error",
            "let x = 1 + \"a\"; x.foo()",
            "Function not found",
        ),
        (
            "wrong-condition",
            "1",
            "`if:` must give true or false, not i64",
        ),
    ];
    for (name, script, _) in cases {
        let body = script
            .lines()
            .map(|l| format!("      {l}\n"))
            .collect::<String>();
        let cond = if *name == "wrong-condition" {
            "    if: '42'\n"
        } else {
            ""
        };
        d.runbook(
            &format!("{name}.yaml"),
            &format!("steps:\n  - name: main\n{cond}    run: |\n{body}"),
        );
    }
    d.runbook(
        "healthy.yaml",
        "run: |\n  let n = 0;\n  for i in 0..1000 { n += i; }\n  n\n",
    );
    let h = Harness::new(d, Limits::default()).await;
    for (name, _, expected) in cases {
        let out = h.run(name).await;
        assert_eq!(out.status, RunStatus::Failed, "{name}: {:?}", out.error);
        let error = out.error.unwrap_or_default();
        assert!(
            error.starts_with("step main: ") && error.contains(expected),
            "{name}: {error}"
        );
        let detail = h.detail(out.run_id).await;
        assert_eq!(detail.run.status, RunStatus::Failed);
        assert_eq!(detail.steps.len(), 1);
        assert!(
            detail
                .logs
                .iter()
                .any(|l| l.level == "error" && l.message.contains(expected)),
            "{name}: log"
        );
    }
    let ok = h.run("healthy").await;
    assert_eq!(
        (ok.status, ok.output),
        (RunStatus::Succeeded, Some(serde_json::json!(499500)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_and_file_access_do_not_exist_in_scripts() {
    let d = Deployment::new();
    d.runbook("eval.yaml", "run: eval(\"1\")\n");
    d.runbook("open.yaml", "run: open_file(\"/etc/passwd\")\n");
    let loaded = d.load(runbookd::script::Sandbox::new(Limits::default()), &[]);
    let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
    assert!(
        errors.iter().any(|e| e.contains(
            "eval.yaml:1:6: script does not compile: reserved keyword 'eval' is disabled"
        )),
        "{errors:?}"
    );
    // There is no such function; it compiles (functions resolve at run time) and fails there.
    assert!(
        !errors.iter().any(|e| e.contains("open.yaml")),
        "{errors:?}"
    );
    let h = Harness::new(d, Limits::default()).await;
    std::fs::remove_file(h.deployment.runbooks().join("eval.yaml")).unwrap();
    let out = h.run("open").await;
    assert_eq!(out.status, RunStatus::Failed);
    assert!(out.error.unwrap().contains("Function not found: open_file"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_script_stops_within_a_second_of_its_deadline() {
    let d = Deployment::new();
    d.runbook("step.yaml", "steps:\n  - name: spin\n    timeout: 300ms\n    run: |\n      let x = 0;\n      loop { x += 1; }\n");
    d.runbook("whole.yaml", "timeout: 1s\nsteps:\n  - name: a\n    run: '1'\n  - name: spin\n    run: |\n      let x = 0;\n      loop { x += 1; }\n");
    // An operation budget large enough that only the clock can stop the loop.
    let h = Harness::new(
        d,
        Limits {
            max_operations: u64::MAX / 2,
            ..Limits::default()
        },
    )
    .await;

    let t = Instant::now();
    let out = h.run("step").await;
    let took = t.elapsed();
    assert_eq!(out.status, RunStatus::TimedOut);
    assert_eq!(
        out.error.as_deref(),
        Some("step spin: timed out after 300ms")
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1300),
        "took {took:?}"
    );

    let t = Instant::now();
    let out = h.run("whole").await;
    let took = t.elapsed();
    assert_eq!(out.status, RunStatus::TimedOut);
    assert_eq!(
        out.error.as_deref(),
        Some("step spin: the run timed out after 1s")
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    let detail = h.detail(out.run_id).await;
    let steps: Vec<(&str, RunStatus)> = detail
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        steps,
        [("a", RunStatus::Succeeded), ("spin", RunStatus::TimedOut)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_in_logs_errors_outputs_and_the_database_file() {
    let d = Deployment::new();
    d.runbook(
        "leaky.yaml",
        "secrets: [API_TOKEN]\nsteps:\n  - name: show\n    run: |\n\
         \x20     let t = secret(\"API_TOKEN\");\n\
         \x20     log::info(`token is ${t}`);\n\
         \x20     print(`printed ${t}`);\n\
         \x20     state::set(\"last\", `remember ${t}`);\n\
         \x20     let m = #{ plain: t }; m[t] = \"as a key\"; m\n\
         \x20 - name: crash\n    continue_on_error: true\n    run: throw `rejected ${secret(\"API_TOKEN\")}`\n\
         \x20 - name: undeclared\n    run: secret(\"HOME\")\n",
    );
    let h = Harness::new(d, Limits::default()).await;
    let out = h.run("leaky").await;
    assert_eq!(out.status, RunStatus::Failed);
    assert_eq!(
        out.error.as_deref(),
        Some(
            "step undeclared: Runtime error: secret \"HOME\" is not declared; add it to the runbook's `secrets:` (line 1, position 1)"
        )
    );
    let detail = h.detail(out.run_id).await;
    let everything = serde_json::to_string(&detail).unwrap();
    assert!(!everything.contains(SECRET_VALUE), "{everything}");
    let show = &detail.steps[0];
    assert_eq!(
        show.output,
        Some(serde_json::json!({"plain": "***", "***": "as a key"}))
    );
    let messages: Vec<&str> = detail.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(
        messages.contains(&"token is ***") && messages.contains(&"printed ***"),
        "{messages:?}"
    );
    assert_eq!(
        detail.steps[1].error.as_deref(),
        Some("Runtime error: rejected *** (line 1, position 1)")
    );
    let state = h
        .executor
        .store()
        .state_get("leaky", "last", chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(state, Some(serde_json::json!("remember ***")));
    // Nothing reached the disk either: not the database, not its write-ahead log.
    for file in ["runbookd.db", "runbookd.db-wal"] {
        let bytes = std::fs::read(h.deployment.path().join(file)).unwrap_or_default();
        assert!(
            !bytes
                .windows(SECRET_VALUE.len())
                .any(|w| w == SECRET_VALUE.as_bytes()),
            "{file} holds the secret"
        );
    }
}
