//! The CLI's listings as a person at a terminal meets them: filters that
//! refuse values they cannot match, dry runs marked as such, tables that fit
//! 80 columns (cut with `…`, never wrapped), a closed pipe that ends the
//! command quietly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::Deployment;
use common::daemon::Daemon;
use common::http::{client, send};

/// Raises an issue and queues an email with long words, and answers a webhook.
const NOISY: &str = r#"description: Raises an issue and emails about it.
triggers:
  - cron: "0 9 1 1,4,7,10 *"
    timezone: Europe/Paris
  - cron: "30 8 * * 1-5"
    timezone: America/Argentina/Buenos_Aires
  - webhook: { auth: none, insecure: true, path: /hooks/noisy-provider-status-change }
  - manual
run: |
  issues::open("statuspage:acme-processor:card-authorizations-and-issuing", #{
    title: "acme-processor: Card Authorizations and Card Issuing API: degraded performance since the morning",
    severity: "medium",
  });
  email::send(#{
    to: ["cards-lead@acme-wallet.example", "support-director@acme-wallet.example"],
    subject: "Access review 2025-Q1: 2 grants to review by 2025-01-20, with a long subject line",
    text: "Hello",
  });
  "ok"
"#;

fn deployment() -> Deployment {
    common::init();
    let d = Deployment::new();
    d.runbook("noisy-provider-status.yaml", NOISY);
    d
}

fn assert_usage_error(d: &Deployment, args: &[&str], stderr: &str) {
    let ran = d.cli(args);
    assert_eq!(
        (ran.code, ran.stdout.as_str(), ran.stderr.as_str()),
        (2, "", stderr),
        "runbookd {args:?}"
    );
}

#[test]
fn filters_refuse_values_they_cannot_match() {
    let d = deployment();
    assert_usage_error(
        &d,
        &["emails", "--status", "bogus"],
        "error: unknown status \"bogus\"\nhint: a status is one of queued, sending, sent, partial, failed, ambiguous\n",
    );
    assert_usage_error(
        &d,
        &["issues", "--severity", "hgih"],
        "error: unknown severity \"hgih\"\nhint: did you mean \"high\"?\n",
    );
    assert_usage_error(
        &d,
        &["runs", "--runbook", "noisy-provider-statu"],
        "error: there is no runbook named noisy-provider-statu\nhint: did you mean \"noisy-provider-status\"?\n",
    );
    assert_usage_error(
        &d,
        &["runs", "--limit", "0"],
        "error: invalid value '0' for '--limit <LIMIT>': 0 is not in 1..=1000\n\nFor more information, try '--help'.\n",
    );
    // With runs recorded, a typo is still caught; a real name with no runs is not an error.
    assert_eq!(d.cli(&["run", "noisy-provider-status"]).code, 0);
    assert_usage_error(
        &d,
        &["runs", "--runbook", "backup"],
        "error: there is no runbook named backup\nhint: `runbookd runbooks` lists the runbooks\n",
    );
}

#[test]
fn dry_runs_are_marked_in_runs_and_show() {
    let d = deployment();
    let ran = d.cli(&["run", "noisy-provider-status", "--dry-run"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let runs = d.cli(&["runs"]);
    let row: Vec<&str> = (runs.stdout.lines().nth(1).unwrap().split("  "))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        (row[0], row[1], row[2]),
        ("1", "succeeded (dry run)", "manual"),
        "{}",
        runs.stdout
    );
    let shown = d.cli(&["show", "1"]);
    assert_eq!(
        shown.stdout.lines().nth(2),
        Some("Status     succeeded (dry run: writes were planned, not made)"),
        "{}",
        shown.stdout
    );
}

/// `runbooks`, `emails`, `issues` and `deliveries` print at most 80 columns
/// when stdout is not a terminal, cutting the column that can lose most.
#[test]
fn listings_fit_80_columns() {
    let d = deployment();
    d.runbook("off.yaml", "enabled: false\nrun: '1'\n");
    {
        let daemon = Daemon::start(&d, &[]);
        assert_banner(&daemon.text());
        let r = send(
            client()
                .post(format!("{}/hooks/noisy-provider-status-change", daemon.url))
                .json(&serde_json::json!({"page": {"id": "kctbh9vrtdwd"}})),
        );
        assert_eq!(r.status, 202, "{}", r.text);
        daemon.wait_runs(
            "the webhook run ends",
            std::time::Duration::from_secs(20),
            |r| r.len() == 1 && r[0].finished_at.is_some(),
        );
    }
    for (args, header) in [
        (&["runbooks"][..], "NAME"),
        (&["emails"][..], "ID"),
        (&["issues"][..], "SEVERITY"),
        (&["deliveries"][..], "ID"),
    ] {
        let ran = d.cli(args);
        assert_eq!(ran.code, 0, "{args:?}: {}", ran.stderr);
        let lines: Vec<&str> = ran.stdout.lines().collect();
        assert!(
            lines.len() >= 2 && lines[0].starts_with(header),
            "{args:?}:\n{}",
            ran.stdout
        );
        assert!(
            lines.iter().all(|l| l.chars().count() <= 80) && ran.stdout.contains('…'),
            "{args:?} fits 80 columns, cutting with …:\n{}",
            ran.stdout
        );
    }
    // A wider terminal shows more.
    let wide = d.cli_env(&["issues"], &[("COLUMNS", "200")]);
    assert!(
        wide.stdout.contains(
            "acme-processor: Card Authorizations and Card Issuing API: degraded performance since the morning"
        ),
        "{}",
        wide.stdout
    );
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let d = deployment();
    let mut child = Command::new(env!("CARGO_BIN_EXE_runbookd"))
        .args(["next", "--count", "2000"])
        .current_dir(d.path())
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone (as `| head -1` goes) while runbookd still writes.
    let out = child.wait_with_output().unwrap();
    assert!(!first.is_empty());
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).as_ref()
        ),
        (Some(0), "")
    );
}

/// The start banner counts enabled and disabled runbooks, lists webhook
/// paths, and shows next fire times in the trigger's zone and UTC, aligned.
fn assert_banner(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let at = |l: &str| {
        lines
            .iter()
            .position(|x| *x == l)
            .unwrap_or_else(|| panic!("no line {l:?}:\n{text}"))
    };
    at("  runbooks   1 enabled, 1 disabled, 0 failed, from runbooks");
    let hooks = at("  webhooks");
    assert_eq!(
        lines[hooks + 1],
        "    POST /hooks/noisy-provider-status-change  noisy-provider-status  auth none"
    );
    let fires = at("  next fire times (in the trigger's zone, then UTC)");
    let rows = &lines[fires + 1..fires + 3];
    // Each row: name, trigger, the time in the trigger's zone, the time in UTC.
    let date_at = |l: &str| l.find(" 20").expect("a date");
    assert_eq!(
        date_at(rows[0]),
        date_at(rows[1]),
        "aligned:\n{}",
        rows.join("\n")
    );
    for row in rows {
        assert!(
            row.ends_with(" UTC") && row.contains("noisy-provider-status  cron "),
            "{row}"
        );
    }
    assert!(
        rows.iter()
            .any(|r| r.contains("(Europe/Paris)") && (r.contains(" CET ") || r.contains(" CEST ")))
            && rows
                .iter()
                .any(|r| r.contains("(America/Argentina/Buenos_Aires)") && r.contains(" -03 ")),
        "{}",
        rows.join("\n")
    );
}
