//! Validation of `triggers:`: cron expressions and zones, intervals, webhooks.

use std::time::Duration;

use chrono::TimeZone;
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};

use super::hints::{did_you_mean, timezone as tz_hint};
use super::model::{Trigger, WebhookAuth, WebhookTrigger};
use super::spec::TriggerSpec;
use super::validate::{Ctx, Loc};

/// Parse a cron expression the way runbooks write it: 5 fields, or 6 with
/// seconds first, or a macro such as `@daily`.
///
/// Fails with a sentence naming what is wrong.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "cron expression \"{expr}\" has {fields} fields; write 5 (minute hour day month weekday) or 6 with seconds first"
        ));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| format!("invalid cron expression \"{expr}\": {e}"))?;
    // An expression like `0 0 31 2 *` parses but never fires; say so now
    // rather than leave a trigger that silently never runs.
    let start = Tz::UTC.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    if cron.find_next_occurrence(&start, false).is_err() {
        return Err(format!("cron expression \"{expr}\" never fires"));
    }
    Ok(cron)
}

pub fn validate(
    specs: &[TriggerSpec],
    runbook: &str,
    secrets: &[String],
    ctx: &mut Ctx,
) -> Vec<Trigger> {
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let path = format!("triggers.{i}");
        if let Some(word) = &spec.bare {
            if word == "manual" {
                out.push(Trigger::Manual);
            } else {
                ctx.error(
                    Loc::Value(path),
                    format!("unknown trigger \"{word}\"; a trigger is `manual` or a map with `cron`, `every` or `webhook`"),
                    did_you_mean(word, ["manual", "cron", "every", "webhook"]),
                );
            }
            continue;
        }
        let f = &spec.fields;
        let kinds = [
            f.cron.is_some(),
            f.every.is_some(),
            f.webhook.is_some(),
            f.manual.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            0 => {
                ctx.error(
                    Loc::Value(path),
                    "a trigger needs one of `cron`, `every`, `webhook` or `manual`",
                    None,
                );
                continue;
            }
            1 => {}
            _ => {
                ctx.error(Loc::Value(path), "a trigger has only one of `cron`, `every`, `webhook` or `manual`; give each its own list item", None);
                continue;
            }
        }
        if f.timezone.is_some() && f.cron.is_none() {
            ctx.error(
                Loc::Key(format!("{path}.timezone")),
                "`timezone` applies to `cron` triggers only",
                None,
            );
        }
        if let Some(expr) = &f.cron {
            let tz = match &f.timezone {
                None => Some(ctx.default_tz),
                Some(name) => match name.parse::<Tz>() {
                    Ok(tz) => Some(tz),
                    Err(_) => {
                        ctx.error(
                            Loc::Value(format!("{path}.timezone")),
                            format!("unknown timezone \"{name}\""),
                            tz_hint(name),
                        );
                        None
                    }
                },
            };
            match parse_cron(expr) {
                Ok(schedule) => {
                    if let Some(timezone) = tz {
                        out.push(Trigger::Cron {
                            expr: expr.clone(),
                            schedule: Box::new(schedule),
                            timezone,
                        });
                    }
                }
                Err(e) => ctx.error(Loc::Value(format!("{path}.cron")), e, None),
            }
        } else if let Some(every) = &f.every {
            if let Some(interval) =
                ctx.duration(&format!("{path}.every"), every, Duration::from_secs(1))
            {
                out.push(Trigger::Every { interval });
            }
        } else if f.manual.is_some() {
            out.push(Trigger::Manual);
        } else if let Some(w) = &f.webhook
            && let Some(t) = webhook(w, &format!("{path}.webhook"), runbook, secrets, ctx)
        {
            out.push(Trigger::Webhook(Box::new(t)));
        }
    }
    if specs.is_empty() {
        out.push(Trigger::Manual);
    }
    out
}

