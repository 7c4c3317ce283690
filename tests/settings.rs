//! Per-deployment settings of runbooks in `runbookd.yaml`: a shipped runbook
//! is enabled and configured there, never edited; every way of running it sees
//! the effective values; `runbookd runbooks NAME` says where each came from;
//! mistakes point into the config file; reloads pick up changes; runbook tests
//! ignore the settings.

mod common;

use std::time::Duration;

use common::Deployment;
use common::daemon::Daemon;
use common::http::{client, send};
use runbookd::store::RunStatus;

/// A runbook as it ships: disabled, with defaults an operator overrides.
const GREET: &str = r#"description: Says hello.
enabled: false
triggers:
  - cron: "0 9 * * 1-5"
  - webhook: { auth: none, insecure: true }
  - manual
params:
  greeting: { type: string, default: hello }
  count: { type: integer, default: 1 }
http:
  allow: [a.example.com]
run: |
  print(`${params.greeting} x${params.count}`);
  params.greeting
"#;

const SETTINGS: &str = "timezone: UTC
runbooks:
  greet:
    enabled: true
    params: { greeting: bonjour }
    timezone: Europe/Paris
    http: { allow: [b.example.com] }
";

fn deployment() -> Deployment {
    common::init();
    let d = Deployment::new();
    d.runbook("greet.yaml", GREET);
    std::fs::write(d.path().join("runbookd.yaml"), SETTINGS).unwrap();
    d
}

