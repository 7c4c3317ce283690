//! `runbookd schema`: the JSON Schemas an editor validates runbooks and
//! `runbookd.yaml` with. Every shipped runbook passes; a wrong key, a wrong
//! choice or two kinds of trigger in one entry are flagged where they are
//! (by `common::schema`, a careful check of the keywords the schemas use).

mod common;

use common::Deployment;

/// The schema `runbookd schema OF` prints.
fn schema(of: &str) -> serde_json::Value {
    let ran = Deployment::new().cli(&["schema", of]);
    assert_eq!((ran.code, ran.stderr.as_str()), (0, ""));
    serde_json::from_str(&ran.stdout).expect("the schema is JSON")
}

/// Where the schema flags `yaml`, as `path: message`.
fn flagged(schema: &serde_json::Value, yaml: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_yaml::from_str(yaml).expect("the YAML parses");
    common::schema::check(schema, &doc)
}

#[test]
fn every_shipped_runbook_is_valid() {
    let validator = schema("runbook");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let yaml = std::fs::read_to_string(&file).unwrap();
        assert_eq!(flagged(&validator, &yaml), Vec::<String>::new(), "{file:?}");
    }
}

#[test]
fn a_wrong_key_or_choice_is_flagged_where_it_is() {
    let validator = schema("runbook");
    let yaml = "\
concurency: forbid
catch_up: sometimes
triggers:
  - manual
  - cron: \"0 9 * * *\"
    every: 5m
  - webhook: { auth: github, secret: S, sekret: T }
params:
  n: { type: int }
steps:
  - name: one
    run: '1'
    timout: 5m
";
    assert_eq!(
        flagged(&validator, yaml),
        [
            "/catch_up: \"sometimes\" is not one of [\"skip\",\"latest\",\"all\"]",
            ": unknown key `concurency`",
            "/params/n/type: \"int\" is not one of [\"string\",\"integer\",\"number\",\"boolean\",\"list\",\"map\"]",
            "/steps/0: unknown key `timout`",
            "/triggers/1: {\"cron\":\"0 9 * * *\",\"every\":\"5m\"} matches 0 of the anyOf alternatives",
            "/triggers/2: {\"webhook\":{\"auth\":\"github\",\"secret\":\"S\",\"sekret\":\"T\"}} matches 0 of the anyOf alternatives",
        ]
    );
}

#[test]
fn the_config_schema_takes_every_documented_key_and_flags_a_typo() {
    let validator = schema("config");
    let full = "\
listen: 127.0.0.1:8686
api_token: t
database: sqlite://runbookd.db
runbooks:
  stale-tickets: { enabled: true, params: { threshold_hours: 48 }, timezone: Europe/Paris, http: { allow: [acme.zendesk.com] } }
runbooks_dir: runbooks
scripts: scripts
data: data
tests: tests/runbooks
timezone: UTC
workers: 8
secrets_file: secrets.yaml
shutdown_grace: 25s
retention: 90d
templates: templates
smtp: { url: smtp://mail:587, from: ops@example.com, username: SMTP_USER, password: SMTP_PASS, tls: starttls, retry_delay: 30s }
http: { allow: [api.example.com], proxy: http://proxy:3128 }
server: { header_timeout: 10s, idle_timeout: 60s, max_connections: 512 }
script_memory_mib: 64
";
    assert_eq!(flagged(&validator, full), Vec::<String>::new());
    assert_eq!(
        flagged(
            &validator,
            "databse: x\nrunbooks: { heartbeat: { enable: true } }\n"
        ),
        [
            ": unknown key `databse`",
            "/runbooks: {\"heartbeat\":{\"enable\":true}} matches 0 of the anyOf alternatives",
        ]
    );
}
