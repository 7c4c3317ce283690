//! `runbookd check`: every validation rule with its message and position,
//! several broken files reported together, hostile YAML refused cleanly.

mod common;

use common::Deployment;

/// Check one runbook file and return the lines about it.
fn check_one(yaml: &str) -> Vec<String> {
    let d = Deployment::new();
    d.runbook("rb.yaml", yaml);
    let ran = d.cli(&["check"]);
    assert_eq!(ran.code, 1, "check must fail: {}", ran.stdout);
    ran.stdout
        .lines()
        .filter(|l| l.starts_with("runbooks/"))
        .map(str::to_string)
        .collect()
}

fn assert_error(yaml: &str, expected: &str) {
    let lines = check_one(yaml);
    assert!(
        lines.iter().any(|l| l == expected),
        "expected\n  {expected}\ngot\n  {}",
        lines.join("\n  ")
    );
}

#[test]
fn a_good_runbook_passes() {
    let d = Deployment::new();
    d.script("helpers.rhai", "fn double(x) { x * 2 }\n");
    d.runbook(
        "nightly.yaml",
        "triggers:\n  - cron: \"30 2 * * *\"\n    timezone: Europe/Berlin\n  - every: 5m\n  - manual\n\
         params:\n  n: { type: integer, default: 2 }\n\
         steps:\n  - name: a\n    run: |\n      import \"helpers\" as h;\n      h::double(params.n)\n",
    );
    let ran = d.cli(&["check"]);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert_eq!(ran.stdout, "1 runbook ok\n");
}

#[test]
fn names_must_be_lowercase_words() {
    assert_error(
        "name: Stale_Tickets\nrun: '1'\n",
        "runbooks/rb.yaml:1:7: runbook name \"Stale_Tickets\" may only use a-z, 0-9 and - (at most 64) (did you mean \"stale-tickets\"?)",
    );
}

#[test]
fn names_are_unique_across_files() {
    let d = Deployment::new();
    d.runbook("a.yaml", "name: same\nrun: '1'\n");
    d.runbook("b.yaml", "name: same\nrun: '2'\n");
    let ran = d.cli(&["check"]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stdout.contains(
            "runbooks/b.yaml:1:1: runbook name \"same\" is already used by runbooks/a.yaml"
        ),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .ends_with("1 runbook ok, 1 failed with 1 error\n"),
        "{}",
        ran.stdout
    );
}

#[test]
fn cron_expressions_and_timezones_are_checked() {
    let yaml = "triggers:\n  - cron: \"0 9 * *\"\n  - cron: \"0 0 31 2 *\"\n  - cron: \"0 9 * * *\"\n    timezone: America/Sao Paulo\n  - every: 15\nrun: '1'\n";
    let lines = check_one(yaml);
    assert_eq!(
        lines,
        [
            "runbooks/rb.yaml:2:11: cron expression \"0 9 * *\" has 4 fields; write 5 (minute hour day month weekday) or 6 with seconds first",
            "runbooks/rb.yaml:3:11: cron expression \"0 0 31 2 *\" never fires",
            "runbooks/rb.yaml:5:15: unknown timezone \"America/Sao Paulo\" (did you mean \"America/Sao_Paulo\"?)",
            "runbooks/rb.yaml:6:12: duration \"15\" has no unit; write 15s for seconds or 15m for minutes",
        ]
    );
}

#[test]
fn unknown_keys_get_a_did_you_mean() {
    assert_error(
        "triggers:\n  - cron: \"0 9 * * *\"\n    timezon: UTC\nrun: '1'\n",
        "runbooks/rb.yaml:3:5: triggers[0]: unknown key `timezon`, expected one of `cron`, `timezone`, `every`, `webhook`, `manual` (did you mean \"timezone\"?)",
    );
    assert_error(
        "descripton: x\nrun: '1'\n",
        "runbooks/rb.yaml:1:1: unknown key `descripton`, expected one of `name`, `description`, `enabled`, `triggers`, `params`, `secrets`, `http`, `concurrency`, `catch_up`, `catch_up_within`, `timeout`, `retry`, `limit`, `expect`, `steps`, `run` (did you mean \"description\"?)",
    );
}

