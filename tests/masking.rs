//! A secret is masked in every form the product itself writes it (URL query,
//! JSON, HTML, Rhai maps, base64 of basic credentials) and in every place it
//! keeps: logs, step output, state keys and values, issue keys, emails,
//! webhook deliveries and the API answers, and nowhere in the database file
//! or the daemon's own log.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, Uri};
use axum::routing::get;
use base64::Engine as _;
use common::Deployment;
use common::daemon::Daemon;
use common::http::{client, send};

/// Quote, backslash, angle brackets, ampersand, percent, space and non-ASCII.
const SECRET: &str = "tok\"q\\b <i>&100% é!";
const HOOK_TOKEN: &str = "hook-token-5d1e0c77a9";

/// Every way the product could write SECRET, spelled out here rather than
/// asked of the product, so a form it forgets is caught.
fn spellings() -> Vec<String> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("agent:{SECRET}"));
    vec![
        SECRET.into(),
        r#"tok\"q\\b <i>&100% é!"#.into(),            // JSON, Rhai
        "tok&quot;q\\b &lt;i&gt;&amp;100% é!".into(), // HTML (minijinja)
        "tok%22q%5Cb+%3Ci%3E%26100%25+%C3%A9%21".into(), // form-urlencoded
        "tok%22q%5Cb%20%3Ci%3E%26100%25%20%C3%A9%21".into(), // percent-encoded
        basic[8..basic.len() - 4].into(),             // base64 after "agent:"
    ]
}

fn leaks(text: &str) -> Vec<String> {
    spellings()
        .into_iter()
        .filter(|s| text.contains(s.as_str()))
        .collect()
}

