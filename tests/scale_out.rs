//! Several `runbookd serve` processes on one PostgreSQL database share the
//! work: each schedule slot runs once, a delivery posted to both daemons
//! makes one run, and the runs of a daemon killed mid-run are taken back by
//! the other once their lease expires. Skipped (saying so) when
//! `RUNBOOKD_TEST_POSTGRES_URL` is not set.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Deployment;
use common::daemon::Daemon;
use common::http::{client, send};
use common::postgres::TestDb;
use runbookd::http::hex_hmac;
use runbookd::store::{RunStatus, TriggerKind};

const SECRET: &str = "It's a Secret to Everybody";
const LIMIT: Duration = Duration::from_secs(30);

fn post(daemon: &Daemon, id: &str) -> common::http::Reply {
    post_body(daemon, id, format!(r#"{{"delivery":"{id}"}}"#))
}

fn post_body(daemon: &Daemon, id: &str, body: String) -> common::http::Reply {
    send(signed(daemon, id, body))
}

/// A GitHub-signed delivery `id` of `body` to `/hooks/hook`.
fn signed(daemon: &Daemon, id: &str, body: String) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/hooks/hook", daemon.url))
        .header("content-type", "application/json")
        .header("x-github-delivery", id)
        .header(
            "x-hub-signature-256",
            format!("sha256={}", hex_hmac(SECRET.as_bytes(), &[body.as_bytes()])),
        )
        .body(body)
}

/// Write `hook.yaml`: a GitHub-signed webhook runbook (with the YAML lines
/// `extra`) whose run, when `wait_if` holds, waits on a provider that never
/// answers, then returns `output`. The provider's connections are accepted
/// by the kernel of the listener returned: keep it while runs should wait.
fn waiting_hook(d: &Deployment, extra: &str, wait_if: &str, output: &str) -> std::net::TcpListener {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap().to_string();
    d.runbook(
        "hook.yaml",
        &format!(
            "secrets: [HOOK_SECRET]\n{extra}triggers:\n  - webhook: {{ auth: github, secret: HOOK_SECRET }}\nhttp: {{ allow: [\"{host}\"] }}\ntimeout: 5m\nrun: |\n  if {wait_if} {{ http::get(\"http://{host}/never\", #{{ timeout: \"4m\" }}); }}\n  {output}\n"
        ),
    );
    silent
}

#[test]
fn two_daemons_run_each_slot_and_each_delivery_once() {
    let Some(db) = TestDb::create("two_daemons_run_each_slot_and_each_delivery_once") else {
        return;
    };
    // B runs a newer version of tick than A (a rolling deploy halfway):
    // the slots are the same, and the listings say the versions differ.
    let (d, newer) = (Deployment::new(), Deployment::new());
    for (d, tick) in [
        (&d, "trigger.scheduled_at"),
        (&newer, "trigger.scheduled_at  # v2"),
    ] {
        d.runbook(
            "tick.yaml",
            &format!("triggers:\n  - every: 1s\nrun: {tick}\n"),
        );
        d.runbook(
            "hook.yaml",
            "secrets: [HOOK_SECRET]\ntriggers:\n  - webhook: { auth: github, secret: HOOK_SECRET }\nconcurrency: allow\nrun: trigger.body.delivery\n",
        );
    }
    let env = [("HOOK_SECRET", SECRET)];
    let a = Daemon::start_on(&d, &db.url, &env);
    let b = Daemon::start_on(&newer, &db.url, &env);
    // The same delivery, posted to both daemons at once, five times over.
    let answers: Vec<(serde_json::Value, serde_json::Value)> = std::thread::scope(|s| {
        let posts: Vec<_> = (0..5)
            .map(|i| {
                let id = format!("delivery-{i}");
                let (a, b) = (&a, &b);
                let id2 = id.clone();
                (
                    s.spawn(move || post(a, &id)),
                    s.spawn(move || post(b, &id2)),
                )
            })
            .collect();
        posts
            .into_iter()
            .map(|(x, y)| {
                let (x, y) = (x.join().unwrap(), y.join().unwrap());
                // One daemon accepts it, the other answers that it is a duplicate.
                let mut statuses = [x.status, y.status];
                statuses.sort();
                assert_eq!(statuses, [200, 202], "{} / {}", x.text, y.text);
                (x.body["run_id"].clone(), y.body["run_id"].clone())
            })
            .collect()
    });
    for (x, y) in &answers {
        assert!(
            x.is_i64() && x == y,
            "both daemons answer with the one run: {answers:?}"
        );
    }
    let runs = a.wait_runs("ten slots and five deliveries ran", LIMIT, |runs| {
        let ticks = runs
            .iter()
            .filter(|r| r.runbook == "tick" && r.status == RunStatus::Succeeded)
            .count();
        let hooks = runs
            .iter()
            .filter(|r| r.runbook == "hook" && r.status == RunStatus::Succeeded)
            .count();
        ticks >= 10 && hooks == 5
    });
    // Each slot ran once, and every second from the first slot on has its run.
    let mut slots: BTreeMap<i64, Vec<RunStatus>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.runbook == "tick") {
        assert_eq!(r.trigger_kind, TriggerKind::Every);
        slots
            .entry(r.scheduled_at.expect("a slot").timestamp())
            .or_default()
            .push(r.status);
    }
    let (first, last) = (*slots.keys().next().unwrap(), *slots.keys().last().unwrap());
    assert_eq!(
        slots.keys().copied().collect::<Vec<_>>(),
        (first..=last).collect::<Vec<_>>(),
        "no slot is missing"
    );
    for (slot, statuses) in &slots {
        assert_eq!(statuses.len(), 1, "slot {slot} has one run: {statuses:?}");
    }
    let mut hooks: Vec<_> = runs
        .iter()
        .filter(|r| r.runbook == "hook")
        .map(|r| (r.status, r.output.clone()))
        .collect();
    hooks.sort_by_key(|h| h.1.as_ref().map(|o| o.to_string()));
    assert_eq!(
        hooks,
        (0..5)
            .map(|i| (
                RunStatus::Succeeded,
                Some(serde_json::json!(format!("delivery-{i}")))
            ))
            .collect::<Vec<_>>()
    );
    // A slot or a delivery the other daemon took is not an error.
    for daemon in [&a, &b] {
        let text = daemon.text();
        assert!(!text.contains(" ERROR "), "{text}");
    }
    // Each daemon's version of tick, and the warning both show.
    let tick = |d: &Daemon| send(client().get(format!("{}/api/v1/runbooks/tick", d.url))).body;
    let mut hashes = [tick(&a)["version"].clone(), tick(&b)["version"].clone()];
    hashes.sort_by_key(|h| h.as_str().unwrap().to_string());
    let short = |h: &serde_json::Value| h.as_str().unwrap()[..8].to_string();
    let expected = format!(
        "daemons run 2 versions: {} (1 daemon), {} (1 daemon)",
        short(&hashes[0]),
        short(&hashes[1])
    );
    let deadline = std::time::Instant::now() + LIMIT;
    while tick(&a)["version_skew_note"].is_null() {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning: {}",
            tick(&a)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for daemon in [&a, &b] {
        let shown = tick(daemon);
        assert_eq!(
            (&shown["version_skew_note"], &shown["version_skew"]),
            (
                &serde_json::json!(expected),
                &serde_json::json!([
                    {"hash": hashes[0], "daemons": 1},
                    {"hash": hashes[1], "daemons": 1}
                ])
            )
        );
    }
    // Nothing to warn about for the runbook both run alike.
    let hook = send(client().get(format!("{}/api/v1/runbooks/hook", a.url))).body;
    assert_eq!(
        (&hook["version_skew"], &hook["version_skew_note"]),
        (&serde_json::json!([]), &serde_json::Value::Null)
    );
}

#[test]
fn a_run_of_a_killed_daemon_is_taken_back_by_the_other_after_its_lease() {
    let Some(db) = TestDb::create("a_run_of_a_killed_daemon_is_taken_back") else {
        return;
    };
    let d = Deployment::new();
    // The first attempt waits for ever; the second, on the other daemon, does not.
    let _silent = waiting_hook(&d, "", "run.attempt == 1", "run.attempt");
    let env = [("HOOK_SECRET", SECRET)];
    let mut a = Daemon::start_on(&d, &db.url, &env);
    let reply = post(&a, "once");
    assert_eq!(reply.status, 202, "{}", reply.text);
    a.wait_runs("the run is going on daemon A", LIMIT, |r| {
        r.iter().any(|r| r.status == RunStatus::Running)
    });
    let b = Daemon::start_on(&d, &db.url, &env);
    a.signal("KILL");
    a.wait_exit(LIMIT);
    // The lease (30 s) expires, then B takes the run back within a few seconds.
    let runs = b.wait_runs("daemon B finished the run", Duration::from_secs(90), |r| {
        r.iter().any(|r| r.status == RunStatus::Succeeded)
    });
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].output, Some(serde_json::json!(2)));
    assert_eq!(runs[0].attempts, 2);
    let detail = common::daemon::read_detail(&db.url, runs[0].id);
    assert_eq!(
        detail
            .attempts
            .iter()
            .map(|a| (a.attempt, a.status))
            .collect::<Vec<_>>(),
        vec![(1, RunStatus::Interrupted), (2, RunStatus::Succeeded)]
    );
}

