//! The CLI beside a running daemon: `run` and `prune` go through the API of
//! the daemon that holds the database, print what they print on their own,
//! exit the same way, stream a run's lines as they are written, cancel on
//! Ctrl-C, and say what to do when the API cannot be used.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, free_port};
use common::http::{client, send};
use common::{Deployment, Ran};

const TOKEN: &str = "cli-beside-daemon-token";

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
            "  - name: remember\n    run: |\n      state::set(\"last\", steps.build.len());\n      log::warn(\"remembered\");\n",
            "  - name: count\n    run: '#{ greetings: steps.build, at: now() }'\n",
        ),
    );
    d.runbook("broken.yaml", "run: |\n  fail(\"the provider is down\")\n");
    // Logs, then waits until the test acknowledges its issue through the API.
    d.runbook(
        "gate.yaml",
        "run: |\n  issues::open(\"gate\", #{ title: \"hold the run\", severity: \"info\" });\n  log::info(\"waiting for the gate\");\n  while issues::get(\"gate\").status == \"open\" { }\n  log::info(\"the gate opened\");\n  \"through\"\n",
    );
    d
}

/// The same commands, run without a daemon and through one, print the same
/// (times and durations aside) and exit the same.
#[test]
fn a_run_through_the_daemon_prints_and_exits_as_a_local_run() {
    let commands: &[&[&str]] = &[
        &["run", "greet", "-p", "who=ops", "-p", "times=2"],
        &["run", "broken"],
        &["run", "greet", "--dry-run"],
        &["run", "greet", "--json", "-p", "times=3"],
        &["run", "broken", "--json"],
        &["run", "greet", "-p", "times=two"],
    ];
    let alone = deployment();
    let local: Vec<Ran> = commands.iter().map(|c| alone.cli(c)).collect();
    let beside = deployment();
    let daemon = Daemon::start_configured(&beside, &[]);
    for (args, local) in commands.iter().zip(&local) {
        let remote = beside.cli(args);
        assert_eq!(
            (
                remote.code,
                normalize(&remote.stdout),
                remote.stderr.as_str()
            ),
            (local.code, normalize(&local.stdout), local.stderr.as_str()),
            "{args:?}"
        );
    }
    // And what a person sees, in full.
    assert_eq!(
        normalize(&local[0].stdout),
        format!(
            "run 1 of greet (version {})\n\
             HH:MM:SS.mmm INFO  [build] built 2 greetings\n\
             step build succeeded (D)\n\
             HH:MM:SS.mmm WARN  [remember] remembered\n\
             step remember succeeded (D)\n\
             step count succeeded (D)\n\
             run 1 succeeded in D\n\
             output: {{\n  \"at\": T,\n  \"greetings\": [\n    \"hello ops\",\n    \"hello ops\"\n  ]\n}}\n",
            &daemon.runs()[0].version_hash[..12]
        )
    );
    assert_eq!(local[1].code, 1);
    let runs = daemon.runs();
    assert_eq!(
        runs.iter()
            .map(|r| (r.runbook.as_str(), r.status.to_string(), r.dry_run))
            .collect::<Vec<_>>(),
        [
            ("greet", "succeeded".into(), false),
            ("broken", "failed".into(), false),
            ("greet", "succeeded".into(), true),
            ("greet", "succeeded".into(), false),
            ("broken", "failed".into(), false),
        ],
        "the daemon recorded each run"
    );
}

/// A line is printed as soon as the run logs it, before the run ends.
#[test]
fn a_run_through_the_daemon_streams_its_lines_as_they_are_written() {
    let d = deployment();
    let daemon = Daemon::start_configured(&d, &[("RUNBOOKD_API_TOKEN", TOKEN)]);
    let mut cli = Following::start(&d, &["run", "gate"], &[("RUNBOOKD_API_TOKEN", TOKEN)]);
    cli.wait_for("waiting for the gate");
    assert!(cli.child.try_wait().unwrap().is_none(), "the run goes on");
    let ack = send(
        client()
            .post(format!("{}/api/v1/issues/gate/ack", daemon.url))
            .bearer_auth(TOKEN),
    );
    assert_eq!(ack.status, 200, "{}", ack.text);
    let (code, stdout) = cli.finish();
    assert_eq!(
        (code, normalize(&stdout)),
        (
            0,
            format!(
                "run 1 of gate (version {})\n\
                 HH:MM:SS.mmm INFO  [main] issue gate opened (info, seen 1×)\n\
                 HH:MM:SS.mmm INFO  [main] waiting for the gate\n\
                 HH:MM:SS.mmm INFO  [main] the gate opened\n\
                 step main succeeded (D)\n\
                 run 1 succeeded in D\n\
                 output: \"through\"\n",
                &daemon.runs()[0].version_hash[..12]
            )
        )
    );
}

