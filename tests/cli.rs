//! The CLI as a person uses it, through the real binary and a real SQLite
//! file: `run`, `runs`, `show`, their output and exit codes, and one writer
//! per database.

mod common;

use common::Deployment;

fn deployment() -> Deployment {
    let d = Deployment::new();
    d.script("greet.rhai", "fn hello(who) { `hello ${who}` }\n");
    d.runbook(
        "greet.yaml",
        concat!(
            "description: Say hello.\n",
            "params:\n  who: { type: string, default: world }\n  times: { type: integer, default: 1 }\n",
            "steps:\n",
            "  - name: build\n    run: |\n      import \"greet\" as g;\n      let words = [];\n",
            "      for i in 0..params.times { words.push(g::hello(params.who)); }\n",
            "      log::info(`built ${words.len()} greetings`);\n      words\n",
            "  - name: count\n    run: '#{ greetings: steps.build, at: now() }'\n",
        ),
    );
    d.runbook("broken.yaml", "run: |\n  fail(\"the provider is down\")\n");
    d
}

#[test]
fn run_streams_records_and_sets_the_exit_code() {
    let d = deployment();
    let ran = d.cli(&[
        "run",
        "greet",
        "-p",
        "who=ops",
        "-p",
        "times=2",
        "--now",
        "2026-03-08T09:00:00Z",
    ]);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines[0].starts_with("run 1 of greet (version "),
        "{}",
        ran.stdout
    );
    assert!(
        lines[1].ends_with(" INFO  [build] built 2 greetings"),
        "{}",
        ran.stdout
    );
    assert!(lines[2].starts_with("step build succeeded ("));
    assert!(lines[3].starts_with("step count succeeded ("));
    assert!(lines[4].starts_with("run 1 succeeded in "));
    assert!(
        ran.stdout.contains("\"hello ops\",\n    \"hello ops\""),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains("\"at\": \"2026-03-08T09:00:0"),
        "the --now clock: {}",
        ran.stdout
    );

    let ran = d.cli(&["run", "broken"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stdout.contains("run 2 failed after "), "{}", ran.stdout);
    assert!(
        ran.stdout.contains(": step main: the provider is down\n"),
        "{}",
        ran.stdout
    );
}

#[test]
fn run_refuses_bad_requests_with_a_hint() {
    let d = deployment();
    let ran = d.cli(&["run", "greta"]);
    assert_eq!(ran.code, 2);
    assert_eq!(
        ran.stderr,
        "error: there is no runbook named \"greta\" in runbooks\nhint: did you mean \"greet\"?\n"
    );
    let ran = d.cli(&["run", "greet", "-p", "times=two", "-p", "whom=x"]);
    assert_eq!(ran.code, 2);
    assert_eq!(
        ran.stderr,
        "error: param times is integer: \"two\" is not a whole number; runbook greet has no param \"whom\" (did you mean \"who\"?)\n\
         hint: runbook greet takes: who (string), times (integer)\n"
    );
    let ran = d.cli(&["run", "greet", "--now", "yesterday"]);
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr
            .starts_with("error: --now \"yesterday\" is not an RFC 3339 time\n")
    );
    d.runbook("bad.yaml", "run: 'nope'\n");
    let ran = d.cli(&["run", "bad"]);
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("runbooks/bad.yaml:1:7: script does not compile: Undefined variable: nope\nerror: runbook bad has errors and cannot run\n"), "{}", ran.stderr);
    // Nothing was recorded for requests that never started: not even a database.
    let runs = d.cli(&["runs", "--json"]);
    assert_eq!((runs.code, runs.stdout.as_str()), (3, ""));
    assert_eq!(
        runs.stderr,
        "error: the database sqlite://runbookd.db does not exist: nothing has been recorded yet (`runbookd serve` or `runbookd run` creates it)\n"
    );
}