fn webhook(
    w: &super::spec::WebhookSpec,
    path: &str,
    runbook: &str,
    secrets: &[String],
    ctx: &mut Ctx,
) -> Option<WebhookTrigger> {
    let Some(auth_text) = w.auth.as_deref() else {
        ctx.error(
            Loc::Value(path.into()),
            format!("a webhook needs `auth:` ({}); unsigned webhooks need `auth: none` and `insecure: true`", WebhookAuth::ALL.join(", ")),
            None,
        );
        return None;
    };
    let auth = ctx.choice(
        &format!("{path}.auth"),
        auth_text,
        WebhookAuth::parse,
        WebhookAuth::ALL,
    )?;
    let mut ok = true;
    if auth == WebhookAuth::None {
        if w.insecure != Some(true) {
            ctx.error(
                Loc::Value(format!("{path}.auth")),
                "`auth: none` accepts requests from anyone; add `insecure: true` to the webhook to confirm",
                None,
            );
            ok = false;
        } else {
            ctx.warn(
                Loc::Value(format!("{path}.auth")),
                format!("webhook of {runbook} accepts unauthenticated requests (auth: none)"),
            );
        }
    } else {
        match &w.secret {
            None => {
                ctx.error(
                    Loc::Value(path.into()),
                    format!("`auth: {auth_text}` needs `secret:`, the name of a declared secret"),
                    None,
                );
                ok = false;
            }
            Some(s) if !secrets.contains(s) => {
                ctx.error(
                    Loc::Value(format!("{path}.secret")),
                    format!("webhook secret {s} is not declared in `secrets:`"),
                    Some(format!("add `secrets: [{s}]` to the runbook")),
                );
                ok = false;
            }
            Some(s) => {
                if let Some(value) = (ctx.secret_value)(s)
                    && let Err(why) = crate::http::check_secret(auth, &value)
                {
                    ctx.error(
                        Loc::Value(format!("{path}.secret")),
                        format!("webhook secret {s} {why}"),
                        Some(format!(
                            "use a random value of at least {} bytes, e.g. `openssl rand -hex 32`",
                            crate::http::MIN_SECRET_BYTES
                        )),
                    );
                    ok = false;
                }
            }
        }
    }
    if auth == WebhookAuth::Hmac && w.header.is_none() {
        ctx.error(
            Loc::Value(path.into()),
            "`auth: hmac` needs `header:`, the header that carries the signature",
            None,
        );
        ok = false;
    }
    let base64 = match w.encoding.as_deref() {
        None | Some("hex") => false,
        Some("base64") => true,
        Some(other) => {
            ctx.error(
                Loc::Value(format!("{path}.encoding")),
                format!("unknown encoding \"{other}\"; expected hex or base64"),
                None,
            );
            false
        }
    };
    let hook_path = match w.path.as_deref() {
        None => format!("/hooks/{runbook}"),
        Some(p) => {
            let seg = p.trim_start_matches("/hooks/").trim_start_matches('/');
            if seg.is_empty()
                || !seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
                || seg.contains("..")
            {
                ctx.error(
                    Loc::Value(format!("{path}.path")),
                    format!("webhook path \"{p}\" may only use letters, digits, -, _, . and /"),
                    None,
                );
                ok = false;
            }
            format!("/hooks/{seg}")
        }
    };
    let when = w
        .when
        .as_deref()
        .and_then(|s| ctx.compile_inline(&format!("{path}.when"), s));
    let dedup = w
        .dedup
        .as_deref()
        .and_then(|s| ctx.compile_inline(&format!("{path}.dedup"), s));
    let dedup_window = w
        .dedup_window
        .as_deref()
        .and_then(|t| ctx.duration(&format!("{path}.dedup_window"), t, Duration::from_secs(1)))
        .unwrap_or(Duration::from_secs(72 * 3600));
    if !ok || (w.when.is_some() && when.is_none()) || (w.dedup.is_some() && dedup.is_none()) {
        return None;
    }
    Some(WebhookTrigger {
        path: hook_path,
        auth,
        secret: w.secret.clone(),
        when,
        dedup,
        dedup_window,
        content_type: w.content_type.clone(),
        header: w.header.clone(),
        prefix: w.prefix.clone(),
        base64,
        username: w.username.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_cron;

    #[test]
    fn cron_fields_and_macros() {
        assert!(parse_cron("0 9 * * 1-5").is_ok());
        assert!(parse_cron("*/10 0 9 * * *").is_ok());
        assert!(parse_cron("@daily").is_ok());
        assert_eq!(
            parse_cron("0 9 * *").unwrap_err(),
            "cron expression \"0 9 * *\" has 4 fields; write 5 (minute hour day month weekday) or 6 with seconds first"
        );
        assert!(
            parse_cron("61 * * * *")
                .unwrap_err()
                .starts_with("invalid cron expression \"61 * * * *\"")
        );
    }

    #[test]
    fn cron_that_never_fires_is_refused() {
        assert_eq!(
            parse_cron("0 0 31 2 *").unwrap_err(),
            "cron expression \"0 0 31 2 *\" never fires"
        );
    }
}
