//! `runbookd issues`: what runbooks raised for people; `ack` and `resolve`.

use chrono::Utc;

use super::{Env, Exit, Failure, Outcome};
use crate::cli::{IssueAction, IssuesArgs};
use crate::output::{Table, elapsed};
use crate::store::{Access, IssueFilter, IssueStatus, Severity};
use strum::VariantArray;

pub async fn run(env: &Env, args: IssuesArgs) -> Outcome {
    let severity = super::filter::<Severity>("severity", args.severity.as_deref())?;
    let store = crate::store::open(&env.config.database, Access::Shared).await?;
    match args.action {
        Some(IssueAction::Ack { key }) => {
            if store.ack_issue(&key, Utc::now()).await? {
                println!("issue {key} acknowledged");
                Ok(Exit::Ok)
            } else {
                Err(not_open(&*store, &key).await)
            }
        }
        Some(IssueAction::Resolve { key, note }) => {
            if store
                .resolve_issue(None, &key, note.as_deref(), Utc::now())
                .await?
            {
                println!("issue {key} resolved");
                Ok(Exit::Ok)
            } else {
                Err(not_open(&*store, &key).await)
            }
        }
        None => {
            let filter = IssueFilter {
                statuses: if args.all {
                    IssueStatus::VARIANTS.to_vec()
                } else {
                    Vec::new()
                },
                severity,
                runbook: args.runbook,
                older_than: None,
                limit: 1000,
            };
            let issues = store.list_issues(&filter).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&issues).expect("json"));
                return Ok(Exit::Ok);
            }
            if issues.is_empty() {
                println!(
                    "{}",
                    if args.all {
                        "no issues"
                    } else {
                        "no open issues"
                    }
                );
                return Ok(Exit::Ok);
            }
            let mut t = Table::new(vec!["SEVERITY", "STATUS", "AGE", "SEEN", "KEY", "TITLE"])
                .shrink_first(&["KEY", "TITLE"]);
            for i in &issues {
                t.row(vec![
                    i.severity.to_string(),
                    i.status.to_string(),
                    elapsed(i.first_seen, Some(Utc::now())),
                    format!("{}×", i.occurrences),
                    i.key.clone(),
                    i.title.clone(),
                ]);
            }
            print!("{}", t.render(crate::output::width()));
            Ok(Exit::Ok)
        }
    }
}

async fn not_open(store: &dyn crate::store::Store, key: &str) -> Failure {
    match store.issue(key).await {
        Ok(Some(i)) => Failure::new(Exit::Failed, format!("issue {key} is {}", i.status)),
        _ => Failure::new(Exit::Failed, format!("there is no issue {key}"))
            .hint("`runbookd issues --all` lists them"),
    }
}