/// Ctrl-C asks the daemon to cancel the run; the command follows it to its
/// recorded end and exits 1, as a local run does.
#[test]
fn ctrl_c_cancels_a_run_through_the_daemon() {
    let d = deployment();
    let daemon = Daemon::start_configured(&d, &[]);
    let mut cli = Following::start(&d, &["run", "gate"], &[]);
    cli.wait_for("waiting for the gate");
    let pid = cli.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (code, stdout) = cli.finish();
    let runs = daemon.runs();
    assert_eq!(
        (code, normalize(&stdout), runs[0].status.to_string()),
        (
            1,
            format!(
                "run 1 of gate (version {})\n\
                 HH:MM:SS.mmm INFO  [main] issue gate opened (info, seen 1×)\n\
                 HH:MM:SS.mmm INFO  [main] waiting for the gate\n\
                 HH:MM:SS.mmm ERROR [main] step main cancelled: stopped before it finished\n\
                 step main cancelled (D)\n\
                 run 1 cancelled after D: step main: stopped before it finished\n",
                &runs[0].version_hash[..12]
            ),
            "cancelled".to_string()
        )
    );
}

#[test]
fn the_token_is_used_and_a_refusal_says_what_to_do() {
    let d = deployment();
    let daemon = Daemon::start_configured(&d, &[("RUNBOOKD_API_TOKEN", TOKEN)]);
    let pid = daemon.pid();
    let url = &daemon.url;
    let ran = d.cli_env(&["run", "greet"], &[("RUNBOOKD_API_TOKEN", TOKEN)]);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let ran = d.cli_env(&["run", "greet"], &[("RUNBOOKD_API_TOKEN", "wrong")]);
    assert_eq!(
        (ran.code, ran.stdout.as_str(), ran.stderr),
        (
            3,
            "",
            format!(
                "error: the database runbookd.db is in use by another runbookd (pid {pid}), and its API at {url} refused this command's API token, so this command cannot run greet through it\n\
                 hint: set RUNBOOKD_API_TOKEN (or `api_token` in runbookd.yaml) to the daemon's token\n"
            )
        )
    );
    let ran = d.cli(&["prune"]);
    assert_eq!(
        (ran.code, ran.stdout.as_str(), ran.stderr),
        (
            3,
            "",
            format!(
                "error: the database runbookd.db is in use by another runbookd (pid {pid}), and its API at {url} needs an API token, so this command cannot prune through it\n\
                 hint: set RUNBOOKD_API_TOKEN (or `api_token` in runbookd.yaml) to the daemon's token\n"
            )
        )
    );
    assert_eq!(daemon.runs().len(), 1, "nothing else was run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_whose_api_does_not_answer_is_named_with_what_to_do() {
    let d = deployment();
    let port = free_port();
    std::fs::write(
        d.path().join("runbookd.yaml"),
        format!("listen: 127.0.0.1:{port}\n"),
    )
    .unwrap();
    // This test process holds the database, as a daemon would; nothing listens.
    let held = d.store().await;
    let ran = d.cli(&["run", "greet"]);
    assert_eq!(
        (ran.code, ran.stdout.as_str(), ran.stderr),
        (
            3,
            "",
            format!(
                "error: the database runbookd.db is in use by another runbookd (pid {}), and its API at http://127.0.0.1:{port} does not answer (Connection refused (os error 111)), so this command cannot run greet through it\n\
                 hint: set `listen` in runbookd.yaml (or RUNBOOKD_LISTEN) to the address that daemon serves, or stop it to work on the database here\n",
                std::process::id()
            )
        )
    );
    drop(held);
}

#[test]
fn prune_goes_through_the_daemon() {
    let d = deployment();
    let daemon = Daemon::start_configured(&d, &[("RUNBOOKD_API_TOKEN", TOKEN)]);
    let env = [("RUNBOOKD_API_TOKEN", TOKEN)];
    assert_eq!(d.cli_env(&["run", "broken"], &env).code, 1);
    let kept = d.cli_env(&["prune", "--older-than", "1d"], &env);
    assert_eq!(
        (kept.code, normalize(&kept.stdout), kept.stderr.as_str()),
        (
            0,
            "pruned 0 run(s) created before T (older than 1d); issues and runbook versions are kept\n"
                .to_string(),
            ""
        )
    );
    let gone = d.cli_env(&["prune", "--older-than", "0s"], &env);
    assert_eq!(
        (gone.code, normalize(&gone.stdout)),
        (
            0,
            "pruned 1 run(s) created before T (older than 0ms); issues and runbook versions are kept\n"
                .to_string()
        )
    );
    assert!(daemon.runs().is_empty());
    // The API refuses an age it cannot read, with the reason.
    let bad = send(
        client()
            .post(format!("{}/api/v1/prune", daemon.url))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "older_than": "a while" })),
    );
    assert_eq!(
        (bad.status, bad.body["detail"].as_str()),
        (
            400,
            Some(
                "older_than: invalid duration \"a while\"; write a number and a unit, like 30s, 5m, 2h or 1d"
            )
        )
    );
}

