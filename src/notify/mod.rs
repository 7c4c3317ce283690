//! Email: composing what a script asked for (templates, checks) and the
//! mailer that delivers the outbox over SMTP, recipient by recipient
//! (docs/email-and-issues.md).

mod mailer;
mod message;
mod outcome;
mod smtp;

use std::path::Path;

use lettre::message::Mailbox;

pub use mailer::{LOGIN_ISSUE, Mailer};
pub use message::message_id;
pub use outcome::{LOGIN_HOLD, MAX_ATTEMPTS};

/// The built-in templates; a file of the same name in `templates/` replaces one.
const BUILTIN: &[(&str, &str)] = &[
    ("digest.txt", include_str!("templates/digest.txt")),
    ("digest.html", include_str!("templates/digest.html")),
];

/// A message ready for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Composed {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    /// The script's `key`, when it gave one.
    pub key: Option<String>,
}

fn addresses(v: &serde_json::Value, field: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = match v {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::String(s) => s
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("email: `{field}` holds a non-string"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(format!(
                "email: `{field}` is an address or a list of addresses"
            ));
        }
    };
    for a in &list {
        if a.contains(['\r', '\n']) {
            return Err(format!("email: `{field}` contains a line break"));
        }
        a.parse::<Mailbox>()
            .map_err(|e| format!("email: `{field}`: \"{a}\" is not an email address ({e})"))?;
    }
    Ok(list)
}

fn template_source(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok().or_else(|| {
        BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.to_string())
    })
}

/// Render `template` (`NAME.txt` and/or `NAME.html`) with `data`.
///
/// Fails when neither exists or one does not render.
pub fn render(
    dir: &Path,
    template: &str,
    data: &serde_json::Value,
) -> Result<(Option<String>, Option<String>), String> {
    if template.contains(['/', '\\']) || template.contains("..") {
        return Err(format!(
            "email: template \"{template}\" must be a plain name from the templates directory"
        ));
    }
    let mut env = minijinja::Environment::new();
    // Data from providers lands in HTML: escape it there.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    let mut out = (None, None);
    for (ext, slot) in [("txt", &mut out.0), ("html", &mut out.1)] {
        let name = format!("{template}.{ext}");
        if let Some(src) = template_source(dir, &name) {
            env.add_template_owned(name.clone(), src)
                .map_err(|e| format!("email: template {name}: {e}"))?;
            let t = env
                .get_template(&name)
                .map_err(|e| format!("email: template {name}: {e}"))?;
            *slot = Some(
                t.render(minijinja::value::Serde(data))
                    .map_err(|e| format!("email: template {name}: {e}"))?,
            );
        }
    }
    if out.0.is_none() && out.1.is_none() {
        return Err(format!(
            "email: there is no template \"{template}\" ({template}.txt or {template}.html in {})",
            dir.display()
        ));
    }
    Ok(out)
}

/// Check and complete what `email::send(#{...})` asked for.
///
/// Fails with a sentence on a missing or malformed field.
pub fn compose(msg: &serde_json::Value, templates: &Path) -> Result<Composed, String> {
    let known = [
        "to", "cc", "subject", "text", "html", "template", "data", "key",
    ];
    if let Some(obj) = msg.as_object()
        && let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str()))
    {
        return Err(format!(
            "email: unknown field `{k}`; fields are {}",
            known.join(", ")
        ));
    }
    let to = addresses(&msg["to"], "to")?;
    if to.is_empty() {
        return Err("email: `to` needs at least one address".into());
    }
    let cc = addresses(&msg["cc"], "cc")?;
    let subject = msg["subject"]
        .as_str()
        .ok_or("email: `subject` is required")?
        .to_string();
    if subject.contains(['\r', '\n']) {
        return Err("email: `subject` contains a line break".into());
    }
    let (mut text, mut html) = (
        msg["text"].as_str().map(str::to_string),
        msg["html"].as_str().map(str::to_string),
    );
    if let Some(t) = msg["template"].as_str() {
        let (t_text, t_html) = render(templates, t, &msg["data"])?;
        text = text.or(t_text);
        html = html.or(t_html);
    }
    if text.is_none() && html.is_none() {
        return Err("email: give `text`, `html` or a `template`".into());
    }
    let key = match &msg["key"] {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    Ok(Composed {
        to,
        cc,
        subject,
        text,
        html,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_header_injection_and_bad_addresses() {
        let dir = Path::new("/nonexistent");
        let e = compose(&serde_json::json!({"to": "a@example.com", "subject": "hi\r\nBcc: x@evil.io", "text": "x"}), dir).unwrap_err();
        assert_eq!(e, "email: `subject` contains a line break");
        let e = compose(
            &serde_json::json!({"to": "not an address", "subject": "s", "text": "x"}),
            dir,
        )
        .unwrap_err();
        assert!(
            e.starts_with("email: `to`: \"not an address\" is not an email address"),
            "{e}"
        );
        let ok = compose(&serde_json::json!({"to": ["a@example.com", "b@example.com"], "subject": "s", "text": "x"}), dir).unwrap();
        assert_eq!(ok.to.len(), 2);
    }

    #[test]
    fn the_builtin_digest_renders_both_parts() {
        let data = serde_json::json!({"total": 1, "groups": [{"severity": "high", "issues": [{"title": "<b>Visa EU</b> approval low", "key": "k", "age": "3h", "occurrences": 2, "runbook": "provider-health", "link": "https://x.io"}]}]});
        let (text, html) = render(Path::new("/nonexistent"), "digest", &data).unwrap();
        assert!(text.unwrap().contains("<b>Visa EU</b> approval low"));
        let html = html.unwrap();
        assert!(
            html.contains("&lt;b&gt;Visa EU&lt;") && !html.contains("<b>"),
            "HTML is escaped: {html}"
        );
    }
}
