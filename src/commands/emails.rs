//! `runbookd emails`: the outbox, with what the mail server said.

use super::{Env, Exit, Outcome};
use crate::cli::EmailsArgs;
use crate::output::{Table, local_time};
use crate::store::{Access, EmailRow, EmailStatus, RecipientStatus};

/// The status, with how many recipients have it when only some do
/// (`partial 2/3`, `queued 1/3`).
fn status_of(e: &EmailRow) -> String {
    let total = e.recipients().count();
    let sent = e
        .results
        .values()
        .filter(|r| r.status == RecipientStatus::Sent)
        .count();
    if sent == 0 || sent == total {
        e.status.to_string()
    } else {
        format!("{} {sent}/{total}", e.status)
    }
}

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
            status_of(e),
            e.attempts.to_string(),
            local_time(e.created_at),
            e.to.join(", "),
            what,
        ]);
    }
    print!("{}", t.render(crate::output::width()));
    Ok(Exit::Ok)
}
