//! `--help` as a person reads it: a command's own flags first, the global
//! ones under their own heading, `--database` only where it is used.

mod common;

use common::Deployment;

#[test]
fn help_lists_a_commands_own_flags_first_and_the_database_only_where_it_is_used() {
    let d = Deployment::new();
    let global = |database: bool| {
        format!(
            "Global options:\n\
             \x20     --config <FILE>               Config file [default: runbookd.yaml when it exists]\n\
             {}\
             \x20     --runbooks <DIR>              Runbooks directory [default: runbooks]\n\
             \x20     --scripts <DIR>               Scripts directory, the only place `import` and `file:` read from [default: scripts]\n\
             \x20     --allow-insecure-permissions  Load runbook and script files or directories that group or others may write, or that another user owns (refused by default, as cron and ssh do)\n\
             \x20     --log-format <LOG_FORMAT>     Diagnostics format on stderr [default: human] [possible values: human, json]\n",
            if database {
                "      --database <URL>              Database URL [default: sqlite://runbookd.db]\n"
            } else {
                ""
            }
        )
    };
    let run = d.cli(&["run", "--help"]);
    assert_eq!(
        (run.code, run.stdout),
        (
            0,
            format!(
                "Run a runbook once now, stream its log, record it; exit 0 only on success\n\n\
                 Usage: runbookd run [OPTIONS] <NAME>\n\n\
                 Arguments:\n\
                 \x20 <NAME>  The runbook's name\n\n\
                 Options:\n\
                 \x20 -p, --param <NAME=VALUE>  A param, as NAME=VALUE (repeatable); lists as a,b or JSON, maps as JSON\n\
                 \x20     --now <RFC3339>       Run as if it were this time (RFC 3339); the clock advances from there\n\
                 \x20     --json                Print the outcome as JSON instead of streaming the log\n\
                 \x20     --dry-run             Perform reads; record, print and skip every write (HTTP other than GET/HEAD, email, issues, state)\n\
                 \x20 -h, --help                Print help\n\n{}",
                global(true)
            )
        )
    );
    let check = d.cli(&["check", "--help"]);
    assert_eq!(
        (check.code, check.stdout),
        (
            0,
            format!(
                "Validate runbooks; print every error as path:line:col; exit 1 if any\n\n\
                 Usage: runbookd check [OPTIONS] [PATHS]...\n\n\
                 Arguments:\n\
                 \x20 [PATHS]...  Runbook files or directories [default: the runbooks directory]\n\n\
                 Options:\n\
                 \x20     --json  Print the result as JSON\n\
                 \x20 -h, --help  Print help\n\n{}",
                global(false)
            )
        )
    );
    // The database is taken before the command too, and after a subcommand.
    d.runbook("one.yaml", "run: '1'\n");
    assert_eq!(
        d.cli(&["run", "one", "--database", "sqlite://a.db"]).code,
        0
    );
    assert_eq!(d.cli(&["--database", "sqlite://a.db", "runs"]).code, 0);
    let listed = d.cli(&["issues", "ack", "k", "--database", "sqlite://a.db"]);
    assert_eq!(
        listed.stderr,
        "error: there is no issue k\nhint: `runbookd issues --all` lists them\n"
    );
    assert!(!d.db().exists(), "every command used a.db");
    let refused = d.cli(&["next", "--database", "sqlite://a.db"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
}