/// A CLI process whose stdout is read line by line as it prints.
struct Following {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Following {
    fn start(d: &Deployment, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = d
            .command(args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("runbookd starts");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Following {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait until a printed line contains `needle`.
    fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line with {needle:?} in time; printed:\n{:?}", self.seen),
            }
        }
    }

    /// Wait for the process to exit; its exit code and everything it printed.
    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.seen.extend(self.lines.iter());
                let text = self.seen.iter().map(|l| format!("{l}\n")).collect();
                return (status.code().unwrap_or(-1), text);
            }
            assert!(
                Instant::now() < deadline,
                "it did not exit; printed:\n{:?}",
                self.seen
            );
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(line);
            }
        }
    }
}

/// Output with what differs between two runs of the same thing replaced:
/// clock times, durations, and timestamps in JSON.
fn normalize(out: &str) -> String {
    if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(out) {
        mask_times(&mut v);
        return serde_json::to_string_pretty(&v).unwrap() + "\n";
    }
    out.lines().map(|l| normalize_line(l) + "\n").collect()
}

fn normalize_line(line: &str) -> String {
    let clock = line.len() > 12
        && line.as_bytes()[..12]
            .iter()
            .enumerate()
            .all(|(i, b)| match i {
                2 | 5 => *b == b':',
                8 => *b == b'.',
                _ => b.is_ascii_digit(),
            });
    if clock {
        return format!("HH:MM:SS.mmm{}", &line[12..]);
    }
    if line.starts_with("step ") && line.ends_with(')') {
        let open = line.rfind(" (").unwrap();
        return format!("{} (D)", &line[..open]);
    }
    if line.starts_with("run ") {
        if let Some(i) = line.find(" in ").filter(|_| !line.contains(" after ")) {
            return format!("{} in D", &line[..i]);
        }
        if let Some(i) = line.find(" after ") {
            let rest = &line[i + 7..];
            let colon = rest.find(": ").map_or(rest.len(), |c| c);
            return format!("{} after D{}", &line[..i], &rest[colon..]);
        }
    }
    if let Some(i) = line.find(" created before ") {
        let rest = &line[i + 16..];
        let end = rest.find(" (older").unwrap();
        return format!("{} created before T{}", &line[..i], &rest[end..]);
    }
    if line.trim_start().starts_with("\"at\": ") {
        return "  \"at\": T,".to_string();
    }
    line.to_string()
}

fn mask_times(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if (k == "at" || k.ends_with("_at")) && v.is_string() {
                    *v = "T".into();
                } else {
                    mask_times(v);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(mask_times),
        _ => {}
    }
}