#[test]
fn choices_params_and_durations_are_checked() {
    let yaml = "concurrency: forbidd\ncatch_up: never\ntimeout: soon\n\
                params:\n  limit: { type: integr }\n  to: { type: list, default: x }\n  my-param: { type: string }\n\
                secrets: [zendesk-token]\nretry: { attempts: 0 }\nrun: '1'\n";
    let lines = check_one(yaml);
    assert_eq!(
        lines,
        [
            "runbooks/rb.yaml:1:14: unknown concurrency \"forbidd\"; expected one of forbid, allow, replace, queue (did you mean \"forbid\"?)",
            "runbooks/rb.yaml:2:11: unknown catch_up \"never\"; expected one of skip, latest, all",
            "runbooks/rb.yaml:3:10: invalid duration \"soon\"; write a number and a unit, like 30s, 5m, 2h or 1d",
            "runbooks/rb.yaml:5:18: unknown type \"integr\"; expected one of string, integer, number, boolean, list, map (did you mean \"integer\"?)",
            "runbooks/rb.yaml:6:30: default of param to is a string, but its type is list",
            "runbooks/rb.yaml:7:3: param name \"my-param\" must be a word of letters, digits and _ (scripts read it as params.my-param)",
            "runbooks/rb.yaml:8:11: secret name \"zendesk-token\" must be an environment variable name (A-Z, 0-9, _) (did you mean \"ZENDESK_TOKEN\"?)",
            "runbooks/rb.yaml:9:20: `retry.attempts` counts the first try and must be 1 to 100",
        ]
    );
}

#[test]
fn steps_are_checked() {
    let d = Deployment::new();
    d.runbook(
        "rb.yaml",
        concat!(
            "steps:\n  - name: find\n    run: |\n      let x = 1;\n      x +* 2\n",
            "  - name: find\n    run: '1'\n  - name: other\n    file: ../etc/passwd\n",
            "  - name: cond\n    if: 'steps.find >'\n    run: '1'\n  - run: '1'\n",
        ),
    );
    let ran = d.cli(&["check"]);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(
        &lines[..5],
        [
            "runbooks/rb.yaml:5:10: script does not compile: Unexpected '*'",
            "runbooks/rb.yaml:6:11: step name \"find\" is used twice",
            "runbooks/rb.yaml:9:11: `file: ../etc/passwd` refused: paths may not contain `..`, `.` or empty segments",
            "runbooks/rb.yaml:11:22: script does not compile: Script is incomplete",
            "runbooks/rb.yaml:13:5: every step needs a `name:`; later steps read its value as steps.<name>",
        ],
        "{}",
        ran.stdout
    );
}

#[test]
fn scripts_may_not_escape_the_scripts_directory() {
    let d = Deployment::new();
    std::fs::write(d.path().join("outside.rhai"), "fn x() { 1 }").unwrap();
    std::os::unix::fs::symlink(d.path().join("outside.rhai"), d.scripts().join("link.rhai"))
        .unwrap();
    d.runbook("abs.yaml", "run: |\n  import \"/etc/passwd\" as x;\n  1\n");
    d.runbook("up.yaml", "run: |\n  import \"../outside\" as x;\n  1\n");
    d.runbook(
        "link.yaml",
        "steps:\n  - name: a\n    file: scripts/link.rhai\n",
    );
    d.runbook("missing.yaml", "run: |\n  import \"nothere\" as x;\n  1\n");
    let ran = d.cli(&["check"]);
    let out = &ran.stdout;
    assert!(out.contains("runbooks/abs.yaml:2:3: script does not compile: import \"/etc/passwd\" refused: paths are relative to the scripts directory"), "{out}");
    assert!(out.contains("runbooks/up.yaml:2:3: script does not compile: import \"../outside\" refused: paths may not contain `..`"), "{out}");
    assert!(
        out.contains("runbooks/link.yaml:3:11: `file: scripts/link.rhai` refused: ")
            && out.contains("link.rhai points outside the scripts directory"),
        "{out}"
    );
    assert!(
        out.contains(
            "runbooks/missing.yaml:2:3: script does not compile: import \"nothere\" refused: "
        ) && out.contains("nothere.rhai does not exist"),
        "{out}"
    );
    assert!(
        out.ends_with("0 runbooks ok, 4 failed with 4 errors\n"),
        "{out}"
    );
}