#[test]
fn settings_show_with_their_origin_and_apply_to_cli_runs() {
    let d = deployment();
    let shown = d.cli_env(&["runbooks", "greet"], &[("COLUMNS", "120")]);
    assert_eq!((shown.code, shown.stderr.as_str()), (0, ""));
    assert_eq!(
        shown.stdout,
        "\
greet (runbooks/greet.yaml)
SETTING     VALUE                            FROM
enabled     true                             runbookd.yaml:4:14
trigger     cron 0 9 * * 1-5 (Europe/Paris)  runbooks/greet.yaml, zone from runbookd.yaml:6:15
trigger     webhook /hooks/greet (none)      runbooks/greet.yaml
trigger     manual                           runbooks/greet.yaml
param       greeting = \"bonjour\"             runbookd.yaml:5:25
param       count = 1                        runbooks/greet.yaml
http.allow  a.example.com                    runbooks/greet.yaml
http.allow  b.example.com                    runbookd.yaml:7:21
"
    );
    let typo = d.cli(&["runbooks", "gret"]);
    assert_eq!(
        (typo.code, typo.stdout.as_str(), typo.stderr.as_str()),
        (
            2,
            "",
            "error: there is no runbook named gret\nhint: did you mean \"greet\"?\n"
        )
    );
    let ran = d.cli(&["run", "greet", "--json"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let out: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        (&out["run"]["status"], &out["run"]["output"]),
        (
            &serde_json::json!("succeeded"),
            &serde_json::json!("bonjour")
        )
    );
}

#[test]
fn settings_errors_point_into_runbookd_yaml() {
    let d = deployment();
    std::fs::write(
        d.path().join("runbookd.yaml"),
        "runbooks:
  gret:
    enabled: true
  greet:
    enabled: yes
    params: { greting: bonjour, count: \"2\" }
    timezone: Europe/Pari
    http: { allow: [\"https://b.example.com/\"] }
    retries: 3
",
    )
    .unwrap();
    let checked = d.cli(&["check"]);
    assert_eq!(
        (checked.code, checked.stdout.as_str()),
        (
            1,
            "\
runbookd.yaml:5:14: `enabled` must be true or false
runbookd.yaml:9:5: unknown key `retries` in the settings of runbook greet, expected one of enabled, params, timezone, http
runbookd.yaml:2:3: there is no runbook named gret (did you mean \"greet\"?)
0 runbooks ok, 1 failed with 3 errors
"
        ),
        "stderr: {}",
        checked.stderr
    );
    // With the shape right, the values are checked against the runbook.
    std::fs::write(
        d.path().join("runbookd.yaml"),
        "runbooks:
  greet:
    params: { greting: bonjour, count: \"2\" }
    timezone: Europe/Pari
    http: { allow: [\"https://b.example.com/\"] }
",
    )
    .unwrap();
    let checked = d.cli(&["check"]);
    assert_eq!(
        (checked.code, checked.stdout.as_str()),
        (
            1,
            "\
runbookd.yaml:3:15: runbook greet has no param `greting`; its params are count, greeting (did you mean \"greeting\"?)
runbookd.yaml:3:40: param count of runbook greet is a string, but its type is integer
runbookd.yaml:4:15: unknown timezone \"Europe/Pari\" (did you mean \"Europe/Paris\"?)
runbookd.yaml:5:21: \"https://b.example.com/\" is not a host name; write hosts like api.example.com or *.example.com (did you mean \"b.example.com\"?)
0 runbooks ok, 1 failed with 4 errors
"
        ),
        "stderr: {}",
        checked.stderr
    );
}

/// Webhook runs see the effective runbook (enabled and its params from the
/// config file), and a reload reads the config file again.
#[test]
fn webhook_runs_use_the_settings_and_reload_rereads_them() {
    let d = deployment();
    let daemon = Daemon::start(&d, &[]);
    let hook = || {
        send(
            client()
                .post(format!("{}/hooks/greet", daemon.url))
                .json(&serde_json::json!({})),
        )
    };
    assert_eq!(hook().status, 202);
    let runs = daemon.wait_runs("the first run ends", Duration::from_secs(20), |r| {
        r.len() == 1 && r[0].status == RunStatus::Succeeded
    });
    assert_eq!(
        (&runs[0].params, &runs[0].output),
        (
            &serde_json::json!({"greeting": "bonjour", "count": 1}),
            &Some(serde_json::json!("bonjour"))
        )
    );

    std::fs::write(
        d.path().join("runbookd.yaml"),
        SETTINGS.replace("bonjour", "hola"),
    )
    .unwrap();
    let reloaded = send(client().post(format!("{}/api/v1/reload", daemon.url)));
    assert_eq!(
        reloaded.body,
        serde_json::json!({"runbooks": 1, "errors": []})
    );
    assert_eq!(hook().status, 202);
    let runs = daemon.wait_runs("the second run ends", Duration::from_secs(20), |r| {
        r.len() == 2 && r.iter().all(|r| r.status == RunStatus::Succeeded)
    });
    assert_eq!(runs[1].output, Some(serde_json::json!("hola")));

    // Without the settings, the runbook is disabled again, as it ships.
    std::fs::write(d.path().join("runbookd.yaml"), "timezone: UTC\n").unwrap();
    send(client().post(format!("{}/api/v1/reload", daemon.url)));
    assert_eq!(
        hook().status,
        401,
        "a disabled runbook answers as an unknown path"
    );
}

/// `runbookd test` pins the runbook as shipped: the deployment's settings do
/// not change what its tests see.
#[test]
fn runbook_tests_use_the_runbooks_own_defaults() {
    let d = deployment();
    std::fs::create_dir_all(d.path().join("tests/runbooks")).unwrap();
    std::fs::write(
        d.path().join("tests/runbooks/greet.yaml"),
        "runbook: greet
cases:
  - name: greets with the default word
    now: 2025-01-08T08:00:00Z
    trigger: { kind: manual }
    expect:
      output: hello
",
    )
    .unwrap();
    let tested = d.cli(&["test", "greet"]);
    assert_eq!(tested.code, 0, "{}\n{}", tested.stdout, tested.stderr);
}

/// Each shipped runbook's page shows the `runbookd.yaml` entry that enables
/// it; all of them together load against the shipped runbooks.
#[test]
fn the_documented_settings_of_the_shipped_runbooks_load() {
    common::init();
    let d = Deployment::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = String::from("runbooks:\n");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("runbooks")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&path, d.runbooks().join(path.file_name().unwrap())).unwrap();
        let Ok(page) = std::fs::read_to_string(root.join(format!("docs/runbooks/{name}.md")))
        else {
            continue;
        };
        let snippet = page
            .split("**To enable: add this to `runbookd.yaml`**")
            .nth(1)
            .and_then(|rest| rest.split("```yaml\nrunbooks:\n").nth(1))
            .and_then(|rest| rest.split("```").next())
            .unwrap_or_else(|| panic!("docs/runbooks/{name}.md shows how to enable it"));
        config.push_str(snippet);
        names.push(name);
    }
    assert_eq!(names.len(), 6, "{names:?}");
    std::fs::write(d.path().join("runbookd.yaml"), config).unwrap();
    for dir in ["scripts", "data"] {
        copy_tree(&root.join(dir), &d.path().join(dir));
    }
    let secrets = [
        ("ZENDESK_TOKEN", "zendesk-token-of-the-deployment"),
        ("ALERTMANAGER_TOKEN", "alertmanager-token-of-the-deployment"),
        ("REMEDIATION_TOKEN", "remediation-token-of-the-deployment"),
    ];
    let checked = d.cli_env(&["check"], &secrets);
    assert_eq!(
        (checked.code, checked.stdout.as_str()),
        (0, "7 runbooks ok\n"),
        "{}",
        checked.stderr
    );
    for name in &names {
        let shown = d.cli_env(
            &["runbooks", name],
            &[secrets.as_slice(), &[("COLUMNS", "400")]].concat(),
        );
        assert!(
            shown.stdout.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.len() == 3
                    && words[..2] == ["enabled", "true"]
                    && words[2].starts_with("runbookd.yaml:")
            }),
            "{name} is enabled from runbookd.yaml:\n{}",
            shown.stdout
        );
    }
}

/// Copy a directory with its subdirectories (scripts have module folders).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