/// A provider the test answers by hand: it accepts one request and replies
/// when told to.
fn gate() -> (
    String,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let (open, opened) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        opened.recv().unwrap();
        let _ =
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    });
    (host, open, server)
}

#[test]
fn a_daemon_paused_past_its_lease_writes_nothing_when_it_resumes() {
    let Some(db) = TestDb::create("a_daemon_paused_past_its_lease_writes_nothing") else {
        return;
    };
    let d = Deployment::new();
    let (host, open, server) = gate();
    // Attempt 1 waits on the gate, then tries every kind of write a run makes.
    d.runbook(
        "hook.yaml",
        &format!(
            "secrets: [HOOK_SECRET]\ntriggers:\n  - webhook: {{ auth: github, secret: HOOK_SECRET }}\nhttp: {{ allow: [\"{host}\"] }}\ntimeout: 5m\nrun: |\n  if run.attempt == 1 {{ http::get(\"http://{host}/gate\", #{{ timeout: \"4m\" }}); }}\n  let n = run.attempt;\n  state::set(`done-${{n}}`, n);\n  issues::open(`issue-${{n}}`, #{{ title: `attempt ${{n}}` }});\n  email::send(#{{ to: \"oncall@example.com\", subject: `attempt ${{n}}`, text: \"x\", key: `mail-${{n}}` }});\n  n\n"
        ),
    );
    let env = [("HOOK_SECRET", SECRET)];
    let a = Daemon::start_on(&d, &db.url, &env);
    assert_eq!(post(&a, "paused").status, 202);
    a.wait_runs("attempt 1 waits on the gate", LIMIT, |r| {
        r.iter().any(|r| r.status == RunStatus::Running)
    });
    a.signal("STOP");
    let b = Daemon::start_on(&d, &db.url, &env);
    let runs = b.wait_runs("daemon B finished the run", Duration::from_secs(90), |r| {
        r.iter().any(|r| r.status == RunStatus::Succeeded)
    });
    // A wakes up and its call returns. Whichever notices first, its
    // heartbeat or its next write, finds the run no longer its own (the
    // store's contract tests show each write is refused): A stops the run,
    // and nothing of what it did after its lease expired is recorded.
    open.send(()).unwrap();
    a.signal("CONT");
    a.wait_for_line("this process no longer holds the run", LIMIT);
    server.join().unwrap();
    let (issues, emails, state) = reading_store(&db.url, |store| async move {
        let issues = store
            .list_issues(&runbookd::store::IssueFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let emails = store.list_emails(None, 100).await.unwrap();
        let now = chrono::Utc::now();
        let state = (
            store.state_get("hook", "done-1", now).await.unwrap(),
            store.state_get("hook", "done-2", now).await.unwrap(),
        );
        (issues, emails, state)
    });
    assert_eq!(
        issues.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
        vec!["issue-2"]
    );
    assert_eq!(
        emails
            .iter()
            .map(|e| e.subject.as_str())
            .collect::<Vec<_>>(),
        vec!["attempt 2"]
    );
    assert_eq!(state, (None, Some(serde_json::json!(2))));
    let after = b.runs();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].id, after[0].status, after[0].output.clone()),
        (runs[0].id, RunStatus::Succeeded, Some(serde_json::json!(2)))
    );
}