#[test]
fn webhooks_are_checked() {
    let lines = check_one(
        "secrets: [HOOK_SECRET]\ntriggers:\n  - webhook: { auth: githb }\n  - webhook: { auth: github, secret: OTHER }\n  - webhook: { auth: none }\nrun: '1'\n",
    );
    assert_eq!(
        lines,
        [
            "runbooks/rb.yaml:1:11: secret HOOK_SECRET is not set (set the environment variable HOOK_SECRET or add it to the secrets file)",
            "runbooks/rb.yaml:3:22: unknown auth \"githb\"; expected one of github, stripe, slack, standard, pagerduty, hmac, bearer, basic, none (did you mean \"github\"?)",
            "runbooks/rb.yaml:4:38: webhook secret OTHER is not declared in `secrets:` (add `secrets: [OTHER]` to the runbook)",
            "runbooks/rb.yaml:5:22: `auth: none` accepts requests from anyone; add `insecure: true` to the webhook to confirm",
        ]
    );
}

#[test]
fn hostile_yaml_is_refused_without_hanging() {
    let d = Deployment::new();
    // An alias bomb: each level refers to the previous one nine times.
    let mut bomb = String::from(
        "a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
    );
    let mut prev = "a".to_string();
    for level in 0..9 {
        let name = format!("b{level}");
        let refs = vec![format!("*{prev}"); 9].join(", ");
        bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
        prev = name;
    }
    d.runbook("bomb.yaml", &bomb);
    d.runbook(
        "deep.yaml",
        &format!("run: '1'\nx: {}\n", "[".repeat(10_000)),
    );
    d.runbook(
        "huge.yaml",
        &format!("run: '1'\n# {}\n", "x".repeat(1_100_000)),
    );
    std::fs::write(
        d.runbooks().join("latin1.yaml"),
        b"name: caf\xe9\nrun: '1'\n",
    )
    .unwrap();
    d.runbook("dups.yaml", "name: dups\nrun: '1'\nrun: '2'\n");
    d.runbook("two.yaml", "run: '1'\n---\nrun: '2'\n");
    d.runbook("empty.yaml", "# nothing here\n");
    d.runbook("good.yaml", "run: '1'\n");
    let ran = d.cli(&["check"]);
    let out = &ran.stdout;
    assert_eq!(ran.code, 1);
    for expected in [
        "runbooks/bomb.yaml:",
        "aliases expand this file past 100000 values; a runbook may not expand aliases this much",
        "runbooks/deep.yaml:2:",
        "nesting deeper than 32 levels",
        "runbooks/huge.yaml:1:1: the file is 1100012 bytes; runbooks are limited to 1 MiB",
        "runbooks/latin1.yaml:1:10: the file is not UTF-8 text (save it as UTF-8)",
        "runbooks/dups.yaml:3:1: duplicate key `run` (first at line 2)",
        "runbooks/two.yaml:2:1: a runbook file holds one YAML document; found a second `---`",
        "runbooks/empty.yaml:1:1: the file is empty; a runbook needs at least `steps:` or `run:`",
        "1 runbook ok, 7 failed with 7 errors",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
}

#[test]
fn several_broken_files_are_reported_together_and_as_json() {
    let d = Deployment::new();
    d.runbook("a.yaml", "timeout: 0s\nrun: '1'\n");
    d.runbook("b.yaml", "run: 'foo + 1'\n");
    d.runbook("c.yaml", "run: '1'\n");
    let ran = d.cli(&["check", "--json"]);
    assert_eq!(ran.code, 1);
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["path"], "runbooks/a.yaml");
    assert_eq!(errors[0]["line"], 1);
    assert_eq!(errors[0]["message"], "`timeout` must be at least 1s");
    assert_eq!(errors[1]["path"], "runbooks/b.yaml");
    assert_eq!(errors[1]["column"], 7);
    assert_eq!(
        errors[1]["message"],
        "script does not compile: Undefined variable: foo"
    );
    assert_eq!(v["runbooks"][0]["name"], "c");
}

