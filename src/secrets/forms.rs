//! The forms in which the product itself writes a value: the one rule of what
//! "the secret appears in this text" means for masking.
//!
//! A secret reaches text not only as it is, but as the encoders we use write
//! it: URL queries (ours, `form_urlencoded`, space as `+`, and the URL
//! parser's, for a secret spelled into a URL), URL paths and passwords, JSON
//! strings (serde_json), strings inside Rhai values (`#{"k": "v\"x"}`) and
//! minijinja values, HTML escaping (minijinja's, in `.html` email templates),
//! and base64 of basic credentials (`user:secret`). Each form is produced by
//! the encoder that writes it, so a form is masked exactly as it is written.

use base64::Engine as _;

/// Base64 runs shorter than this are not masked: a few characters of base64
/// occur by chance in ordinary text.
const MIN_BASE64: usize = 8;

/// Every form of `secret` the product may write, the value itself first.
pub fn forms(secret: &str) -> Vec<String> {
    let mut out = Vec::new();
    for text in [
        secret.to_string(),
        unquoted(&serde_json::to_string(secret).unwrap_or_default()),
        unquoted(unlisted(&rhai_form(secret))),
        unquoted(unlisted(&jinja_form(secret))),
    ] {
        out.push(minijinja::HtmlEscape(&text).to_string());
        out.push(text);
    }
    let query: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    out.push(query.replace('+', "%20"));
    out.push(query);
    out.extend(url_forms(secret));
    out.extend(base64_cores(secret));
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| !f.is_empty() && seen.insert(f.clone()));
    out
}

/// `[x]` as `x`.
fn unlisted(text: &str) -> &str {
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text)
}

/// A quoted string (`"…"` or `'…'`) without its quotes.
fn unquoted(text: &str) -> String {
    ['"', '\'']
        .iter()
        .find_map(|q| text.strip_prefix(*q).and_then(|t| t.strip_suffix(*q)))
        .unwrap_or(text)
        .to_string()
}

/// How Rhai writes a string inside an array or map (`print(m)`, `${m}`).
fn rhai_form(secret: &str) -> String {
    rhai::Dynamic::from_array(vec![secret.into()]).to_string()
}

/// How minijinja writes a string inside a list or map (`{{ data }}`).
fn jinja_form(secret: &str) -> String {
    minijinja::Value::from(vec![secret.to_string()]).to_string()
}

/// The secret as the URL parser writes it in a query, a path and a password.
fn url_forms(secret: &str) -> Vec<String> {
    let Ok(mut url) = url::Url::parse("http://user@h/") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    url.set_query(Some(secret));
    out.extend(url.query().map(str::to_string));
    url.set_path(&format!("/{secret}"));
    out.push(url.path().trim_start_matches('/').to_string());
    if url.set_password(Some(secret)).is_ok() {
        out.extend(url.password().map(str::to_string));
    }
    out
}

/// The base64 characters that depend only on the secret, for each of the
/// three places it can start in a 3-byte group (as after `user:` in basic
/// credentials): the whole encoding but the groups shared with what is around it.
fn base64_cores(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    (0..3)
        .filter_map(|lead: usize| {
            let mut bytes = vec![0u8; lead];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = b64.encode(&bytes);
            let start = if lead == 0 { 0 } else { 4 };
            let end = bytes.len() / 3 * 4;
            encoded
                .get(start..end)
                .filter(|core| core.len() >= MIN_BASE64)
                .map(str::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quote, backslash, angle bracket, ampersand, percent, space, non-ASCII.
    const SECRET: &str = "p\"w\\d<x>&y%z é/'+";

    fn masked(text: &str) -> bool {
        forms(SECRET).iter().any(|f| text.contains(f.as_str()))
    }

    #[test]
    fn each_encoder_the_product_uses_writes_a_listed_form() {
        let json = serde_json::json!({ "k": SECRET }).to_string();
        let rhai_map = {
            let mut m = rhai::Map::new();
            m.insert("k".into(), SECRET.into());
            rhai::Dynamic::from_map(m).to_string()
        };
        let jinja = minijinja::Environment::new()
            .render_str("{{ d }}", minijinja::context! { d => vec![SECRET] })
            .unwrap();
        let mut query = url::Url::parse("https://x.io/a").unwrap();
        query.query_pairs_mut().append_pair("t", SECRET);
        let spelled = url::Url::parse(&format!("https://x.io/{SECRET}?t={SECRET}")).unwrap();
        let basic = base64::engine::general_purpose::STANDARD;
        for text in [
            json,
            rhai_map,
            jinja.clone(),
            minijinja::HtmlEscape(SECRET).to_string(),
            minijinja::HtmlEscape(&jinja).to_string(),
            query.to_string(),
            spelled.path().to_string(),
            spelled.query().unwrap().to_string(),
            form_urlencoded::byte_serialize(SECRET.as_bytes()).collect(),
            basic.encode(format!("agent@example.com/token:{SECRET}")),
            basic.encode(format!("ab:{SECRET}")),
            basic.encode(format!("a:{SECRET}")),
        ] {
            assert!(masked(&text), "no form of the secret matches {text}");
        }
    }

    #[test]
    fn forms_are_listed_once_with_the_value_first() {
        // Every text encoder leaves this value as it is; only base64 differs.
        let all = forms("plain-value-123");
        assert_eq!(all[0], "plain-value-123");
        let mut unique = all.clone();
        unique.dedup();
        assert_eq!(unique.len(), all.len());
        assert!(all[1..].iter().all(|f| !f.contains('-')), "{all:?}");
        assert_eq!(forms("ab"), ["ab"], "short base64 runs are not masked");
    }
}