/// Read the shared database with the library, on a runtime of its own.
fn reading_store<T, F, Fut>(url: &str, read: F) -> T
where
    F: FnOnce(std::sync::Arc<dyn runbookd::store::Store>) -> Fut,
    Fut: Future<Output = T>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = runbookd::store::open(url, runbookd::store::Access::Read)
                .await
                .expect("the database opens");
            read(store).await
        })
}

#[test]
fn queued_runs_are_each_started_once_and_queue_holds_across_daemons() {
    let Some(db) = TestDb::create("queued_runs_are_each_started_once") else {
        return;
    };
    let d = Deployment::new();
    d.runbook("many.yaml", "concurrency: allow\nrun: run.attempt\n");
    d.runbook("serial.yaml", "concurrency: queue\nrun: run.attempt\n");
    let a = Daemon::start_on(&d, &db.url, &[]);
    let b = Daemon::start_on(&d, &db.url, &[]);
    let ask = |daemon: &Daemon, runbook: &str| {
        client()
            .post(format!("{}/api/v1/runbooks/{runbook}/runs", daemon.url))
            .json(&serde_json::json!({}))
    };
    // 1,000 runs asked of both daemons at once, and 20 of a runbook that
    // runs one at a time.
    let mut asks: Vec<_> = (0..1000)
        .map(|i| ask(if i % 2 == 0 { &a } else { &b }, "many"))
        .collect();
    asks.extend((0..20).map(|i| ask(if i % 2 == 0 { &a } else { &b }, "serial")));
    for reply in common::http::send_all(asks) {
        assert!(reply.status == 201 || reply.status == 202, "{}", reply.text);
    }
    let runs = a.wait_runs("every run finished", Duration::from_secs(120), |r| {
        r.len() == 1020 && r.iter().all(|r| r.status == RunStatus::Succeeded)
    });
    // Each was started once: one attempt, the first.
    assert!(
        runs.iter()
            .all(|r| r.attempts == 1 && r.output == Some(serde_json::json!(1))),
        "{:?}",
        runs.iter().filter(|r| r.attempts != 1).collect::<Vec<_>>()
    );
    // `queue`: never two at once, whichever daemon ran them.
    let mut serial: Vec<_> = runs.iter().filter(|r| r.runbook == "serial").collect();
    serial.sort_by_key(|r| r.started_at);
    for pair in serial.windows(2) {
        assert!(
            pair[1].started_at >= pair[0].finished_at,
            "run {} started before run {} ended",
            pair[1].id,
            pair[0].id
        );
    }
}

