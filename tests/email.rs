//! Email delivery as docs/email-and-issues.md states it, against a real SMTP server
//! over TCP: each recipient's answer counts on its own, every attempt of an
//! email carries its one Message-ID, a connection lost after DATA is
//! ambiguous and tried once more, and a refused login holds the email and
//! tells the operator.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::http::{client, send};
use common::{Deployment, Harness, SECRET_VALUE, SMTP_USER};
use runbookd::config::{Config, Smtp};
use runbookd::notify::{LOGIN_ISSUE, Mailer};
use runbookd::store::{
    EmailRow, EmailStatus, IssueStatus, RecipientResult, RecipientStatus, Recipients, RunStatus,
    Severity, Store,
};

/// A daemon's effects with SMTP on `port` (plain text, 200 ms first retry),
/// logging in when `login` is set.
fn config(d: &Deployment, port: u16, login: bool) -> Config {
    Config {
        templates: d.path().join("templates"),
        smtp: Some(Smtp {
            url: format!("smtp://127.0.0.1:{port}"),
            from: "runbookd@ops.example.com".into(),
            username: login.then(|| "SMTP_USER".into()),
            password: login.then(|| "SMTP_PASSWORD".into()),
            tls: Some("none".into()),
            retry_delay: Some("200ms".into()),
        }),
        ..Config::default()
    }
}

/// A sink on 127.0.0.1:0, a deployment whose runbook `send` queues one
/// email per `email::send` line of `sends`, and its mailer.
async fn setup(
    sends: &str,
    login: bool,
    prepare: impl FnOnce(&mut common::smtp::State),
) -> (Harness, Mailer, common::smtp::Sink) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = common::smtp::serve(listener);
    prepare(&mut sink.0.lock().unwrap());
    let d = Deployment::new();
    d.runbook("send.yaml", &format!("run: |\n{sends}"));
    let cfg = config(&d, port, login);
    let (h, mailer) = Harness::with_effects(d, cfg).await;
    let out = h.run("send").await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    (h, mailer.expect("smtp is configured"), sink)
}

const TO_THREE: &str = "  email::send(#{ to: [\"ana@example.com\", \"bo@example.com\"], cc: \"lead@example.com\", subject: \"3 tickets waiting\", text: \"x\" })\n";

async fn email(store: &dyn Store) -> EmailRow {
    store.list_emails(None, 10).await.unwrap().remove(0)
}

