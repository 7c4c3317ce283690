//! Webhook authentication presets (SPEC §6). Every check runs on the raw
//! body, in constant time, before anything is parsed.

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::runbook::{WebhookAuth, WebhookTrigger};

type HmacSha256 = Hmac<Sha256>;

/// Timestamped schemes refuse anything further than this from now, either way.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a request was refused (for logs and metrics; the caller only hears
/// "authentication failed").
pub type Refusal = &'static str;

/// The least key material a webhook secret may hold, for every scheme: an
/// empty or short key is one anyone can guess.
pub const MIN_SECRET_BYTES: usize = 16;

/// Refuse a secret too weak for `auth`, when the runbook loads.
///
/// Fails with the reason (`is too short: …`) when the key is shorter than
/// [`MIN_SECRET_BYTES`] (for `standard`, the base64-decoded key after
/// `whsec_`), or when a `standard` secret is not base64.
pub fn check_secret(auth: WebhookAuth, secret: &str) -> Result<(), String> {
    let bytes = match auth {
        WebhookAuth::None => return Ok(()),
        WebhookAuth::Standard => {
            let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
            B64.decode(raw)
                .map_err(|_| "is not whsec_<base64>".to_string())?
                .len()
        }
        _ => secret.len(),
    };
    if bytes < MIN_SECRET_BYTES {
        return Err(format!(
            "is too short: {bytes} bytes of key, at least {MIN_SECRET_BYTES} are needed"
        ));
    }
    Ok(())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m
}

/// Whether any of `candidates` (hex) is the HMAC of `parts`, compared in constant time.
fn any_hex(
    key: &[u8],
    parts: &[&[u8]],
    candidates: impl IntoIterator<Item = impl AsRef<str>>,
) -> bool {
    candidates
        .into_iter()
        .any(|c| match hex::decode(c.as_ref().trim()) {
            Ok(sig) => mac(key, parts).verify_slice(&sig).is_ok(),
            Err(_) => false,
        })
}

fn any_b64(
    key: &[u8],
    parts: &[&[u8]],
    candidates: impl IntoIterator<Item = impl AsRef<str>>,
) -> bool {
    candidates
        .into_iter()
        .any(|c| match B64.decode(c.as_ref().trim()) {
            Ok(sig) => mac(key, parts).verify_slice(&sig).is_ok(),
            Err(_) => false,
        })
}

fn fresh(ts: &str, now: i64) -> Result<(), Refusal> {
    let t: i64 = ts.trim().parse().map_err(|_| "unreadable timestamp")?;
    if (now - t).abs() > TOLERANCE_SECS {
        Err("timestamp outside the 300 s tolerance")
    } else {
        Ok(())
    }
}

