//! `runbookd runbooks NAME`: one runbook's effective settings, each with where
//! it comes from: the runbook's file, or its entry in `runbookd.yaml`.

use super::{Exit, Failure, Outcome};
use crate::output::Table;
use crate::runbook::{Loaded, Runbook, Trigger};

pub fn show(loaded: &Loaded, name: &str, json: bool, width: usize) -> Outcome {
    let Some(rb) = loaded.runbooks.iter().find(|r| r.name == name) else {
        return Err(missing(loaded, name));
    };
    let rows = rows(rb);
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(setting, value, from)| serde_json::json!({"setting": setting, "value": value, "from": from}))
            .collect();
        let out = serde_json::json!({"name": rb.name, "path": rb.path, "settings": v});
        println!("{}", serde_json::to_string_pretty(&out).expect("json"));
        return Ok(Exit::Ok);
    }
    let mut table = Table::new(vec!["SETTING", "VALUE", "FROM"]).shrink_first(&["VALUE", "FROM"]);
    for (setting, value, from) in rows {
        table.row(vec![setting.into(), value, from]);
    }
    println!("{} ({})", rb.name, rb.path.display());
    print!("{}", table.render(width));
    Ok(Exit::Ok)
}

/// (setting, effective value, origin) in the order a reader checks them.
fn rows(rb: &Runbook) -> Vec<(&'static str, String, String)> {
    let file = rb.path.display().to_string();
    let o = &rb.overrides;
    let from = |origin: Option<&String>| origin.cloned().unwrap_or_else(|| file.clone());
    let mut rows = vec![("enabled", rb.enabled.to_string(), from(o.enabled.as_ref()))];
    for (i, t) in rb.triggers.iter().enumerate() {
        let origin = match (t, &o.timezone) {
            (Trigger::Cron { .. }, Some(zone)) if o.zoned_triggers.contains(&i) => {
                format!("{file}, zone from {zone}")
            }
            _ => file.clone(),
        };
        rows.push(("trigger", t.describe(), origin));
    }
    for p in &rb.params {
        let value = match &p.default {
            Some(v) => format!("{} = {v}", p.name),
            None => format!("{} (required, no default)", p.name),
        };
        rows.push(("param", value, from(o.params.get(&p.name))));
    }
    for host in &rb.http_allow {
        rows.push(("http.allow", host.clone(), from(o.http_allow.get(host))));
    }
    rows
}

fn missing(loaded: &Loaded, name: &str) -> Failure {
    if loaded.failed.iter().any(|(_, n)| n == name) {
        return Failure::new(Exit::Failed, format!("runbook {name} did not load"))
            .hint("run `runbookd check` to see why");
    }
    let names = loaded.runbooks.iter().map(|r| r.name.as_str());
    let failure = Failure::new(Exit::Usage, format!("there is no runbook named {name}"));
    match crate::runbook::did_you_mean(name, names) {
        Some(h) => failure.hint(h),
        None => failure.hint("`runbookd runbooks` lists them"),
    }
}