/// libfaketime, from Debian's `faketime` package (`.ci/run` installs it).
fn libfaketime() -> &'static str {
    let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
    assert!(
        std::path::Path::new(lib).exists(),
        "{lib} is missing: install Debian's faketime package (`apt-get install faketime`; .ci/run does)"
    );
    lib
}

#[test]
fn a_daemon_whose_clock_runs_ahead_neither_fires_early_nor_takes_back_runs_early() {
    let Some(db) = TestDb::create("a_daemon_whose_clock_runs_ahead") else {
        return;
    };
    let d = Deployment::new();
    d.runbook(
        "tick.yaml",
        "triggers:\n  - every: 1s\nrun: trigger.scheduled_at\n",
    );
    let silent = waiting_hook(&d, "", "true", "1");
    let a = Daemon::start_on(&d, &db.url, &[("HOOK_SECRET", SECRET)]);
    assert_eq!(post(&a, "long").status, 202);
    a.wait_runs("A runs the long run", LIMIT, |r| {
        r.iter()
            .any(|r| r.runbook == "hook" && r.status == RunStatus::Running)
    });
    // B's wall clock is two minutes ahead (its timers are not).
    let b = Daemon::start_on(
        &d,
        &db.url,
        &[
            ("HOOK_SECRET", SECRET),
            ("LD_PRELOAD", libfaketime()),
            ("FAKETIME", "+120s"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    // Three of B's looks at expired leases, and a dozen slots.
    b.wait_for_line("listening", LIMIT);
    let started = std::time::Instant::now();
    let runs = a.wait_runs("a dozen slots ran", LIMIT, |r| {
        started.elapsed() > Duration::from_secs(16)
            && r.iter()
                .filter(|r| r.runbook == "tick" && r.status == RunStatus::Succeeded)
                .count()
                >= 12
    });
    let read_at = chrono::Utc::now();
    let early: Vec<_> = runs
        .iter()
        .filter(|r| r.runbook == "tick" && r.scheduled_at.unwrap() > read_at)
        .map(|r| r.scheduled_at)
        .collect();
    assert!(
        early.is_empty(),
        "slots recorded before they were due: {early:?}"
    );
    let long = runs.iter().find(|r| r.runbook == "hook").unwrap();
    assert_eq!(
        (long.status, long.attempts),
        (RunStatus::Running, 1),
        "the run of a live daemon was not taken back"
    );
    drop(silent);
}

#[test]
fn replace_stops_the_older_run_on_the_other_daemon() {
    let Some(db) = TestDb::create("replace_stops_the_older_run_on_the_other_daemon") else {
        return;
    };
    let d = Deployment::new();
    let _silent = waiting_hook(
        &d,
        "concurrency: replace\n",
        "trigger.body.wait",
        "trigger.body.n",
    );
    let env = [("HOOK_SECRET", SECRET)];
    let a = Daemon::start_on(&d, &db.url, &env);
    let b = Daemon::start_on(&d, &db.url, &env);
    let first = post_body(&a, "first", r#"{"wait":true,"n":1}"#.into());
    assert_eq!(first.status, 202, "{}", first.text);
    let first = first.body["run_id"].as_i64().unwrap();
    a.wait_runs("the first run is going on A", LIMIT, |r| {
        r.iter()
            .any(|r| r.id == first && r.status == RunStatus::Running)
    });
    let second = post_body(&b, "second", r#"{"wait":false,"n":2}"#.into());
    assert_eq!(second.status, 202, "{}", second.text);
    let second = second.body["run_id"].as_i64().unwrap();
    // A sees B's request at its next heartbeat (every 10 s).
    let runs = b.wait_runs("the first run was replaced", LIMIT, |r| {
        r.iter()
            .any(|r| r.id == second && r.status == RunStatus::Succeeded)
    });
    let (old, new) = (
        runs.iter().find(|r| r.id == first).unwrap(),
        runs.iter().find(|r| r.id == second).unwrap(),
    );
    assert_eq!(old.status, RunStatus::Cancelled);
    assert_eq!(new.output, Some(serde_json::json!(2)));
    assert!(new.started_at >= old.finished_at, "{old:?}\n{new:?}");
    // Usually A ran the first run and saw B's request at its heartbeat; when
    // B claimed the first run itself (its look at the queue came first), B
    // stopped it in-process.
    let deadline = std::time::Instant::now() + LIMIT;
    while !(a
        .text()
        .contains("the run was asked to stop through another process")
        || b.text().contains("cancelling the active run to replace it"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "neither daemon says how the run was stopped:\nA:\n{}\nB:\n{}",
            a.text(),
            b.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP proxy to the PostgreSQL server that the test can cut: while cut,
/// every connection through it is closed at once.
struct Cable {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Cable {
    fn to(server: &str) -> Cable {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (up2, open2, server) = (up.clone(), open.clone(), server.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(upstream) = std::net::TcpStream::connect(&server) else {
                    continue;
                };
                let mut conns = open2.lock().unwrap();
                conns.push(client.try_clone().unwrap());
                conns.push(upstream.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Cable { port, up, open }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    fn mend(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn while_the_database_is_unreachable_webhooks_are_told_to_retry_and_then_accepted() {
    let Some(db) = TestDb::create("while_the_database_is_unreachable") else {
        return;
    };
    let d = Deployment::new();
    d.runbook(
        "hook.yaml",
        "secrets: [HOOK_SECRET]\ntriggers:\n  - webhook: { auth: github, secret: HOOK_SECRET }\nconcurrency: allow\nrun: trigger.body.delivery\n",
    );
    let mut url = url::Url::parse(&db.url).unwrap();
    let server = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let cable = Cable::to(&server);
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(cable.port)).unwrap();
    let a = Daemon::start_on(&d, url.as_str(), &[("HOOK_SECRET", SECRET)]);
    assert_eq!(post(&a, "before").status, 202);
    cable.cut();
    let refused =
        common::http::send_with_headers(signed(&a, "during", r#"{"delivery":"during"}"#.into()));
    assert_eq!(
        (
            refused.0.status,
            refused.1.as_deref(),
            &refused.0.body["detail"]
        ),
        (
            503,
            Some("5"),
            &serde_json::json!(
                "the database cannot be reached; nothing was recorded; retry shortly"
            )
        ),
        "{}\n{}",
        refused.0.text,
        a.text()
    );
    assert_eq!(
        send(client().get(format!("{}/readyz", a.url))).status,
        503,
        "{}",
        a.text()
    );
    // Back: the provider's retry is accepted, and both deliveries run once.
    cable.mend();
    let retried = post(&a, "during");
    assert_eq!(retried.status, 202, "{}\n{}", retried.text, a.text());
    assert_eq!(
        send(client().get(format!("{}/readyz", a.url))).status,
        200,
        "{}",
        a.text()
    );
    let runs = a.wait_runs("both ran", LIMIT, |r| {
        r.len() == 2 && r.iter().all(|r| r.status == RunStatus::Succeeded)
    });
    let mut outputs: Vec<_> = runs.iter().map(|r| r.output.clone().unwrap()).collect();
    outputs.sort_by_key(|o| o.to_string());
    assert_eq!(
        outputs,
        vec![serde_json::json!("before"), serde_json::json!("during")]
    );
}

/// Everything a listing shows of a store, as JSON, to compare two stores.
async fn history(store: &dyn runbookd::store::Store) -> serde_json::Value {
    use runbookd::store::{IssueFilter, RunFilter};
    let runs = store
        .list_runs(&RunFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut details = Vec::new();
    for r in &runs {
        details.push(serde_json::to_value(store.run_detail(r.id).await.unwrap()).unwrap());
    }
    let issues = store
        .list_issues(&IssueFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let now = chrono::Utc::now();
    serde_json::json!({
        "runs": runs,
        "details": details,
        "deliveries": store.list_deliveries(None, None, 100).await.unwrap(),
        "issues": issues,
        "emails": store.list_emails(None, 100).await.unwrap(),
        "state": store.state_get("tick", "count", now).await.unwrap(),
        "mark": store.schedule_mark("tick", "every 1s").await.unwrap(),
    })
}

#[test]
fn migrate_store_copies_a_sqlite_history_into_postgresql_whole() {
    let Some(db) = TestDb::create("migrate_store_copies_a_sqlite_history") else {
        return;
    };
    let d = Deployment::new();
    d.runbook(
        "tick.yaml",
        "triggers:\n  - every: 1s\nrun: |\n  state::set(\"count\", run.id);\n  issues::open(`tick-${run.id % 2}`, #{ title: \"tick\" });\n  email::send(#{ to: \"oncall@example.com\", subject: `tick ${run.id}`, text: \"x\" });\n  run.id\n",
    );
    d.runbook(
        "hook.yaml",
        "secrets: [HOOK_SECRET]\ntriggers:\n  - webhook: { auth: github, secret: HOOK_SECRET }\nrun: trigger.body.delivery\n",
    );
    let env = [("HOOK_SECRET", SECRET)];
    let mut on_sqlite = Daemon::start(&d, &env);
    assert_eq!(post(&on_sqlite, "before-the-move").status, 202);
    on_sqlite.wait_runs("a few ticks and the delivery", LIMIT, |r| {
        r.iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            >= 4
    });
    on_sqlite.signal("TERM");
    on_sqlite.wait_exit(LIMIT);
    let sqlite_url = format!("sqlite://{}", d.db().display());
    let before = reading_store(&sqlite_url, |s| async move { history(s.as_ref()).await });

    let moved = d.cli(&["migrate-store", &sqlite_url, &db.url]);
    assert_eq!(moved.code, 0, "{}{}", moved.stdout, moved.stderr);
    let counts: Vec<(String, u64)> = moved
        .stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect();
    let runs = before["runs"].as_array().unwrap().len() as u64;
    assert_eq!(
        counts.iter().find(|c| c.0 == "runs").map(|c| c.1),
        Some(runs)
    );
    assert_eq!(counts.len(), 11, "{}", moved.stdout);
    let after = reading_store(&db.url, |s| async move { history(s.as_ref()).await });
    assert_eq!(after, before);

    // Moved once: a second copy into the same database is refused.
    let again = d.cli(&["migrate-store", &sqlite_url, &db.url]);
    assert_eq!(
        (again.code, again.stderr.as_str()),
        (
            3,
            format!(
                "error: {} already holds history (its runbook_versions table has rows); migrate-store copies into an empty database only\n",
                runbookd::store::shown_url(&db.url)
            )
            .as_str()
        )
    );
    // The daemons go on from there: new runs follow the copied ids, the
    // schedule continues from its mark, the dedup key is remembered.
    let max_id = before["runs"][0]["id"].as_i64().unwrap();
    let on_pg = Daemon::start_on(&d, &db.url, &env);
    let dup = post(&on_pg, "before-the-move");
    assert_eq!(
        (dup.status, &dup.body["duplicate"]),
        (200, &serde_json::json!(true))
    );
    let runs = on_pg.wait_runs("a tick on PostgreSQL", LIMIT, |r| {
        r.iter()
            .any(|r| r.id > max_id && r.status == RunStatus::Succeeded)
    });
    assert!(
        runs.iter()
            .filter(|r| r.id > max_id)
            .all(|r| r.runbook == "tick")
    );
}
