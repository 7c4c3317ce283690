//! The outbound policy: addresses, allow lists, masking in logs.

use super::*;
use crate::secrets::shown_url;

fn out() -> Outbound {
    Outbound::new(vec!["status.example.com".into()], None).unwrap()
}

#[test]
fn metadata_addresses_are_denied_in_every_spelling() {
    let o = out();
    let allow = vec!["*".into(), "169.254.169.254".into(), "0xa9fea9fe".into()];
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://0xa9fea9fe/",
        "http://0251.0376.0251.0376/",
        "http://2852039166/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://[::a9fe:a9fe]/",
        "http://[64:ff9b::a9fe:a9fe]/",
    ] {
        let err = o.check(&Url::parse(url).unwrap(), &allow).unwrap_err();
        assert!(err.contains("cloud metadata address"), "{url}: {err}");
    }
}

#[test]
fn only_allowed_hosts_pass() {
    let o = out();
    let allow = vec![
        "api.example.com".into(),
        "*.zendesk.com".into(),
        "127.0.0.1:8080".into(),
    ];
    for ok in [
        "https://api.example.com/x",
        "https://acme.zendesk.com/api",
        "http://127.0.0.1:8080/",
        "https://status.example.com/",
    ] {
        assert!(o.check(&Url::parse(ok).unwrap(), &allow).is_ok(), "{ok}");
    }
    for bad in [
        "https://evil.example.com/",
        "https://zendesk.com.evil.io/",
        "http://127.0.0.1:9090/",
        "ftp://api.example.com/",
    ] {
        assert!(o.check(&Url::parse(bad).unwrap(), &allow).is_err(), "{bad}");
    }
    assert_eq!(
        o.check(&Url::parse("https://evil.example.com/").unwrap(), &allow)
            .unwrap_err(),
        "https://evil.example.com/: host evil.example.com is not in this runbook's http.allow; add \"evil.example.com\" to `http: { allow: [...] }`"
    );
}

#[test]
fn credentials_in_queries_are_masked_in_logs() {
    let u = Url::parse("https://x.io/a?api_key=abc&page=2").unwrap();
    assert_eq!(shown_url(&u), "https://x.io/a?api_key=***&page=2");
    let u = Url::parse("https://me:pw@x.io/a").unwrap();
    assert_eq!(shown_url(&u), "https://me:***@x.io/a");
}