#[test]
fn runs_and_show_read_the_history() {
    let d = deployment();
    assert_eq!(d.cli(&["runs"]).code, 3);
    assert_eq!(d.cli(&["run", "greet"]).code, 0);
    assert_eq!(d.cli(&["run", "broken"]).code, 1);
    assert_eq!(d.cli(&["run", "greet", "-p", "who=x"]).code, 0);

    let ran = d.cli(&["runs"]);
    assert_eq!(ran.code, 0);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", ran.stdout);
    assert!(
        lines[0].starts_with("ID  STATUS     TRIGGER  STARTED                  TOOK"),
        "{}",
        ran.stdout
    );
    assert!(
        lines[1].starts_with("3   succeeded  manual   20") && lines[1].ends_with("greet"),
        "{}",
        ran.stdout
    );
    assert!(lines[2].starts_with("2   failed     manual") && lines[2].ends_with("broken"));
    assert!(lines.iter().all(|l| l.chars().count() <= 80));
    assert!(
        lines[1].contains(" UTC "),
        "times carry their zone: {}",
        lines[1]
    );

    let failed = d.cli(&["runs", "--status", "failed", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["runbook"], "broken");
    assert_eq!(v[0]["error"], "step main: the provider is down");
    let page = d.cli(&["runs", "--limit", "1"]);
    assert!(
        page.stdout.ends_with("more: runbookd runs --before 3\n"),
        "{}",
        page.stdout
    );
    let next: serde_json::Value = serde_json::from_str(
        &d.cli(&["runs", "--before", "3", "--runbook", "greet", "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(
        next.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [1]
    );
    let bad = d.cli(&["runs", "--status", "faild"]);
    assert_eq!(
        (bad.code, bad.stderr.as_str()),
        (
            2,
            "error: unknown status \"faild\"\nhint: did you mean \"failed\"?\n"
        )
    );

    let show = d.cli(&["show", "2"]);
    assert_eq!(show.code, 0);
    for expected in [
        "Run        2\n",
        "Runbook    broken (version ",
        "Status     failed\n",
        "Trigger    manual\n",
        "Error      step main: the provider is down\n",
        "Attempt 1: failed (",
        "  step main             failed   ",
        "ERROR [main] step main failed: the provider is down\n",
    ] {
        assert!(
            show.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            show.stdout
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&d.cli(&["show", "1", "--json"]).stdout).unwrap();
    assert_eq!(json["run"]["status"], "succeeded");
    assert_eq!(
        json["steps"][1]["output"]["greetings"],
        serde_json::json!(["hello world"])
    );
    assert_eq!(
        json["version"]["scripts"]["greet.rhai"],
        "fn hello(who) { `hello ${who}` }\n"
    );
    assert!(
        json["version"]["yaml"]
            .as_str()
            .unwrap()
            .starts_with("description: Say hello.")
    );
    let missing = d.cli(&["show", "99"]);
    assert_eq!(
        (missing.code, missing.stderr.as_str()),
        (
            1,
            "error: there is no run 99\nhint: `runbookd runs` lists the recorded runs\n"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_on_the_same_database_is_refused_by_any_name() {
    let d = deployment();
    // Where a daemon would answer; nothing listens there.
    let port = common::daemon::free_port();
    std::fs::write(
        d.path().join("runbookd.yaml"),
        format!("listen: 127.0.0.1:{port}\n"),
    )
    .unwrap();
    let refused = |name: &str| {
        format!(
            "error: the database {name} is in use by another runbookd (pid {}), and its API at http://127.0.0.1:{port} does not answer (Connection refused (os error 111)), so this command cannot run greet through it\n\
             hint: set `listen` in runbookd.yaml (or RUNBOOKD_LISTEN) to the address that daemon serves, or stop it to work on the database here\n",
            std::process::id()
        )
    };
    // This test process holds the database, as a running daemon would.
    let held = d.store().await;
    let ran = d.cli(&["run", "greet"]);
    assert_eq!((ran.code, ran.stderr), (3, refused("runbookd.db")));
    // Readers are not writers: history stays readable meanwhile.
    assert_eq!(d.cli(&["runs"]).code, 0);
    // Another name for the same file is the same database.
    std::os::unix::fs::symlink(d.db(), d.path().join("alias.db")).unwrap();
    let ran = d.cli(&["--database", "sqlite://alias.db", "run", "greet"]);
    assert_eq!((ran.code, ran.stderr), (3, refused("alias.db")));
    drop(held);
    assert_eq!(d.cli(&["run", "greet"]).code, 0);
    // A second hard link would give SQLite two journals for one file.
    std::fs::hard_link(d.db(), d.path().join("twin.db")).unwrap();
    let links = |name: &str| {
        format!(
            "error: the database {name} cannot be opened: the file has 2 hard links; SQLite names its journal after the path, so each name would be a database of its own writing the same file. Keep one name (remove the other links), or use a symlink\n"
        )
    };
    let ran = d.cli(&["--database", "sqlite://twin.db", "run", "greet"]);
    assert_eq!((ran.code, ran.stderr), (3, links("twin.db")));
    let ran = d.cli(&["run", "greet"]);
    assert_eq!((ran.code, ran.stderr), (3, links("runbookd.db")));
    // A link to a file not created yet would be a second name too.
    std::os::unix::fs::symlink("elsewhere.db", d.path().join("dangling.db")).unwrap();
    let ran = d.cli(&["--database", "sqlite://dangling.db", "run", "greet"]);
    assert_eq!(
        (ran.code, ran.stderr.as_str()),
        (
            3,
            "error: the database dangling.db cannot be opened: it is a symlink to elsewhere.db, which does not exist; point --database at the real path, or create the file first\n"
        )
    );
}

#[test]
fn config_file_and_environment_layer_over_defaults() {
    let d = deployment();
    std::fs::create_dir(d.path().join("etc")).unwrap();
    std::fs::write(
        d.path().join("etc/runbookd.yaml"),
        "database: sqlite://history.db\nrunbooks: ../runbooks\nscripts: ../scripts\n",
    )
    .unwrap();
    let ran = d.cli(&["--config", "etc/runbookd.yaml", "run", "greet"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        d.path().join("etc/history.db").exists(),
        "paths in the file are relative to it"
    );
    let ran = d.cli_env(
        &["--config", "etc/runbookd.yaml", "runs", "--json"],
        &[("RUNBOOKD_DATABASE", "sqlite://other.db")],
    );
    assert!(
        ran.code == 3
            && ran
                .stderr
                .starts_with("error: the database sqlite://other.db does not exist"),
        "the environment overrides the file: {}",
        ran.stderr
    );
    let ran = d.cli_env(
        &[
            "--config",
            "etc/runbookd.yaml",
            "--database",
            "etc/history.db",
            "runs",
            "--json",
        ],
        &[("RUNBOOKD_DATABASE", "sqlite://other.db")],
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&ran.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1,
        "flags override both"
    );
    std::fs::write(d.path().join("runbookd.yaml"), "databse: x\n").unwrap();
    let ran = d.cli(&["runs"]);
    assert_eq!(ran.code, 3);
    assert!(
        ran.stderr
            .starts_with("error: runbookd.yaml: unknown key `databse`"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("(did you mean \"database\"?)"),
        "{}",
        ran.stderr
    );
}

#[test]
fn next_previews_fire_times_across_a_dst_change() {
    let d = Deployment::new();
    d.runbook("nightly.yaml", "triggers:\n  - cron: \"30 2 * * *\"\n    timezone: America/New_York\n  - manual\nrun: '1'\n");
    d.runbook(
        "off.yaml",
        "enabled: false\ntriggers:\n  - every: 1h\nrun: '1'\n",
    );
    let ran = d.cli_env(
        &[
            "next",
            "nightly",
            "--from",
            "2026-03-07T00:00:00Z",
            "--count",
            "3",
        ],
        &[("TZ", "Europe/Berlin")],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        ran.stdout,
        "nightly  cron 30 2 * * * (America/New_York)\n\
         \x20 Sat 2026-03-07 02:30:00 EST   2026-03-07 07:30:00 UTC  (here 08:30 CET)\n\
         \x20 Sun 2026-03-08 03:00:00 EDT   2026-03-08 07:00:00 UTC  (here 08:00 CET)\n\
         \x20 Mon 2026-03-09 02:30:00 EDT   2026-03-09 06:30:00 UTC  (here 07:30 CET)\n"
    );
    let json: serde_json::Value = serde_json::from_str(
        &d.cli(&[
            "next",
            "--json",
            "--count",
            "1",
            "--from",
            "2026-01-01T00:30:00Z",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(json[0]["runbook"], "nightly");
    assert_eq!(json[0]["next"], serde_json::json!(["2026-01-01T07:30:00Z"]));
    assert_eq!(
        (json[1]["runbook"].as_str(), json[1]["enabled"].as_bool()),
        (Some("off"), Some(false))
    );
    let bad = d.cli(&["next", "nightlly"]);
    assert_eq!(
        (bad.code, bad.stderr.as_str()),
        (
            2,
            "error: there is no runbook named \"nightlly\"\nhint: did you mean \"nightly\"?\n"
        )
    );
}

#[test]
fn runbooks_lists_health_and_load_errors_and_prune_applies_retention() {
    let d = deployment();
    d.runbook(
        "watched.yaml",
        "triggers:\n  - every: 1h\nexpect: { success_within: 1h }\nrun: fail(\"down\")\n",
    );
    assert_eq!(d.cli(&["run", "greet"]).code, 0);
    assert_eq!(d.cli(&["run", "watched"]).code, 1);
    d.runbook("zbroken.yaml", "run: 'nope'\n");
    // Wide enough for every cell (80 columns would cut the LAST column).
    let ran = d.cli_env(&["runbooks"], &[("COLUMNS", "120")]);
    assert_eq!(ran.code, 1, "a load error makes the listing fail");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME     NEXT"), "{}", ran.stdout);
    assert!(
        lines.iter().any(|l| l.starts_with("broken   -")
            && l.contains("never ran")
            && l.ends_with("manual")),
        "{}",
        ran.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("greet") && l.contains("succeeded (run 1)")),
        "{}",
        ran.stdout
    );
    assert!(
        lines.iter().any(|l| l.starts_with("watched")
            && l.contains("failed (run 2); overdue: no success in 1h")
            && l.ends_with("every 1h")),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains(
        "failed: runbooks/zbroken.yaml:1:7: script does not compile: Undefined variable: nope\n"
    ));

    let ran = d.cli(&["prune", "--older-than", "1d"]);
    assert_eq!(ran.code, 0);
    assert!(
        ran.stdout.starts_with("pruned 0 run(s) created before "),
        "{}",
        ran.stdout
    );
    let ran = d.cli(&["prune", "--older-than", "0s"]);
    assert!(ran.stdout.starts_with("pruned 2 run(s)"), "{}", ran.stdout);
    assert_eq!(d.cli(&["runs", "--json"]).stdout.trim(), "[]");
}

#[test]
fn issues_raised_by_a_run_can_be_listed_acknowledged_and_resolved() {
    let d = Deployment::new();
    d.runbook("raise.yaml", "run: |\n  issues::open(\"visa-eu\", #{ title: \"Visa EU approvals low\", severity: \"critical\" });\n  issues::open(\"rpc-lag\", #{ title: \"Polygon RPC behind\", severity: \"low\" })\n");
    assert_eq!(d.cli(&["run", "raise"]).code, 0);
    let ran = d.cli(&["issues"]);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines[0].starts_with("SEVERITY  STATUS  AGE"),
        "{}",
        ran.stdout
    );
    assert!(
        lines.iter().any(|l| l.starts_with("critical  open")
            && l.contains(" visa-eu ")
            && l.ends_with("Visa EU approvals low")),
        "{}",
        ran.stdout
    );
    assert_eq!(
        d.cli(&["issues", "ack", "visa-eu"]).stdout,
        "issue visa-eu acknowledged\n"
    );
    assert_eq!(
        d.cli(&["issues", "resolve", "rpc-lag", "--note", "node resynced"])
            .stdout,
        "issue rpc-lag resolved\n"
    );
    let again = d.cli(&["issues", "resolve", "rpc-lag"]);
    assert_eq!(
        (again.code, again.stderr.as_str()),
        (1, "error: issue rpc-lag is resolved\n")
    );
    let all: serde_json::Value =
        serde_json::from_str(&d.cli(&["issues", "--all", "--json"]).stdout).unwrap();
    let states: Vec<(&str, &str)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["key"].as_str().unwrap(), i["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("rpc-lag", "resolved"), ("visa-eu", "acknowledged")]
    );
    assert_eq!(all[0]["resolution"], "node resynced");
    assert_eq!(
        d.cli(&["issues"]).stdout.lines().count(),
        2,
        "resolved issues are hidden without --all"
    );
}

#[test]
fn a_secrets_file_must_be_private_and_its_values_stay_masked() {
    use std::os::unix::fs::PermissionsExt;
    let d = Deployment::new();
    d.runbook("uses.yaml", "secrets: [VAULT_TOKEN]\nrun: |\n  log::info(`token ${secret(\"VAULT_TOKEN\")}`);\n  secret(\"VAULT_TOKEN\").len()\n");
    let file = d.path().join("secrets.yaml");
    std::fs::write(&file, "VAULT_TOKEN: \"s.f1le-held-t0ken\"\n").unwrap();
    std::fs::write(
        d.path().join("runbookd.yaml"),
        "secrets_file: secrets.yaml\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = d.cli(&["run", "uses"]);
    assert_eq!(open.code, 3);
    assert!(
        open.stderr
            .contains("can be read by other users (mode 644); run `chmod 600"),
        "{}",
        open.stderr
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ran = d.cli(&["run", "uses"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains("INFO  [main] token ***\n"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("output: 17"), "{}", ran.stdout);
    let shown = d.cli(&["show", "1", "--json"]).stdout;
    assert!(!shown.contains("f1le-held"), "{shown}");
}

#[test]
fn control_characters_from_scripts_are_escaped_in_human_output_and_exact_in_json() {
    let d = Deployment::new();
    // A log line that forges another, clears the screen and sets the terminal title;
    // an error with CR LF; an issue title with a C1 CSI.
    d.runbook(
        "evil.yaml",
        "run: |\n  print(\"ok\\nINFO forged line\\x1b[2J\\x1b]0;owned\\x07\");\n  issues::open(\"k\", #{ title: \"t\\u009b31m\" });\n  throw \"bad\\r\\nforged\";\n",
    );
    let ran = d.cli(&["run", "evil"]);
    assert_eq!(ran.code, 1, "{}{}", ran.stdout, ran.stderr);
    let raw = |s: &str| s.chars().any(|c| c.is_control() && c != '\n');
    for args in [&["show", "1"][..], &["runs"], &["issues"]] {
        let out = d.cli(args).stdout;
        assert!(!raw(&out), "{args:?} printed a control character:\n{out:?}");
    }
    let show = d.cli(&["show", "1"]).stdout;
    assert!(
        show.contains("ok\\nINFO forged line\\u{1b}[2J\\u{1b}]0;owned\\u{7}"),
        "{show}"
    );
    assert!(show.contains("Runtime error: bad\\r; forged"), "{show}");
    assert!(d.cli(&["issues"]).stdout.contains("t\\u{9b}31m"));
    let json: serde_json::Value =
        serde_json::from_str(&d.cli(&["show", "1", "--json"]).stdout).unwrap();
    assert_eq!(
        json["logs"][0]["message"],
        "ok\nINFO forged line\u{1b}[2J\u{1b}]0;owned\u{7}"
    );
}

#[test]
fn a_script_holding_more_than_its_memory_budget_is_stopped() {
    let d = Deployment::new();
    // Each string is under the 16 MiB per-value cap; ten variables hold 160 MB.
    d.runbook(
        "hog.yaml",
        "run: |\n  let big = \"\";\n  big.pad(16000000, 'x');\n  let v0 = big + 0;\n  let v1 = big + 1;\n  let v2 = big + 2;\n  let v3 = big + 3;\n  let v4 = big + 4;\n  let v5 = big + 5;\n  let v6 = big + 6;\n  let v7 = big + 7;\n  let v8 = big + 8;\n  let v9 = big + 9;\n  v9.len()\n",
    );
    d.runbook(
        "fits.yaml",
        "run: |\n  let big = \"\";\n  big.pad(16000000, 'x');\n  let xs = [];\n  for i in 0..1 { xs.push(big + i); }\n  xs.len()\n",
    );
    let ran = d.cli(&["run", "hog", "--json"]);
    assert_eq!(ran.code, 1, "{}{}", ran.stdout, ran.stderr);
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        (&v["run"]["status"], &v["run"]["error"]),
        (
            &serde_json::json!("failed"),
            &serde_json::json!(
                "step main: script held more than 64 MiB of memory (script_memory_mib)"
            )
        ),
        "{v}"
    );
    let ran = d.cli(&["run", "fits", "--json"]);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    // One 1 MB string referred to 1,000 times is cheap in the script; as
    // output it would be 1 GB of copies. The sandbox counts each reference
    // (and, behind it, the JSON conversion has its own budget), so it is
    // refused before any copy is made.
    d.runbook(
        "echoes.yaml",
        "run: |
  let big = \"\";
  big.pad(1000000, 'x');
  let xs = [];
  for i in 0..1000 { xs.push(big); }
  xs
",
    );
    let ran = d.cli(&["run", "echoes", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        (ran.code, &v["run"]["status"], &v["run"]["error"]),
        (
            1,
            &serde_json::json!("failed"),
            &serde_json::json!(
                "step main: Length of string over the sandbox limit at line 4, position 23 (strings up to 16 MiB, arrays and maps up to 100000 items)"
            )
        ),
        "{v}"
    );
    // The budget is the operator's to raise.
    std::fs::write(d.path().join("runbookd.yaml"), "script_memory_mib: 512\n").unwrap();
    let ran = d.cli(&["run", "hog", "--json"]);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
}

#[test]
fn calls_into_the_daemon_do_not_count_against_a_scripts_memory_but_what_it_keeps_does() {
    let d = Deployment::new();
    std::fs::write(d.path().join("runbookd.yaml"), "script_memory_mib: 1\n").unwrap();
    // Thousands of calls that hand buffers to the database's thread: a loop
    // polling for hours makes as many.
    d.runbook(
        "poller.yaml",
        "run: |\n  state::set(\"k\", \"value\");\n  let n = 0;\n  for i in 0..20000 { n += state::get(\"k\").len(); }\n  n\n",
    );
    // What the daemon answers counts once the script keeps it.
    d.runbook(
        "hoarder.yaml",
        "run: |\n  let big = \"\";\n  big.pad(300000, 'x');\n  state::set(\"big\", big);\n  big = ();\n  let kept = [];\n  for i in 0..8 { kept.push(state::get(\"big\")); }\n  kept.len()\n",
    );
    let ran = d.cli(&["run", "poller", "--json"]);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        (&v["run"]["status"], &v["run"]["output"]),
        (&serde_json::json!("succeeded"), &serde_json::json!(100000)),
        "{v}"
    );
    let ran = d.cli(&["run", "hoarder", "--json"]);
    assert_eq!(ran.code, 1, "{}{}", ran.stdout, ran.stderr);
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        (&v["run"]["status"], &v["run"]["error"]),
        (
            &serde_json::json!("failed"),
            &serde_json::json!(
                "step main: script held more than 1 MiB of memory (script_memory_mib)"
            )
        ),
        "{v}"
    );
}

#[test]
fn a_damaged_database_is_refused_at_start_with_what_to_do() {
    let d = deployment();
    for _ in 0..3 {
        assert_eq!(d.cli(&["run", "greet", "--param", "times=50"]).code, 0);
    }
    // Checkpointed into the file by a reader closing it last.
    assert_eq!(d.cli(&["runs"]).code, 0);
    // Damage the last page (history rows), as a failing disk would.
    let db = d.path().join("runbookd.db");
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 3 * 4096, "a database of several pages");
    let last = bytes.len() - 4096;
    bytes[last..].iter_mut().for_each(|b| *b = 0xA5);
    std::fs::write(&db, &bytes).unwrap();
    // And nothing left in the write-ahead log to paper over it.
    for log in ["runbookd.db-wal", "runbookd.db-shm"] {
        let _ = std::fs::remove_file(d.path().join(log));
    }
    let ran = d.cli(&["run", "greet"]);
    assert_eq!(ran.code, 3, "{}", ran.stderr);
    let prefix = "error: the database runbookd.db cannot be opened: it is damaged (";
    let suffix = "); restore it from a backup, or move it aside to start with an empty database\n";
    assert!(
        ran.stderr.starts_with(prefix) && ran.stderr.ends_with(suffix),
        "{}",
        ran.stderr
    );
}