#[test]
fn check_takes_files_and_directories() {
    let d = Deployment::new();
    let good = d.runbook("good.yaml", "run: '1'\n");
    d.runbook("bad.yaml", "run: 'x'\n");
    let ran = d.cli(&["check", &good]);
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "1 runbook ok\n"));
    let ran = d.cli(&["check", "nowhere"]);
    assert_eq!(ran.code, 1);
    assert!(
        ran.stdout.starts_with("nowhere:1:1: cannot read nowhere: "),
        "{}",
        ran.stdout
    );
}

#[test]
fn a_scheduled_runbook_cannot_require_a_param() {
    assert_error(
        "triggers:\n  - every: 5m\nparams:\n  ticket: { type: string }\nrun: params.ticket\n",
        "runbooks/rb.yaml:4:3: param ticket is required, but its every trigger cannot give it; give it a default",
    );
}

#[test]
fn encodings_tags_and_nul_bytes_are_handled() {
    let d = Deployment::new();
    // Windows editors start a file with a byte-order mark: it is not a second document.
    std::fs::write(
        d.runbooks().join("bom.yaml"),
        b"\xef\xbb\xbfname: bom\nrun: '1'\n",
    )
    .unwrap();
    d.runbook("secret-tag.yaml", "run: '1'\ndescription: !Secret abc\n");
    d.runbook("binary.yaml", "run: '1'\ndescription: !!binary aGk=\n");
    d.runbook(
        "python.yaml",
        "run: '1'\nparams: !!python/object:os.system {}\n",
    );
    d.runbook("nul.yaml", "run: '1'\ndescription: \"a\u{0}b\"\n");
    d.script("nul.rhai", "// a comment\u{0}\n1\n");
    d.runbook(
        "nul-script.yaml",
        "steps:\n  - name: a\n    file: scripts/nul.rhai\n",
    );
    d.runbook("nul-import.yaml", "run: |\n  import \"nul\" as n;\n  1\n");
    let ran = d.cli(&["check"]);
    assert_eq!(ran.code, 1, "{}{}", ran.stdout, ran.stderr);
    assert_eq!(
        ran.stdout,
        "runbooks/binary.yaml:2:14: YAML tags are not allowed (found `!!binary`); write the value without a tag\n\
         runbooks/nul-import.yaml:2:3: script does not compile: import \"nul\" refused: scripts/nul.rhai:1:13: the file holds a NUL byte; scripts are text\n\
         runbooks/nul-script.yaml:3:11: `file: scripts/nul.rhai` refused: scripts/nul.rhai:1:13: the file holds a NUL byte; scripts are text\n\
         runbooks/nul.yaml:2:16: the file holds a NUL byte; runbooks are text (remove it; write \\0 in a string if you mean one)\n\
         runbooks/python.yaml:2:9: YAML tags are not allowed (found `!!python/object:os.system`); write the value without a tag\n\
         runbooks/secret-tag.yaml:2:14: YAML tags are not allowed (found `!Secret`); write the value without a tag\n\
         1 runbook ok, 6 failed with 6 errors\n"
    );
}

