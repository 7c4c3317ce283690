//! The web UI in a real browser (headless Chromium over WebDriver) against
//! the real daemon: a person opens the overview, runs a runbook from its
//! form, watches the run, reads its steps, log and output, handles the issue
//! it raised, and hostile text from a payload stays text. With an API token,
//! the UI asks for it and refuses forged form posts. Screenshots of each
//! page land in `target/ui-screenshots/`.

#[path = "common/browser.rs"]
mod browser;
mod common;

use browser::Browser;
use common::Deployment;
use common::daemon::{Daemon, read_runs};
use common::http::{client, read};

/// What an attacker puts in a payload, a log line and an issue title.
const HOSTILE: &str = r#"<script>window.pwned=1</script>"><img src=x onerror="window.pwned=2">"#;
const TOKEN: &str = "ui-test-api-token-0123456789";

fn deployment() -> Deployment {
    let d = Deployment::new();
    d.runbook(
        "greet.yaml",
        r#"description: Greets someone, and raises an issue when asked to.
concurrency: allow
params:
  who: { type: string, default: world }
  raise: { type: boolean, default: false }
steps:
  - name: hello
    run: |
      log::info(`hello ${params.who}`);
      #{ greeted: params.who }
  - name: report
    run: |
      if params.raise {
        issues::open("greet", #{ title: `Greeting ${params.who} needs a look`, severity: "high" });
      }
      log::warn("done");
      #{ count: 1 }
"#,
    );
    d.runbook(
        "hook.yaml",
        r#"description: Takes a provider's alert.
concurrency: allow
triggers:
  - webhook: { auth: none, insecure: true }
run: |
  log::info(trigger.body.note);
  issues::open("hook", #{ title: trigger.body.note, severity: "critical" });
  trigger.body
"#,
    );
    d.runbook(
        "slow.yaml",
        "description: Works until it is stopped.\nconcurrency: allow\nrun: |\n  let end = now() + duration(\"20s\");\n  while now() < end { state::get(\"x\"); }\n",
    );
    d
}

fn runtime() -> tokio::runtime::Runtime {
    common::init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The log lines of the run page without their clock time.
async fn log_lines(b: &Browser) -> Vec<String> {
    b.texts("#log span")
        .await
        .iter()
        .map(|l| {
            l.split_once(' ')
                .map(|(_, rest)| rest.to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// Nothing the payloads carried became markup or ran.
async fn nothing_ran(b: &Browser) {
    let injected = b
        .eval("return document.querySelectorAll('main script, main img, main iframe').length")
        .await;
    assert_eq!(injected, serde_json::json!(0), "markup from a payload");
    assert_eq!(
        b.eval("return typeof window.pwned").await,
        serde_json::json!("undefined"),
        "a payload's script ran"
    );
    assert!(b.client.get_alert_text().await.is_err(), "a dialog is open");
    let fetched = b
        .eval("return performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)")
        .await;
    for path in fetched.as_array().unwrap() {
        let path = path.as_str().unwrap();
        assert!(
            path == "/ui/ui.css" || path == "/ui/ui.js" || path.starts_with("/runs/"),
            "the page fetched {path}"
        );
    }
}

async fn open_ui_walk(daemon: &Daemon, b: &Browser) {
    let url = &daemon.url;
    b.goto(&format!("{url}/")).await;
    b.wait_text("h1", "Overview").await;
    assert_eq!(
        b.texts("#runbooks tbody td:first-child > a").await,
        ["greet", "hook", "slow"]
    );
    assert_eq!(
        b.texts("#runbooks .health").await,
        ["never ran", "never ran", "never ran"]
    );
    b.screenshot("overview").await;

    // Run it from its form, and watch the run finish.
    b.click("a[href='/runbooks/greet']").await;
    b.wait_text("h1", "greet").await;
    b.wait_text(
        "#description",
        "Greets someone, and raises an issue when asked to.",
    )
    .await;
    b.screenshot("runbook").await;
    b.fill("#p-who", "Ada").await;
    b.click("#run-now button[type=submit]").await;
    b.wait_text("#status", "succeeded").await;
    b.wait_text("h1", "Run 1 of greet").await;
    assert_eq!(
        b.texts("#steps tbody td:nth-child(2)").await,
        ["hello", "report"]
    );
    assert_eq!(
        b.texts("#steps tbody td:nth-child(3)").await,
        ["succeeded", "succeeded"]
    );
    assert_eq!(
        b.texts("#steps tbody pre").await,
        ["{\n  \"greeted\": \"Ada\"\n}", "{\n  \"count\": 1\n}"]
    );
    assert_eq!(
        log_lines(b).await,
        ["info [hello] hello Ada", "warn [report] done"]
    );
    assert_eq!(b.texts("#output").await, ["{\n  \"count\": 1\n}"]);
    assert_eq!(
        b.texts("#params").await,
        ["{\n  \"raise\": false,\n  \"who\": \"Ada\"\n}"]
    );
    b.screenshot("run").await;

    // A hostile name: the log line and the issue title show it as text.
    b.goto(&format!("{url}/runbooks/greet")).await;
    b.fill("#p-who", HOSTILE).await;
    b.find("#p-raise")
        .await
        .select_by_value("true")
        .await
        .unwrap();
    b.click("#run-now button[type=submit]").await;
    b.wait_text("#status", "succeeded").await;
    assert_eq!(
        log_lines(b).await,
        [
            format!("info [hello] hello {HOSTILE}"),
            "info [report] issue greet opened (high, seen 1×)".into(),
            "warn [report] done".into()
        ]
    );
    nothing_ran(b).await;

    // The issue it raised: acknowledge, then resolve with a note.
    b.click("header a[href='/issues']").await;
    b.wait_text(".issue-title", &format!("Greeting {HOSTILE} needs a look"))
        .await;
    assert_eq!(b.texts(".issue .status").await, ["open"]);
    nothing_ran(b).await;
    b.click(".issue form[action='/issues/ack'] button").await;
    b.wait_text(".issue .status", "acknowledged").await;
    b.screenshot("issues").await;
    b.fill(".issue input[name=note]", "restarted the greeter")
        .await;
    b.click(".issue form[action='/issues/resolve'] button")
        .await;
    b.wait_text(".issue .status", "resolved").await;
    let resolution = b.texts(".issue p").await;
    assert!(
        resolution.len() == 1 && resolution[0].ends_with(": restarted the greeter"),
        "{resolution:?}"
    );
}

async fn hostile_webhook(daemon: &Daemon, b: &Browser) {
    let url = &daemon.url;
    let body = serde_json::json!({ "note": HOSTILE }).to_string();
    let reply = read(
        client()
            .post(format!("{url}/hooks/hook"))
            .header("content-type", "application/json")
            .body(body.clone()),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    b.goto(&format!("{url}/deliveries")).await;
    b.wait_text("#deliveries tbody td:nth-child(2)", "hook")
        .await;
    let shown = b
        .eval("return document.querySelector('#deliveries pre.body').textContent")
        .await;
    assert_eq!(shown, serde_json::json!(body));
    nothing_ran(b).await;
    b.screenshot("deliveries").await;
    b.click("#deliveries a[href^='/runs/']").await;
    b.wait_text("#status", "succeeded").await;
    b.wait_text(
        "#delivery",
        "Made by webhook delivery #1, received just now.",
    )
    .await;
    assert_eq!(
        log_lines(b).await,
        [
            format!("info [main] {HOSTILE}"),
            "info [main] issue hook opened (critical, seen 1×)".into()
        ]
    );
    nothing_ran(b).await;
    b.goto(&format!("{url}/issues?severity=critical")).await;
    b.wait_text(".issue-title", HOSTILE).await;
    nothing_ran(b).await;
}

/// A running run: its page follows it without a reload, and its Cancel
/// button stops it.
async fn watch_and_cancel(daemon: &Daemon, b: &Browser) {
    let url = &daemon.url;
    for how in ["the page's button", "the API, while the page watches"] {
        b.goto(&format!("{url}/runbooks/slow")).await;
        b.click("#run-now button[type=submit]").await;
        b.wait_text("#status", "running").await;
        if how == "the page's button" {
            b.screenshot("run-running").await;
            b.click("#cancel button").await;
        } else {
            let id = b.client.current_url().await.unwrap().path()["/runs/".len()..].to_string();
            let r = read(client().post(format!("{url}/api/v1/runs/{id}/cancel"))).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
        b.wait_text("#status", "cancelled").await;
        assert!(
            b.texts("#cancel").await.is_empty(),
            "{how}: no Cancel once it ended"
        );
    }
}

#[test]
fn a_person_runs_a_runbook_watches_it_and_handles_what_it_raised() {
    let d = deployment();
    let daemon = Daemon::start(&d, &[]);
    runtime().block_on(async {
        let b = Browser::start().await;
        open_ui_walk(&daemon, &b).await;
        hostile_webhook(&daemon, &b).await;
        watch_and_cancel(&daemon, &b).await;
        b.goto(&format!("{}/emails", daemon.url)).await;
        b.wait_text("#no-emails", "No emails.").await;
        b.screenshot("emails").await;
        b.goto(&format!("{}/runs?runbook=greet", daemon.url)).await;
        assert_eq!(b.texts("#runs tbody td:first-child").await, ["2", "1"]);
        b.screenshot("runs").await;
        b.close().await;
    });
}

async fn session_cookie(b: &Browser) -> String {
    let cookies = b.client.get_all_cookies().await.unwrap();
    let c = cookies
        .iter()
        .find(|c| c.name() == "runbookd_session")
        .expect("a session cookie");
    assert_eq!(c.http_only(), Some(true));
    assert_eq!(format!("{:?}", c.same_site()), "Some(Strict)");
    assert_ne!(c.value(), TOKEN);
    format!("runbookd_session={}", c.value())
}

#[test]
fn with_a_token_the_ui_asks_for_it_and_refuses_forged_posts() {
    let d = deployment();
    let daemon = Daemon::start(&d, &[("RUNBOOKD_API_TOKEN", TOKEN)]);
    let url = daemon.url.clone();
    runtime().block_on(async {
        let b = Browser::start().await;
        b.goto(&format!("{url}/runbooks/greet")).await;
        b.wait_path("/login").await;
        b.wait_text("h1", "Sign in").await;
        b.fill("#token", "not-the-token").await;
        b.click("form button[type=submit]").await;
        b.wait_text("#problem", "That is not the API token.").await;
        b.screenshot("login").await;
        b.fill("#token", TOKEN).await;
        b.click("form button[type=submit]").await;
        b.wait_text("h1", "greet").await;
        let here = b.client.current_url().await.unwrap();
        assert_eq!(here.path(), "/runbooks/greet");
        assert!(!b.client.source().await.unwrap().contains(TOKEN));
        let cookie = session_cookie(&b).await;

        // A form whose CSRF token is not the session's does nothing.
        b.eval("document.querySelector('#run-now input[name=csrf]').value = 'forged'; return 0")
            .await;
        b.click("#run-now button[type=submit]").await;
        b.wait_text("h1", "Forbidden").await;
        b.wait_text(
            "#problem",
            "the form's CSRF token is missing or out of date; reload the page and try again",
        )
        .await;

        // From another origin, even with the right token, nothing is done.
        b.goto(&format!("{url}/runbooks/greet")).await;
        let csrf = b
            .eval("return document.querySelector('#run-now input[name=csrf]').value")
            .await;
        let csrf = csrf.as_str().unwrap().to_string();
        let post = |origin: &str| {
            client()
                .post(format!("{url}/runbooks/greet/run"))
                .header("cookie", &cookie)
                .header("origin", origin)
                .form(&[("csrf", csrf.as_str()), ("p.who", "Eve")])
        };
        let foreign = read(post("http://evil.example")).await;
        assert_eq!(foreign.status, 403, "{}", foreign.text);
        let db = daemon.db.clone();
        let runs = tokio::task::spawn_blocking(move || read_runs(&db))
            .await
            .unwrap();
        assert!(runs.is_empty(), "a forged post ran {runs:?}");
        let own = read(post(&url)).await;
        assert_eq!(
            own.status, 200,
            "the same post from this origin is followed to the run"
        );

        // Signing out ends the session.
        b.click("header form[action='/logout'] button").await;
        b.wait_text("h1", "Sign in").await;
        let after = read(client().get(format!("{url}/")).header("cookie", &cookie)).await;
        assert!(after.text.contains("Sign in"), "{}", after.text);
        b.close().await;
    });
}

#[test]
fn pages_carry_strict_headers_and_the_api_keeps_its_token() {
    let d = deployment();
    let daemon = Daemon::start(&d, &[("RUNBOOKD_API_TOKEN", TOKEN)]);
    let url = daemon.url.clone();
    runtime().block_on(async {
        let no_redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = no_redirect.get(format!("{url}/runs")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 303);
        assert_eq!(resp.headers()["location"], "/login?next=%2Fruns");
        let login = no_redirect
            .get(format!("{url}/login"))
            .send()
            .await
            .unwrap();
        let h = login.headers();
        assert_eq!(
            h["content-security-policy"],
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'"
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
        assert_eq!(h["cache-control"], "no-store");
        let css = no_redirect
            .get(format!("{url}/ui/ui.css"))
            .send()
            .await
            .unwrap();
        assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
        assert_eq!(
            css.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let api = read(client().get(format!("{url}/api/v1/runbooks"))).await;
        assert_eq!(api.status, 401);
        let posted = no_redirect
            .post(format!("{url}/issues/ack"))
            .form(&[("key", "greet")])
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status().as_u16(), 401, "a post without a session");
    });
}

/// The hidden CSRF field of a page's first form.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().unwrap().to_string()
}

#[test]
fn every_page_answers_with_its_data_escaped() {
    let d = deployment();
    let daemon = Daemon::start(&d, &[]);
    let url = daemon.url.clone();
    runtime().block_on(async {
        let run = read(
            client()
                .post(format!("{url}/api/v1/runbooks/greet/runs?wait=true"))
                .json(&serde_json::json!({ "params": { "who": HOSTILE, "raise": true } })),
        )
        .await;
        assert_eq!(run.body["run"]["status"], "succeeded", "{}", run.text);
        let hook = read(
            client()
                .post(format!("{url}/hooks/hook"))
                .json(&serde_json::json!({ "note": HOSTILE })),
        )
        .await;
        assert_eq!(hook.status, 202);
        let escaped = "&lt;script&gt;window.pwned=1&lt;&#x2f;script&gt;&quot;&gt;&lt;img src=x onerror=&quot;window.pwned=2&quot;&gt;";
        for (path, must_show) in [
            ("/", "greet"),
            ("/runbooks/greet", "Greets someone, and raises an issue when asked to."),
            ("/runs", "/runs/1"),
            ("/runs?runbook=greet&status=succeeded&trigger=manual", "/runs/1"),
            ("/runs/1", escaped),
            ("/issues", escaped),
            ("/issues?status=all&severity=high", escaped),
            ("/deliveries", "&quot;note&quot;"),
            ("/emails", "No emails."),
        ] {
            let page = read(client().get(format!("{url}{path}"))).await;
            assert_eq!(page.status, 200, "{path}: {}", page.text);
            assert_eq!(page.content_type, "text/html; charset=utf-8", "{path}");
            assert!(page.text.contains(must_show), "{path} lacks {must_show}:\n{}", page.text);
            assert!(!page.text.contains("<script>window"), "{path} shows markup");
            assert!(!page.text.contains("<img"), "{path} shows markup");
        }
        let overview = read(client().get(format!("{url}/"))).await;
        // The default database, as the daemon was told it.
        let database = ", database sqlite:&#x2f;&#x2f;runbookd.db</div>";
        assert!(overview.text.contains(database), "{database}:\n{}", overview.text);
        let webhook_runs = read(client().get(format!("{url}/runs?trigger=webhook"))).await;
        assert!(webhook_runs.text.contains("href=\"/runs/2\""));
        assert!(!webhook_runs.text.contains("href=\"/runs/1\""));

        let missing = read(client().get(format!("{url}/runs/999"))).await;
        assert_eq!(missing.status, 404);
        assert!(missing.text.contains("<p class=\"problem\" id=\"problem\">there is no run 999</p>"));
        let rebound = read(
            client()
                .get(format!("{url}/issues"))
                .header("host", "evil.example:8686"),
        )
        .await;
        assert_eq!(rebound.status, 403, "another name for 127.0.0.1");
        let bogus = read(client().get(format!("{url}/runs?status=bogus"))).await;
        assert_eq!(bogus.status, 400);
        let since = read(client().get(format!("{url}/runs?since=2000-01-01"))).await;
        assert!(since.text.contains("href=\"/runs/1\""), "{}", since.text);
        let later = read(client().get(format!("{url}/runs?since=2999-01-01"))).await;
        assert!(later.text.contains("<p id=\"no-runs\">No runs.</p>"), "{}", later.text);
        let bad_day = read(client().get(format!("{url}/runs?since=yesterday"))).await;
        assert_eq!(bad_day.status, 400);

        // Open (no token): forms still need the page's CSRF token.
        let issues = read(client().get(format!("{url}/issues"))).await;
        let csrf = csrf_of(&issues.text);
        let no_redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let ack = |token: &str| {
            no_redirect
                .post(format!("{url}/issues/ack"))
                .form(&[("csrf", token), ("key", "greet")])
                .send()
        };
        assert_eq!(ack("").await.unwrap().status().as_u16(), 403);
        assert_eq!(ack("forged").await.unwrap().status().as_u16(), 403);
        let done = ack(&csrf).await.unwrap();
        assert_eq!(done.status().as_u16(), 303);
        let again = ack(&csrf).await.unwrap();
        assert_eq!(again.status().as_u16(), 409, "the API's refusal, as a page");
        let text = again.text().await.unwrap();
        assert!(text.contains("issue greet is acknowledged"), "{text}");

        // An edited runbook: its page lists both versions, and shows what changed.
        let v1 = read(client().get(format!("{url}/api/v1/runs/1"))).await.body["run"]
            ["version_hash"]
            .as_str()
            .unwrap()
            .to_string();
        let yaml = std::fs::read_to_string(d.runbooks().join("greet.yaml")).unwrap();
        std::fs::write(
            d.runbooks().join("greet.yaml"),
            yaml.replace("Greets someone,", "Greets anyone,"),
        )
        .unwrap();
        read(client().post(format!("{url}/api/v1/reload"))).await;
        let rerun = read(
            client()
                .post(format!("{url}/api/v1/runbooks/greet/runs?wait=true"))
                .json(&serde_json::json!({})),
        )
        .await;
        let v2 = rerun.body["run"]["version_hash"].as_str().unwrap().to_string();
        assert_ne!(v1, v2);
        let page = read(client().get(format!("{url}/runbooks/greet"))).await;
        assert!(page.text.contains("id=\"versions\""), "{}", page.text);
        let diff = read(client().get(format!(
            "{url}/runbooks/greet/diff?from={v1}&to={v2}"
        )))
        .await;
        assert_eq!(diff.status, 200, "{}", diff.text);
        assert!(diff.text.contains(
            "<span class=\"d-del\">-description: Greets someone, and raises an issue when asked to.</span>\n<span class=\"d-add\">+description: Greets anyone, and raises an issue when asked to.</span>"
        ), "{}", diff.text);
        let foreign = read(client().get(format!(
            "{url}/runbooks/hook/diff?from={v1}&to={v2}"
        )))
        .await;
        assert_eq!(foreign.status, 404, "a version of another runbook");
    });
}