/// An HTTP service that answers what it was sent: the query value, the
/// credentials and the request target.
async fn echo() -> String {
    let app = Router::new().route(
        "/echo",
        get(
            |uri: Uri, RawQuery(_q): RawQuery, headers: HeaderMap| async move {
                let q = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                    .find(|(k, _)| k == "q")
                    .map(|(_, v)| v.into_owned());
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                axum::Json(serde_json::json!({ "q": q, "auth": auth, "target": uri.to_string() }))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn deployment(echo: &str, smtp_port: u16) -> Deployment {
    let d = Deployment::new();
    std::fs::write(
        d.path().join("runbookd.yaml"),
        format!("smtp:\n  url: smtp://127.0.0.1:{smtp_port}\n  tls: none\n  from: runbookd@ops.example\n"),
    )
    .unwrap();
    std::fs::create_dir(d.path().join("templates")).unwrap();
    std::fs::write(
        d.path().join("templates/leak.html"),
        "<p>{{ t }}</p>\n<p>{{ all }}</p>\n",
    )
    .unwrap();
    std::fs::write(d.path().join("templates/leak.txt"), "t={{ t }}\n").unwrap();
    d.runbook(
        "leak.yaml",
        &format!(
            r#"secrets: [API_TOKEN]
http:
  allow: ["{echo}"]
steps:
  - name: call
    run: |
      let t = secret("API_TOKEN");
      http::get("http://{echo}/echo", #{{ query: #{{ q: t }}, basic: ["agent", t] }}).json
  - name: keep
    run: |
      let t = secret("API_TOKEN");
      let m = #{{ k: t }};
      log::info(`map ${{m}}`);
      log::info(to_json(m));
      state::set(`seen:${{t}}`, m);
      issues::open(`leak:${{t}}`, #{{ title: `leaked ${{t}}`, details: to_json(m) }});
      email::send(#{{ to: "ops@example.com", subject: `about ${{t}}`, template: "leak", data: #{{ t: t, all: [t] }}, key: t }});
      #{{ back: state::get(`seen:${{t}}`), issue: issues::get(`leak:${{t}}`).title }}
"#
        ),
    );
    d.runbook(
        "hook.yaml",
        "secrets: [API_TOKEN, HOOK_TOKEN]\ntriggers:\n  - webhook: { auth: bearer, secret: HOOK_TOKEN }\nrun: trigger.body\n",
    );
    d
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within 20s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_secret_is_masked_in_every_form_and_place_the_product_keeps_it() {
    common::init();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = rt.block_on(echo());
    let smtp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = smtp.local_addr().unwrap().port();
    let sink = common::smtp::serve(smtp);
    let d = deployment(&echo, port);
    let daemon = Daemon::start(&d, &[("API_TOKEN", SECRET), ("HOOK_TOKEN", HOOK_TOKEN)]);
    let api = |path: &str| send(client().get(format!("{}/api/v1{path}", daemon.url)));

    let ran = send(client().post(format!(
        "{}/api/v1/runbooks/leak/runs?wait=true",
        daemon.url
    )));
    assert_eq!(ran.status, 200, "{}", ran.text);
    let run = api(&format!("/runs/{}", ran.body["run"]["id"])).body;
    assert_eq!(run["run"]["status"], "succeeded", "{run:#}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("agent:{SECRET}"));
    assert_eq!(
        run["steps"][0]["output"],
        serde_json::json!({
            "q": "***",
            "auth": format!("Basic YWdlbnQ6***{}", &basic[basic.len() - 4..]),
            "target": "/echo?q=***",
        })
    );
    assert_eq!(
        run["steps"][1]["output"],
        serde_json::json!({ "back": { "k": "***" }, "issue": "leaked ***" })
    );
    let logs: Vec<String> = run["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .filter(|m| !m.starts_with("step ") && !m.starts_with("run "))
        .map(|m| m.split(" → 200 in ").next().unwrap().to_string())
        .collect();
    assert_eq!(
        logs,
        [
            format!("http GET http://{echo}/echo?q=***"),
            "map #{\"k\": \"***\"}".into(),
            "{\"k\":\"***\"}".into(),
            "issue leak:*** opened (medium, seen 1×)".into(),
            "email 1 \"about ***\" queued for ops@example.com".into(),
        ]
    );

    let issues = api("/issues").body;
    let issue = &issues["issues"][0];
    assert_eq!(
        (&issue["key"], &issue["title"], &issue["details"]),
        (
            &"leak:***".into(),
            &"leaked ***".into(),
            &"{\"k\":\"***\"}".into()
        )
    );

    let mail = wait_for("the email arrives", || {
        sink.0.lock().unwrap().received.first().cloned()
    });
    let lines: Vec<&str> = mail.data.lines().collect();
    assert!(lines.contains(&"Subject: about ***"), "{}", mail.data);
    for body in ["<p>***</p>", "<p>[&#x27;***&#x27;]</p>", "t=***"] {
        assert!(lines.contains(&body), "{body} in {}", mail.data);
    }

    let hooked = send(
        client()
            .post(format!("{}/hooks/hook", daemon.url))
            .bearer_auth(HOOK_TOKEN)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "note": SECRET }).to_string()),
    );
    assert_eq!(hooked.status, 202, "{}", hooked.text);
    let hook_run = wait_for("the webhook run ends", || {
        let r = api(&format!("/runs/{}", hooked.body["run_id"])).body;
        (r["run"]["status"] == "succeeded").then_some(r)
    });
    assert_eq!(
        hook_run["run"]["output"],
        serde_json::json!({ "note": "***" })
    );
    assert_eq!(hook_run["run"]["trigger_data"]["raw"], "{\"note\":\"***\"}");
    let deliveries = api("/deliveries?runbook=hook").body;
    assert_eq!(deliveries["deliveries"][0]["body"], "{\"note\":\"***\"}");

    let outside = [
        ("the state", state_of(&daemon.db)),
        ("the daemon log", daemon.text()),
        ("the email", mail.data.clone()),
    ];
    for (what, text) in outside {
        assert_eq!(leaks(&text), Vec::<String>::new(), "{what}: {text}");
    }
    for file in ["runbookd.db", "runbookd.db-wal"] {
        let bytes = std::fs::read(d.path().join(file)).unwrap_or_default();
        assert_eq!(
            leaks(&String::from_utf8_lossy(&bytes)),
            Vec::<String>::new(),
            "{file}"
        );
    }
}

/// The state entry the run wrote, as stored (under its masked key).
fn state_of(db: &str) -> String {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = runbookd::store::open(db, runbookd::store::Access::Read)
            .await
            .unwrap();
        let v = store
            .state_get("leak", "seen:***", chrono::Utc::now())
            .await
            .unwrap();
        assert_eq!(v, Some(serde_json::json!({ "k": "***" })));
        v.unwrap().to_string()
    })
}
