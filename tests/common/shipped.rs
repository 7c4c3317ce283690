//! The shipped runbooks in a test deployment: copies of runbooks/, scripts/
//! and data/ with the runbooks named enabled, and the calls tests make of a
//! daemon running them (a manual run to its end, the issues).

use std::path::Path;

use serde_json::{Value, json};

use super::Deployment;
use super::daemon::Daemon;
use super::http::{client, send};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A deployment holding copies of the shipped runbooks named (enabled, with
/// `edits` applied as text replacements), every script and data file, and a
/// config allowing calls to 127.0.0.1 (where the fakes are).
pub fn deploy(names: &[&str], edits: &[(&str, &str)], config: &str) -> Deployment {
    let d = Deployment::new();
    for name in names {
        let mut yaml =
            std::fs::read_to_string(Path::new(REPO).join(format!("runbooks/{name}.yaml"))).unwrap();
        assert!(yaml.contains("enabled: false"), "{name} ships disabled");
        yaml = yaml.replace("enabled: false", "enabled: true");
        for (from, to) in edits {
            if yaml.contains(from) {
                yaml = yaml.replace(from, to);
            }
        }
        std::fs::write(d.runbooks().join(format!("{name}.yaml")), yaml).unwrap();
    }
    copy_dir(&Path::new(REPO).join("scripts"), &d.scripts());
    copy_dir(&Path::new(REPO).join("data"), &d.path().join("data"));
    std::fs::write(
        d.path().join("runbookd.yaml"),
        format!("http:\n  allow: [\"127.0.0.1\"]\n{config}"),
    )
    .unwrap();
    d
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Run a runbook through the API and wait for its end; returns the run record.
pub fn run(daemon: &Daemon, name: &str, params: Value) -> Value {
    let r = send(
        client()
            .post(format!(
                "{}/api/v1/runbooks/{name}/runs?wait=true",
                daemon.url
            ))
            .json(&json!({ "params": params })),
    );
    assert_eq!(r.status, 200, "{name}: {}\n{}", r.text, daemon.text());
    let run = r.body["run"].clone();
    assert_eq!(
        run["status"],
        "succeeded",
        "{name}: {run:#}\n{}",
        daemon.text()
    );
    run
}

pub fn issues(daemon: &Daemon, query: &str) -> Vec<Value> {
    let r = send(client().get(format!("{}/api/v1/issues?{query}", daemon.url)));
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["issues"].as_array().cloned().unwrap_or_default()
}

pub fn issue<'a>(list: &'a [Value], key: &str) -> Option<&'a Value> {
    list.iter().find(|i| i["key"] == key)
}

/// A runtime for the fakes, which serve from its worker.
pub fn runtime() -> tokio::runtime::Runtime {
    super::init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}