/// Deliver until `done` holds of the (only) email, within 20 s.
async fn deliver_until(
    mailer: &Mailer,
    store: &dyn Store,
    done: impl Fn(&EmailRow) -> bool,
) -> EmailRow {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        mailer.pass().await;
        let e = email(store).await;
        if done(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "never came: {e:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn results(list: &[(&str, RecipientStatus, &str, u32, u32)]) -> BTreeMap<String, RecipientResult> {
    list.iter()
        .map(|(who, status, reply, attempts, ambiguous)| {
            let r = RecipientResult {
                status: *status,
                reply: reply.to_string(),
                attempts: *attempts,
                ambiguous: *ambiguous,
            };
            (who.to_string(), r)
        })
        .collect()
}

const REFUSED: &str = "permanent error (550): Mailbox unavailable";
const BUSY: &str = "transient error (450): Mailbox busy, try again later";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_recipient_counts_on_its_own_and_a_partial_success_shows_as_partial() {
    let (h, mailer, sink) = setup(TO_THREE, false, |s| {
        s.answers.insert("bo@example.com".into(), [550].into());
        s.answers.insert("lead@example.com".into(), [450].into());
    })
    .await;
    let store = h.executor.store().clone();
    let first = deliver_until(&mailer, &*store, |e| e.attempts == 1).await;
    use RecipientStatus::*;
    assert_eq!(first.status, EmailStatus::Queued, "lead is tried again");
    assert_eq!(
        first.results,
        results(&[
            ("ana@example.com", Sent, "250 OK", 1, 0),
            ("bo@example.com", Failed, REFUSED, 1, 0),
            ("lead@example.com", Deferred, BUSY, 1, 0),
        ])
    );
    let last = deliver_until(&mailer, &*store, |e| e.status != EmailStatus::Queued).await;
    assert_eq!((last.status, last.attempts), (EmailStatus::Partial, 2));
    assert_eq!(
        last.results,
        results(&[
            ("ana@example.com", Sent, "250 OK", 1, 0),
            ("bo@example.com", Failed, REFUSED, 1, 0),
            ("lead@example.com", Sent, "250 OK", 2, 0),
        ])
    );
    assert_eq!(
        last.last_error,
        Some(format!("bo@example.com: failed — {REFUSED}"))
    );
    {
        let state = sink.0.lock().unwrap();
        let envelopes: Vec<&[String]> = state.received.iter().map(|r| r.to.as_slice()).collect();
        assert_eq!(
            envelopes,
            [
                &["ana@example.com".to_string()][..],
                &["lead@example.com".to_string()][..]
            ]
        );
        for r in &state.received {
            assert_eq!(r.message_id(), Some(last.message_id.as_str()));
            assert!(
                r.data.contains("To: ana@example.com, bo@example.com"),
                "{}",
                r.data
            );
        }
    }
    // The API answers the whole row, each recipient's result included.
    let Harness {
        deployment,
        executor,
        sandbox,
    } = h;
    drop((mailer, store, executor, sandbox));
    let daemon = Daemon::start(&deployment, &[]);
    let url = format!("{}/api/v1/emails?status=partial", daemon.url);
    let answer = tokio::task::spawn_blocking(move || send(client().get(url)))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    let api = answer.body;
    assert_eq!(api["emails"][0]["status"], "partial");
    assert_eq!(
        serde_json::from_value::<Recipients>(api["emails"][0]["results"].clone()).unwrap(),
        last.results
    );
    assert_eq!(api["emails"][0]["message_id"], last.message_id.as_str());
    // The UI's outbox page lists each recipient's result.
    let url = format!("{}/emails", daemon.url);
    let page = tokio::task::spawn_blocking(move || send(client().get(url)))
        .await
        .unwrap();
    for line in [
        "ana@example.com: <span class=\"status\">sent</span> — 250 OK</li>".to_string(),
        format!("bo@example.com: <span class=\"status\">failed</span> — {REFUSED}</li>"),
        "lead@example.com: <span class=\"status\">sent</span> — 250 OK <span class=\"muted\">(2 attempts)</span></li>".to_string(),
    ] {
        assert!(page.text.contains(&line), "{line} not in\n{}", page.text);
    }
    drop(daemon);

    let listed = deployment.cli_env(&["emails", "--status", "partial"], &[("COLUMNS", "250")]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let row = listed.stdout.lines().nth(1).unwrap_or_default();
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&words[1..4], ["partial", "2/3", "2"], "{}", listed.stdout);
    assert!(
        row.ends_with(&format!(
            "3 tickets waiting — bo@example.com: failed — {REFUSED}"
        )),
        "{}",
        listed.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_after_data_is_ambiguous_tried_once_more_with_the_same_message_id() {
    let (h, mailer, sink) = setup(
        "  email::send(#{ to: \"ana@example.com\", subject: \"s\", text: \"x\" })\n",
        false,
        |s| s.drops_after_data = 4,
    )
    .await;
    let store = h.executor.store().clone();
    let first = deliver_until(&mailer, &*store, |e| e.attempts == 1).await;
    assert_eq!(first.status, EmailStatus::Queued);
    assert_eq!(
        first.results["ana@example.com"].status,
        RecipientStatus::Ambiguous
    );
    let last = deliver_until(&mailer, &*store, |e| e.status != EmailStatus::Queued).await;
    assert_eq!((last.status, last.attempts), (EmailStatus::Ambiguous, 2));
    let lost = "the connection was lost after the message: response error: incomplete response";
    assert_eq!(
        last.results,
        results(&[("ana@example.com", RecipientStatus::Ambiguous, lost, 2, 2)])
    );
    assert_eq!(
        mailer.pass().await,
        0,
        "an ambiguous email is not tried a third time"
    );
    let state = sink.0.lock().unwrap();
    let ids: Vec<Option<&str>> = state.received.iter().map(|r| r.message_id()).collect();
    assert_eq!(
        ids,
        [Some(last.message_id.as_str()); 2],
        "two copies, one Message-ID"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_holds_the_email_and_opens_an_issue_a_later_login_resolves() {
    let sends = concat!(
        "  email::send(#{ to: \"ana@example.com\", subject: \"one\", text: \"x\" });\n",
        "  email::send(#{ to: \"bo@example.com\", subject: \"two\", text: \"y\", key: \"two\" });\n",
    );
    let (h, mailer, sink) = setup(sends, true, |s| {
        s.login = Some((SMTP_USER.into(), "rotated-password".into()))
    })
    .await;
    let store = h.executor.store().clone();
    let started = runbookd::clock::now();
    assert_eq!(mailer.pass().await, 2);
    let held = store.list_emails(None, 10).await.unwrap();
    for e in &held {
        assert_eq!(
            (e.status, e.attempts, e.sent_at),
            (EmailStatus::Queued, 0, None),
            "{e:#?}"
        );
        assert!(
            e.next_attempt_at >= started + chrono::TimeDelta::minutes(15),
            "{e:#?}"
        );
        assert_eq!(
            e.last_error.as_deref(),
            Some(
                "held: the mail server refused our login (permanent error (535): Invalid credentials); tried again every 15 minutes"
            )
        );
    }
    assert_eq!(
        sink.0.lock().unwrap().logins,
        [(SMTP_USER.to_string(), false)],
        "one refused login, not one per email"
    );
    let issue = store
        .issue(LOGIN_ISSUE)
        .await
        .unwrap()
        .expect("the operator is told");
    assert_eq!(
        (issue.status, issue.severity, issue.runbook.as_str()),
        (IssueStatus::Open, Severity::High, "runbookd")
    );
    let told = format!("{issue:?} {held:?}");
    assert!(told.contains("535 ") || told.contains("(535)"), "{told}");
    assert!(
        !told.contains(SECRET_VALUE),
        "the password stays secret: {told}"
    );

    // The digest is a runbook: issues::list shows it the issue.
    h.deployment.runbook(
        "digest.yaml",
        "run: |\n  issues::list(#{}).map(|i| i.key)\n",
    );
    let listed = h.run("digest").await;
    assert_eq!(listed.output, Some(serde_json::json!([LOGIN_ISSUE])));

    // The password is rotated on the server to ours; the next email logs in.
    sink.0.lock().unwrap().login = Some((SMTP_USER.into(), SECRET_VALUE.into()));
    h.deployment.runbook(
        "later.yaml",
        "run: |\n  email::send(#{ to: \"cy@example.com\", subject: \"three\", text: \"z\" })\n",
    );
    assert_eq!(h.run("later").await.status, RunStatus::Succeeded);
    assert_eq!(
        mailer.pass().await,
        1,
        "the held emails wait their 15 minutes"
    );
    let sent = store
        .list_emails(Some(EmailStatus::Sent), 10)
        .await
        .unwrap();
    assert_eq!(
        sent.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(),
        ["three"]
    );
    let issue = store.issue(LOGIN_ISSUE).await.unwrap().unwrap();
    assert_eq!(
        (issue.status, issue.resolution.as_deref()),
        (
            IssueStatus::Resolved,
            Some("the mail server accepted the login again")
        )
    );
}

#[test]
fn the_smtp_password_stays_out_of_the_log_even_at_debug_level() {
    assert_eq!(
        common::smtp::base64(b"\0u\0pw"),
        "AHUAcHc=",
        "as AUTH PLAIN encodes"
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = common::smtp::serve(listener);
    sink.0.lock().unwrap().login = Some((SMTP_USER.into(), SECRET_VALUE.into()));
    let d = Deployment::new();
    d.runbook(
        "send.yaml",
        "run: |\n  email::send(#{ to: \"ana@example.com\", subject: \"s\", text: \"x\" })\n",
    );
    let config = format!(
        "smtp:\n  url: smtp://127.0.0.1:{port}\n  from: runbookd@ops.example.com\n  tls: none\n  username: SMTP_USER\n  password: SMTP_PASSWORD\n"
    );
    std::fs::write(d.path().join("runbookd.yaml"), config).unwrap();
    let env = [
        ("RUST_LOG", "debug"),
        ("SMTP_USER", SMTP_USER),
        ("SMTP_PASSWORD", SECRET_VALUE),
    ];
    let ran = d.cli_env(&["run", "send"], &env);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(sink.0.lock().unwrap().received.len(), 1, "{}", ran.stderr);
    let plain = common::smtp::base64(format!("\0{SMTP_USER}\0{SECRET_VALUE}").as_bytes());
    for secret in [
        SECRET_VALUE.to_string(),
        plain,
        common::smtp::base64(SECRET_VALUE.as_bytes()),
    ] {
        assert!(
            !ran.stderr.contains(&secret),
            "{secret} in the log:\n{}",
            ran.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_required_unless_tls_none_is_written() {
    // The sink offers no STARTTLS: nothing may go out in plain text.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = common::smtp::serve(listener);
    let d = Deployment::new();
    d.runbook(
        "send.yaml",
        "run: |\n  email::send(#{ to: \"ana@example.com\", subject: \"s\", text: \"x\" })\n",
    );
    let mut cfg = config(&d, port, true);
    cfg.smtp.as_mut().unwrap().tls = None;
    let (h, mailer) = Harness::with_effects(d, cfg).await;
    let mailer = mailer.unwrap();
    assert_eq!(h.run("send").await.status, RunStatus::Succeeded);
    let store = h.executor.store().clone();
    let e = deliver_until(&mailer, &*store, |e| e.attempts == 1).await;
    let refused = "internal client error: STARTTLS is not supported on this server";
    assert_eq!(e.status, EmailStatus::Queued);
    assert_eq!(
        e.results,
        results(&[("ana@example.com", RecipientStatus::Deferred, refused, 1, 0)])
    );
    let state = sink.0.lock().unwrap();
    assert!(
        state.received.is_empty() && state.logins.is_empty(),
        "{state:?}"
    );
}
