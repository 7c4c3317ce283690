//! `runbookd emails`: the outbox, with what the mail server said.

use super::{Env, Exit, Outcome};
use crate::cli::EmailsArgs;
use crate::output::{Table, local_time};
use crate::store::{Access, sqlite_path};

pub async fn run(env: &Env, args: EmailsArgs) -> Outcome {
    if let Some(s) = &args.status {
        super::check_choice("status", s, crate::notify::EMAIL_STATUSES)?;
    }
    if !sqlite_path(&env.config.database).exists() {
        println!("{}", if args.json { "[]" } else { "no emails" });
        return Ok(Exit::Ok);
    }
    let store = crate::store::open(&env.config.database, Access::Read).await?;
    let emails = store
        .list_emails(args.status.as_deref(), args.limit)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&emails).expect("json"));
        return Ok(Exit::Ok);
    }
    if emails.is_empty() {
        println!("no emails");
        return Ok(Exit::Ok);
    }
    let mut t = Table::new(vec![
        "ID",
        "STATUS",
        "TRIES",
        "CREATED",
        "TO",
        "SUBJECT / ERROR",
    ])
    .shrink_first(&["TO", "SUBJECT / ERROR"]);
    for e in &emails {
        let what = match &e.last_error {
            Some(err) if e.status != "sent" => format!("{} — {err}", e.subject),
            _ => e.subject.clone(),
        };
        t.row(vec![
            e.id.to_string(),
            e.status.clone(),
            e.attempts.to_string(),
            local_time(e.created_at),
            e.to.join(", "),
            what,
        ]);
    }
    print!("{}", t.render(crate::output::width()));
    Ok(Exit::Ok)
}