/// Check a request against a webhook's preset. `now` is unix seconds.
///
/// Fails with the reason when the credentials are missing, malformed, stale
/// or wrong.
pub fn verify(
    t: &WebhookTrigger,
    secret: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), Refusal> {
    if t.auth == WebhookAuth::None {
        return Ok(());
    }
    // Fail closed: a webhook whose secret cannot be resolved accepts nothing.
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or("the webhook's secret is not set")?;
    let key = secret.as_bytes();
    let ok = match t.auth {
        WebhookAuth::None => true,
        WebhookAuth::Github => {
            let sig =
                header(headers, "x-hub-signature-256").ok_or("missing X-Hub-Signature-256")?;
            let hex = sig
                .strip_prefix("sha256=")
                .ok_or("X-Hub-Signature-256 lacks sha256=")?;
            any_hex(key, &[body], [hex])
        }
        WebhookAuth::Stripe => {
            let sig = header(headers, "stripe-signature").ok_or("missing Stripe-Signature")?;
            let mut ts = None;
            let mut v1 = Vec::new();
            for part in sig.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", v)) => ts = Some(v),
                    Some(("v1", v)) => v1.push(v),
                    _ => {}
                }
            }
            let ts = ts.ok_or("Stripe-Signature lacks t=")?;
            fresh(ts, now)?;
            any_hex(key, &[ts.as_bytes(), b".", body], v1)
        }
        WebhookAuth::Slack => {
            let ts = header(headers, "x-slack-request-timestamp")
                .ok_or("missing X-Slack-Request-Timestamp")?;
            fresh(ts, now)?;
            let sig = header(headers, "x-slack-signature").ok_or("missing X-Slack-Signature")?;
            let hex = sig
                .strip_prefix("v0=")
                .ok_or("X-Slack-Signature lacks v0=")?;
            any_hex(key, &[b"v0:", ts.as_bytes(), b":", body], [hex])
        }
        WebhookAuth::Standard => {
            let id = header(headers, "webhook-id").ok_or("missing webhook-id")?;
            let ts = header(headers, "webhook-timestamp").ok_or("missing webhook-timestamp")?;
            fresh(ts, now)?;
            let sigs = header(headers, "webhook-signature").ok_or("missing webhook-signature")?;
            let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
            let key = B64
                .decode(raw)
                .map_err(|_| "the webhook secret is not whsec_<base64>")?;
            let v1 = sigs.split(' ').filter_map(|s| s.strip_prefix("v1,"));
            any_b64(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body], v1)
        }
        WebhookAuth::Pagerduty => {
            let sigs =
                header(headers, "x-pagerduty-signature").ok_or("missing X-PagerDuty-Signature")?;
            any_hex(
                key,
                &[body],
                sigs.split(',').filter_map(|s| s.trim().strip_prefix("v1=")),
            )
        }
        WebhookAuth::Hmac => {
            let name = t.header.as_deref().unwrap_or("x-signature");
            let sig = header(headers, name).ok_or("missing signature header")?;
            let sig = match &t.prefix {
                Some(p) => sig
                    .strip_prefix(p.as_str())
                    .ok_or("signature lacks its prefix")?,
                None => sig,
            };
            if t.base64 {
                any_b64(key, &[body], [sig])
            } else {
                any_hex(key, &[body], [sig])
            }
        }
        WebhookAuth::Bearer => {
            let got = header(headers, "authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .ok_or("missing bearer token")?;
            bool::from(got.as_bytes().ct_eq(key))
        }
        WebhookAuth::Basic => {
            let encoded = header(headers, "authorization")
                .and_then(|a| a.strip_prefix("Basic "))
                .ok_or("missing basic credentials")?;
            let decoded = B64
                .decode(encoded.trim())
                .map_err(|_| "unreadable basic credentials")?;
            let text = String::from_utf8(decoded).map_err(|_| "unreadable basic credentials")?;
            let (user, pass) = text.split_once(':').ok_or("unreadable basic credentials")?;
            let user_ok = t
                .username
                .as_deref()
                .is_none_or(|u| bool::from(u.as_bytes().ct_eq(user.as_bytes())));
            user_ok & bool::from(pass.as_bytes().ct_eq(key))
        }
    };
    if ok {
        Ok(())
    } else {
        Err("signature or credentials do not match")
    }
}

/// Sign as a preset does, for tests and for people wiring a sender.
pub fn hex_hmac(secret: &[u8], parts: &[&[u8]]) -> String {
    hex::encode(mac(secret, parts).finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn trigger(auth: WebhookAuth) -> WebhookTrigger {
        WebhookTrigger {
            path: "/hooks/x".into(),
            auth,
            secret: Some("S".into()),
            when: None,
            dedup: None,
            dedup_window: std::time::Duration::from_secs(3600),
            content_type: None,
            header: None,
            prefix: None,
            base64: false,
            username: None,
        }
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn github_published_test_vector() {
        let secret = "It's a Secret to Everybody";
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let t = trigger(WebhookAuth::Github);
        let h = headers(&[("x-hub-signature-256", sig.into())]);
        assert_eq!(verify(&t, Some(secret), &h, b"Hello, World!", 0), Ok(()));
        assert!(verify(&t, Some(secret), &h, b"Hello, World?", 0).is_err());
        assert!(verify(&t, Some("other"), &h, b"Hello, World!", 0).is_err());
        assert_eq!(
            verify(&t, None, &h, b"Hello, World!", 0),
            Err("the webhook's secret is not set")
        );
    }

    #[test]
    fn pagerduty_accepts_any_of_several_signatures() {
        let good = hex_hmac(b"S", &[b"{}"]);
        let t = trigger(WebhookAuth::Pagerduty);
        let h = headers(&[("x-pagerduty-signature", format!("v1=00ff,v1={good}"))]);
        assert_eq!(verify(&t, Some("S"), &h, b"{}", 0), Ok(()));
    }

    #[test]
    fn timestamped_schemes_refuse_stale_and_future_requests() {
        let t = trigger(WebhookAuth::Slack);
        let now = 1_700_000_000;
        for (ts, ok) in [
            (now, true),
            (now - 299, true),
            (now - 301, false),
            (now + 301, false),
        ] {
            let sig = hex_hmac(b"S", &[b"v0:", ts.to_string().as_bytes(), b":", b"body"]);
            let h = headers(&[
                ("x-slack-request-timestamp", ts.to_string()),
                ("x-slack-signature", format!("v0={sig}")),
            ]);
            assert_eq!(
                verify(&t, Some("S"), &h, b"body", now).is_ok(),
                ok,
                "ts {ts}"
            );
        }
    }
}
