//! A real `runbookd serve` process on a deployment, with its output collected
//! and waits that poll the database until a condition holds or a deadline passes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runbookd::store::{Access, RunFilter, RunRow};

use super::Deployment;

pub struct Daemon {
    pub child: Child,
    pub output: Arc<Mutex<Vec<String>>>,
    pub db: String,
    /// `http://127.0.0.1:PORT`, as the daemon printed it.
    pub url: String,
}

impl Daemon {
    /// Start `runbookd serve` in the deployment and wait until it serves.
    pub fn start(d: &Deployment, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbookd"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        Self::spawn(d, cmd, env, format!("sqlite://{}", d.db().display()))
    }

    /// Start `runbookd serve` in the deployment listening where its
    /// `runbookd.yaml` says: on a free loopback port written there as
    /// `listen`, so the CLI finds the daemon as a person's would.
    pub fn start_configured(d: &Deployment, env: &[(&str, &str)]) -> Daemon {
        let file = d.path().join("runbookd.yaml");
        let mut config = std::fs::read_to_string(&file).unwrap_or_default();
        config.push_str(&format!("listen: 127.0.0.1:{}\n", free_port()));
        std::fs::write(&file, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbookd"));
        cmd.arg("serve");
        Self::spawn(d, cmd, env, format!("sqlite://{}", d.db().display()))
    }

    /// Start `runbookd serve` in the deployment on the database `url` (a
    /// PostgreSQL database several daemons share).
    pub fn start_on(d: &Deployment, url: &str, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runbookd"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--database", url]);
        Self::spawn(d, cmd, env, url.to_string())
    }

    /// Start a prepared command that ends up running `runbookd serve` in the
    /// same process (through `exec`), with its database at `db`.
    pub fn spawn(d: &Deployment, mut cmd: Command, env: &[(&str, &str)], db: String) -> Daemon {
        cmd.current_dir(d.path())
            .env("TZ", "UTC")
            .env("RUST_LOG", "info,sqlx=warn");
        for (k, _) in std::env::vars() {
            if k.starts_with("RUNBOOKD_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runbookd serve starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    out.lock().unwrap().push(line);
                }
            });
        }
        let mut daemon = Daemon {
            child,
            output,
            db,
            url: String::new(),
        };
        daemon.wait_for_line("listening  http://", Duration::from_secs(20));
        let line = daemon
            .output
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("listening  http://"))
            .cloned()
            .unwrap();
        daemon.url = line
            .trim()
            .trim_start_matches("listening")
            .trim()
            .to_string();
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything printed so far, stdout and stderr interleaved.
    pub fn text(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// Wait until a printed line contains `needle`; panics with the output after `limit`.
    pub fn wait_for_line(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self
                .output
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needle:?} within {limit:?}; output:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lines printed after the first `n` lines.
    pub fn lines_since(&self, n: usize) -> Vec<String> {
        self.output
            .lock()
            .unwrap()
            .iter()
            .skip(n)
            .cloned()
            .collect()
    }

    pub fn line_count(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    /// Send a signal by name (TERM, KILL, HUP).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Wait for the process to exit; returns its exit code and how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "daemon did not exit within {limit:?}; output:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// All recorded runs, oldest first, read from the database as a reader.
    pub fn runs(&self) -> Vec<RunRow> {
        read_runs(&self.db)
    }

    /// Poll the runs until `cond` holds; panics with them after `limit`.
    pub fn wait_runs(
        &self,
        what: &str,
        limit: Duration,
        cond: impl Fn(&[RunRow]) -> bool,
    ) -> Vec<RunRow> {
        let deadline = Instant::now() + limit;
        loop {
            let runs = self.runs();
            if cond(&runs) {
                return runs;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; runs: {:#?}\noutput:\n{}",
                runs.iter()
                    .map(|r| (r.id, &r.runbook, r.status, r.scheduled_at))
                    .collect::<Vec<_>>(),
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (free when asked; the kernel hands
/// out ports in turn, so it stays free for the moment a test needs).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Read every run of a database, oldest first (empty while it does not exist).
pub fn read_runs(db: &str) -> Vec<RunRow> {
    let on_file = !db.starts_with("postgres");
    if on_file && !runbookd::store::sqlite_path(db).exists() {
        return Vec::new();
    }
    reading(async {
        let Ok(store) = runbookd::store::open(db, Access::Read).await else {
            return Vec::new();
        };
        let mut runs = store
            .list_runs(&RunFilter {
                limit: 100_000,
                ..Default::default()
            })
            .await
            .unwrap_or_default();
        runs.reverse();
        runs
    })
}

/// A run with its attempts, steps and logs, read from the database `db`.
pub fn read_detail(db: &str, run: i64) -> runbookd::store::RunDetail {
    reading(async {
        let store = runbookd::store::open(db, Access::Read)
            .await
            .expect("the database opens");
        store
            .run_detail(run)
            .await
            .expect("the database answers")
            .expect("the run exists")
    })
}

/// Read from a database on a runtime of its own.
fn reading<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
