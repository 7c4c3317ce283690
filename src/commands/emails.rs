//! `runbookd emails`: the outbox, with what the mail server said.

use super::{Env, Exit, Outcome};
use crate::cli::EmailsArgs;
use crate::output::{Table, local_time};
use crate::store::{Access, EmailStatus};

pub async fn run(env: &Env, args: EmailsArgs) -> Outcome {
    let status = super::filter::<EmailStatus>("status", args.status.as_deref())?;
    let store = crate::store::open(&env.config.database, Access::Read).await?;
    let emails = store.list_emails(status, args.limit).await?;
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
            Some(err) if e.status != EmailStatus::Sent => format!("{} — {err}", e.subject),
            _ => e.subject.clone(),
        };
        t.row(vec![
            e.id.to_string(),
            e.status.to_string(),
            e.attempts.to_string(),
            local_time(e.created_at),
            e.to.join(", "),
            what,
        ]);
    }
    print!("{}", t.render(crate::output::width()));
    Ok(Exit::Ok)
}
