//! The outside world from scripts: HTTP against fake providers with the
//! egress policy, email over real SMTP through the outbox, issues, dry runs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::{Deployment, Harness, SECRET_VALUE};
use runbookd::config::{Config, Smtp};
use runbookd::store::{EmailStatus, RecipientStatus, RunStatus};

/// A provider on 127.0.0.1:0 that speaks JSON, rate-limits, stalls and redirects.
async fn provider() -> (String, Arc<AtomicU32>) {
    let posts = Arc::new(AtomicU32::new(0));
    let limited = Arc::new(AtomicU32::new(0));
    let p = posts.clone();
    let app = Router::new()
        .route("/api/tickets", get(|| async { axum::Json(serde_json::json!({"tickets": [{"id": 7, "status": "pending"}], "count": 1})) }))
        .route(
            "/api/echo",
            post(move |headers: HeaderMap, body: String| {
                let p = p.clone();
                async move {
                    p.fetch_add(1, Ordering::SeqCst);
                    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
                    axum::Json(serde_json::json!({"got": serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default(), "auth": auth}))
                }
            }),
        )
        .route(
            "/api/limited",
            get(move || {
                let l = limited.clone();
                async move {
                    if l.fetch_add(1, Ordering::SeqCst) == 0 {
                        (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response()
                    } else {
                        axum::Json(serde_json::json!({"ok": true})).into_response()
                    }
                }
            }),
        )
        .route("/api/slow", get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }))
        .route("/api/redirect", get(|| async { (StatusCode::FOUND, [("location", "http://169.254.169.254/latest/meta-data/")]) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("127.0.0.1:{}", addr.port()), posts)
}

fn config(d: &Deployment, smtp_port: Option<u16>) -> Config {
    Config {
        templates: d.path().join("templates"),
        smtp: smtp_port.map(|port| Smtp {
            url: format!("smtp://127.0.0.1:{port}"),
            from: "runbookd@ops.example.com".into(),
            username: None,
            password: None,
            tls: Some("none".into()),
            retry_delay: Some("200ms".into()),
        }),
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_calls_follow_the_policy_and_the_providers_rules() {
    let (host, posts) = provider().await;
    let d = Deployment::new();
    let allow = format!("http:\n  allow: [\"{host}\"]\nsecrets: [API_TOKEN]\n");
    d.runbook(
        "calls.yaml",
        &format!(
            "{allow}run: |\n  let r = http::get(\"http://{host}/api/tickets\");\n  let p = http::post(\"http://{host}/api/echo?token=\" + secret(\"API_TOKEN\"), #{{ id: r.json.tickets[0].id }}, #{{ bearer: secret(\"API_TOKEN\") }});\n  let l = http::get(\"http://{host}/api/limited\", #{{ retry: 2 }});\n  #{{ status: r.status, ok: r.ok, count: r.json.count, echoed: p.json.got.id, auth: p.json.auth, limited: l.status, took: l.elapsed_ms }}\n"
        ),
    );
    d.runbook(
        "slow.yaml",
        &format!(
            "{allow}run: |\n  http::get(\"http://{host}/api/slow\", #{{ timeout: \"500ms\" }})\n"
        ),
    );
    d.runbook(
        "metadata.yaml",
        &format!("{allow}run: |\n  http::get(\"http://{host}/api/redirect\")\n"),
    );
    d.runbook(
        "elsewhere.yaml",
        "run: |\n  http::get(\"http://example.org/\")\n",
    );
    let (h, _) = Harness::with_effects(d, config(&Deployment::new(), None)).await;

    let out = h.run("calls").await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let v = out.output.unwrap();
    assert_eq!(
        (
            v["status"].as_i64(),
            v["ok"].as_bool(),
            v["count"].as_i64(),
            v["echoed"].as_i64()
        ),
        (Some(200), Some(true), Some(1), Some(7))
    );
    assert_eq!(
        v["auth"], "Bearer ***",
        "the secret reached the provider and is masked in the output"
    );
    assert_eq!(v["limited"], 200, "429 with Retry-After was retried");
    assert!(
        v["took"].as_i64().unwrap() >= 1000,
        "Retry-After: 1 was honoured: {v}"
    );
    assert_eq!(posts.load(Ordering::SeqCst), 1);
    let detail = h.detail(out.run_id).await;
    let log: Vec<&str> = detail.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(
        log.iter()
            .any(|l| l.starts_with(&format!("http GET http://{host}/api/tickets → 200 in "))),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with(&format!("http POST http://{host}/api/echo?token=*** → 200"))),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("/api/limited → 200 in") && l.ends_with("after 1 retries")),
        "{log:?}"
    );
    assert!(
        !serde_json::to_string(&detail)
            .unwrap()
            .contains(SECRET_VALUE)
    );

    let t = Instant::now();
    let slow = h.run("slow").await;
    assert_eq!(slow.status, RunStatus::Failed);
    assert!(
        slow.error
            .as_deref()
            .unwrap()
            .contains("/api/slow failed: timed out"),
        "{:?}",
        slow.error
    );
    assert!(t.elapsed() < Duration::from_secs(3));

    let meta = h.run("metadata").await;
    assert!(
        meta.error
            .as_deref()
            .unwrap()
            .contains("169.254.169.254 is a cloud metadata address; runbooks may never call it"),
        "{:?}",
        meta.error
    );
    let outside = h.run("elsewhere").await;
    assert!(
        outside
            .error
            .as_deref()
            .unwrap()
            .contains("host example.org is not in this runbook's http.allow; add \"example.org\""),
        "{:?}",
        outside.error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_the_outbox_once_over_real_smtp() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = common::smtp::serve(listener);
    sink.0.lock().unwrap().temporary_failures = 1;
    let d = Deployment::new();
    d.runbook(
        "notify.yaml",
        concat!(
            "retry: { attempts: 2, delay: 10ms }\n",
            "steps:\n  - name: mail\n    run: |\n",
            "      email::send(#{ to: [\"ana@example.com\", \"bo@example.com\"], cc: \"lead@example.com\", subject: \"3 tickets waiting\",\n",
            "                     text: \"Plain body\", html: \"<p>HTML body</p>\" })\n",
            "  - name: flaky\n    run: |\n      if run.attempt == 1 { throw \"provider hiccup\" }\n      \"done\"\n",
        ),
    );
    let cfg = config(&d, Some(port));
    let (h, mailer) = Harness::with_effects(d, cfg).await;
    let mailer = mailer.expect("smtp is configured");
    let out = h.run("notify").await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    let store = h.executor.store();
    let queued = store.list_emails(None, 10).await.unwrap();
    assert_eq!(
        queued.len(),
        1,
        "the retried attempt did not queue it twice"
    );

    // The first delivery meets a 450; the next one, after the backoff, goes through.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        mailer.pass().await;
        if store
            .list_emails(Some(EmailStatus::Sent), 10)
            .await
            .unwrap()
            .len()
            == 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not sent: {:?}",
            store.list_emails(None, 10).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        // The first recipient met the 450 and got its copy on the retry;
        // the others had theirs at once.
        let state = sink.0.lock().unwrap();
        assert_eq!((state.attempts, state.received.len()), (3, 2));
        let msg = &state.received[0];
        assert_eq!(msg.from, "runbookd@ops.example.com");
        assert_eq!(msg.to, ["bo@example.com", "lead@example.com"]);
        assert_eq!(state.received[1].to, ["ana@example.com"]);
        for expected in [
            "Subject: 3 tickets waiting",
            "To: ana@example.com, bo@example.com",
            "Cc: lead@example.com",
            "multipart/alternative",
            "text/plain",
            "Plain body",
            "text/html",
            "<p>HTML body</p>",
        ] {
            assert!(
                msg.data.contains(expected),
                "missing {expected:?} in\n{}",
                msg.data
            );
        }
    }
    let sent = &store
        .list_emails(Some(EmailStatus::Sent), 10)
        .await
        .unwrap()[0];
    assert_eq!(sent.attempts, 2);
    assert_eq!(
        (
            sent.results["ana@example.com"].status,
            sent.results["ana@example.com"].reply.as_str()
        ),
        (RecipientStatus::Sent, "250 OK"),
        "{:?}",
        sent.results
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_fails_at_once_and_a_server_that_comes_up_later_gets_the_mail() {
    // Reserve a port with nothing listening on it yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let d = Deployment::new();
    d.runbook("one.yaml", "run: |\n  email::send(#{ to: \"a@example.com\", subject: \"hello\", text: \"x\", key: \"only-once\" })\n");
    let cfg = config(&d, Some(port));
    let (h, mailer) = Harness::with_effects(d, cfg).await;
    let mailer = mailer.unwrap();
    let store = h.executor.store().clone();
    assert_eq!(h.run("one").await.status, RunStatus::Succeeded);
    mailer.pass().await;
    let e = &store.list_emails(None, 10).await.unwrap()[0];
    assert_eq!(
        e.status,
        EmailStatus::Queued,
        "a server that is down means later, not never"
    );
    assert!(e.last_error.is_some());

    let sink = common::smtp::serve(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while store
        .list_emails(Some(EmailStatus::Sent), 10)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "never sent");
        mailer.pass().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sink.0.lock().unwrap().received.len(), 1);

    // A permanent refusal is not retried.
    sink.0.lock().unwrap().reject = true;
    h.deployment.runbook(
        "two.yaml",
        "run: |\n  email::send(#{ to: \"b@example.com\", subject: \"again\", text: \"y\" })\n",
    );
    assert_eq!(h.run("two").await.status, RunStatus::Succeeded);
    mailer.pass().await;
    let failed = store
        .list_emails(Some(EmailStatus::Failed), 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, 1);
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("b@example.com: failed — permanent error (550)"),
        "{:?}",
        failed[0].last_error
    );
    mailer.pass().await;
    assert_eq!(sink.0.lock().unwrap().attempts, 2, "no retry after a 5xx");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_open_bump_resolve_and_reopen() {
    let d = Deployment::new();
    d.runbook(
        "watch.yaml",
        concat!(
            "params:\n  down: { type: boolean, default: true }\n",
            "run: |\n  if params.down {\n",
            "    issues::open(\"psp-visa-eu\", #{ title: \"Visa EU approvals below 90%\", severity: \"high\", link: \"https://status.example.com\" })\n",
            "  } else {\n    #{ was_open: issues::resolve(\"psp-visa-eu\", \"recovered\"), now: issues::get(\"psp-visa-eu\").status }\n  }\n",
        ),
    );
    d.runbook(
        "bad.yaml",
        "run: |\n  issues::open(\"k\", #{ title: \"t\", severity: \"urgent\" })\n",
    );
    d.runbook("lister.yaml", "run: |\n  let open = issues::list(#{ severity: \"high\" });\n  #{ n: open.len(), key: open[0].key }\n");
    let (h, _) = Harness::with_effects(d, Config::default()).await;
    let run = |down: bool| {
        let h = &h;
        async move {
            let loaded = h.deployment.load(h.sandbox.clone(), &["API_TOKEN"]);
            let rb = loaded
                .runbooks
                .iter()
                .find(|r| r.name == "watch")
                .unwrap()
                .clone();
            let params =
                runbookd::run::bind_cli_params(&rb, &[("down".into(), down.to_string())]).unwrap();
            let req = runbookd::run::RunRequest::new(
                rb,
                runbookd::run::TriggerInfo::manual(),
                params,
                &tokio_util::sync::CancellationToken::new(),
            );
            let id = runbookd::run::Intake::start(h.executor.store().clone(), None)
                .submit(&req)
                .await
                .unwrap();
            h.executor.execute(id, req).await.output.unwrap()
        }
    };
    let first = run(true).await;
    assert_eq!(
        (
            first["is_new"].as_bool(),
            first["occurrences"].as_i64(),
            first["status"].as_str()
        ),
        (Some(true), Some(1), Some("open"))
    );
    let second = run(true).await;
    assert_eq!(
        (second["is_new"].as_bool(), second["occurrences"].as_i64()),
        (Some(false), Some(2))
    );
    assert_eq!(
        h.run("lister").await.output.unwrap(),
        serde_json::json!({"n": 1, "key": "psp-visa-eu"})
    );
    let resolved = run(false).await;
    assert_eq!(
        resolved,
        serde_json::json!({"was_open": true, "now": "resolved"})
    );
    assert_eq!(
        run(false).await["was_open"],
        false,
        "resolving twice reports it was not open"
    );
    let reopened = run(true).await;
    assert_eq!(
        (
            reopened["reopened"].as_bool(),
            reopened["status"].as_str(),
            reopened["occurrences"].as_i64()
        ),
        (Some(true), Some("open"), Some(3))
    );
    let bad = h.run("bad").await;
    assert!(
        bad.error
            .unwrap()
            .contains("severity \"urgent\" is not one of critical, high, medium, low, info")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reads_but_writes_nothing() {
    let (host, posts) = provider().await;
    let d = Deployment::new();
    d.runbook(
        "writes.yaml",
        &format!(
            "http:\n  allow: [\"{host}\"]\nrun: |\n  let r = http::get(\"http://{host}/api/tickets\");\n  state::set(\"seen\", r.json.count);\n  issues::open(\"k1\", #{{ title: \"t\" }});\n  email::send(#{{ to: \"a@example.com\", subject: \"s\", text: \"x\" }});\n  http::post(\"http://{host}/api/echo\", #{{ a: 1 }});\n  #{{ count: r.json.count, state: state::get(\"seen\") }}\n"
        ),
    );
    d.runbook(
        "outside.yaml",
        "run: |\n  http::post(\"https://not-allowed.example/x\", #{ a: 1 })\n",
    );
    let (h, _) = Harness::with_effects(d, Config::default()).await;
    let refused = h.run_with("outside", true).await;
    assert!(
        refused
            .error
            .as_deref()
            .unwrap_or("")
            .contains("host not-allowed.example is not in this runbook's http.allow"),
        "a dry run refuses what the real run would: {:?}",
        refused.error
    );
    let logged = h.detail(refused.run_id).await;
    assert!(
        logged.logs.iter().any(|l| l.level == "warn"
            && l.message
                .starts_with("http POST refused: https://not-allowed.example/x: host")),
        "the refusal is in the run log: {:?}",
        logged.logs
    );
    let out = h.run_with("writes", true).await;
    assert_eq!(out.status, RunStatus::Succeeded, "{:?}", out.error);
    assert_eq!(
        out.output,
        Some(serde_json::json!({"count": 1, "state": null})),
        "the GET happened; the state write did not"
    );
    let store = h.executor.store();
    assert_eq!(
        posts.load(Ordering::SeqCst),
        0,
        "no POST reached the provider"
    );
    assert!(store.issue("k1").await.unwrap().is_none());
    assert!(store.list_emails(None, 10).await.unwrap().is_empty());
    let detail = store.run_detail(out.run_id).await.unwrap().unwrap();
    assert!(detail.run.dry_run);
    let plan: Vec<&str> = detail
        .logs
        .iter()
        .map(|l| l.message.as_str())
        .filter(|m| m.starts_with("dry run: would "))
        .collect();
    assert_eq!(plan.len(), 4, "{plan:?}");
    assert!(plan.iter().any(|p| p.contains("POST http://")), "{plan:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_are_ignored_and_headers_stay_with_their_origin() {
    use common::fakes::Recorder;
    let proxy = Recorder::start().await;
    let landing = Recorder::start().await;
    // The origin the script names redirects to another origin (another port).
    let to = format!("{}/landed", landing.url());
    let origin = Router::new().route(
        "/go",
        get(move || {
            let to = to.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin_host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, origin).await });
    let landing_host = landing.url().trim_start_matches("http://").to_string();

    let d = Deployment::new();
    d.runbook(
        "call.yaml",
        &format!(
            "http:\n  allow: [\"{origin_host}\", \"{landing_host}\"]\nrun: |\n  let r = http::get(\"http://{origin_host}/go\", #{{ headers: #{{ \"X-Api-Key\": \"key-7f3a\", \"Cookie\": \"s=1\", \"Accept\": \"application/json\" }} }});\n  r.status\n"
        ),
    );
    let proxy_url = proxy.url();
    let ran = tokio::task::spawn_blocking(move || {
        let env = [
            ("HTTP_PROXY", proxy_url.as_str()),
            ("http_proxy", proxy_url.as_str()),
            ("ALL_PROXY", proxy_url.as_str()),
            ("NO_PROXY", ""),
        ];
        let ran = d.cli_env(&["run", "call", "--json"], &env);
        (ran.code, ran.stdout, ran.stderr)
    })
    .await
    .unwrap();
    assert_eq!(ran.0, 0, "{}{}", ran.1, ran.2);
    assert_eq!(proxy.requests().len(), 0, "a call went through the proxy");
    let landed = landing.requests();
    assert_eq!(landed.len(), 1);
    let mut sent: Vec<(String, String)> = landed[0]
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "host" | "user-agent"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [("accept".to_string(), "application/json".to_string())]
    );
}