#[test]
fn files_others_can_change_are_refused_unless_allowed() {
    use std::os::unix::fs::{PermissionsExt, chown, symlink};
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let d = Deployment::new();
    std::fs::write(d.path().join("elsewhere.yaml"), "run: '1'\n").unwrap();
    symlink(
        d.path().join("elsewhere.yaml"),
        d.runbooks().join("link.yaml"),
    )
    .unwrap();
    mode(
        &d.runbooks().join(
            d.runbook("group.yaml", "run: '1'\n")
                .trim_start_matches("runbooks/"),
        ),
        0o664,
    );
    d.script("shared.rhai", "fn one() { 1 }\n");
    mode(&d.scripts().join("shared.rhai"), 0o666);
    d.runbook(
        "uses.yaml",
        "run: |\n  import \"shared\" as s;\n  s::one()\n",
    );
    d.runbook("foreign.yaml", "run: '1'\n");
    chown(d.runbooks().join("foreign.yaml"), Some(4242), None).unwrap();
    d.runbook("good.yaml", "run: '1'\n");
    let uid = unsafe { libc::geteuid() };
    let ran = d.cli(&["check"]);
    assert_eq!(
        ran.stdout,
        format!(
            "runbooks/foreign.yaml:1:1: runbooks/foreign.yaml is owned by uid 4242, not by the daemon's user (uid {uid}) or root; runbookd refuses it (chown it to uid {uid}, or start with --allow-insecure-permissions)\n\
             runbooks/group.yaml:1:1: runbooks/group.yaml is writable by group or others (mode 0664); runbookd refuses it (chmod go-w runbooks/group.yaml, or start with --allow-insecure-permissions)\n\
             runbooks/link.yaml:1:1: runbooks/link.yaml points outside the runbooks directory (to {}/elsewhere.yaml)\n\
             scripts/shared.rhai:1:1: scripts/shared.rhai is writable by group or others (mode 0666); runbookd refuses it (chmod go-w scripts/shared.rhai, or start with --allow-insecure-permissions)\n\
             1 runbook ok, 4 failed with 4 errors\n",
            d.path().canonicalize().unwrap().display()
        )
    );
    // The operator's override loads what others may write, never what lies outside.
    let ran = d.cli(&["check", "--allow-insecure-permissions"]);
    assert!(
        ran.stdout
            .ends_with("4 runbooks ok, 1 failed with 1 error\n"),
        "{}",
        ran.stdout
    );
    // A directory others may write is refused whole: anyone could add a runbook to it.
    mode(&d.runbooks(), 0o777);
    let ran = d.cli(&["check"]);
    assert_eq!(
        ran.stdout,
        "runbooks:1:1: runbooks is writable by group or others (mode 0777); runbookd refuses it (chmod go-w runbooks, or start with --allow-insecure-permissions)\n\
         0 runbooks ok, 0 failed with 1 error\n"
    );
}

#[test]
fn empty_and_short_webhook_secrets_are_refused_for_every_scheme() {
    let d = Deployment::new();
    let hook = |auth: &str, extra: &str| {
        format!(
            "secrets: [KEY]\ntriggers:\n  - webhook: {{ auth: {auth}, secret: KEY{extra} }}\nrun: '1'\n"
        )
    };
    for (auth, extra) in [
        ("github", ""),
        ("stripe", ""),
        ("slack", ""),
        ("standard", ""),
        ("pagerduty", ""),
        ("hmac", ", header: X-Sig"),
        ("bearer", ""),
        ("basic", ""),
    ] {
        d.runbook(&format!("{auth}.yaml"), &hook(auth, extra));
    }
    // `whsec_` alone is an empty key; 15 bytes is one short; 16 bytes pass.
    let ran = d.cli_env(&["check"], &[("KEY", "whsec_")]);
    let line = |auth: &str, col: u32, why: &str| {
        format!(
            "runbooks/{auth}.yaml:3:{col}: webhook secret KEY {why} (use a random value of at least 16 bytes, e.g. `openssl rand -hex 32`)\n"
        )
    };
    let short = "is too short: 6 bytes of key, at least 16 are needed";
    let expected: String = [
        line("basic", 37, short),
        line("bearer", 38, short),
        line("github", 38, short),
        line("hmac", 36, short),
        line("pagerduty", 41, short),
        line("slack", 37, short),
        line(
            "standard",
            40,
            "is too short: 0 bytes of key, at least 16 are needed",
        ),
        line("stripe", 38, short),
    ]
    .concat();
    assert_eq!(
        ran.stdout,
        format!("{expected}0 runbooks ok, 8 failed with 8 errors\n")
    );
    let ran = d.cli_env(&["check"], &[("KEY", "whsec_MDEyMzQ1Njc4OWFiY2Rl")]); // 15 bytes decoded
    assert!(
        ran.stdout.contains(&line(
            "standard",
            40,
            "is too short: 15 bytes of key, at least 16 are needed"
        )),
        "{}",
        ran.stdout
    );
    let ran = d.cli_env(&["check"], &[("KEY", "whsec_MDEyMzQ1Njc4OWFiY2RlZg==")]); // 16 bytes
    assert_eq!(ran.stdout, "8 runbooks ok\n");
}
