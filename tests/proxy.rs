//! Outbound calls and proxies: proxy variables in the daemon's environment
//! are ignored, the `http.proxy` of runbookd.yaml carries the calls, and a
//! name that resolves to a cloud metadata address is refused even then
//! (the proxy would resolve it itself).

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Deployment;
use common::fakes::Recorder;
use common::proxy::Proxy;
use runbookd::outbound::{Lookup, Outbound};
use runbookd::script::HttpCall;

/// `runbookd run call` with every proxy variable pointing at `proxy`.
async fn run_with_proxy_variables(d: Arc<Deployment>, proxy: &Proxy) -> (i32, String) {
    let url = proxy.url();
    tokio::task::spawn_blocking(move || {
        let env = [
            ("HTTP_PROXY", url.as_str()),
            ("http_proxy", url.as_str()),
            ("HTTPS_PROXY", url.as_str()),
            ("ALL_PROXY", url.as_str()),
            ("NO_PROXY", ""),
        ];
        let ran = d.cli_env(&["run", "call", "--json"], &env);
        (ran.code, format!("{}{}", ran.stdout, ran.stderr))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_proxy_carries_calls() {
    common::init();
    let target = Recorder::start().await;
    target.serve_json("/ping", serde_json::json!({"pong": true}));
    let proxy = Proxy::start(&[]).await;
    let host = target.url().trim_start_matches("http://").to_string();
    let d = Arc::new(Deployment::new());
    d.runbook(
        "call.yaml",
        &format!("http:\n  allow: [\"{host}\"]\nrun: http::get(\"http://{host}/ping\").json\n"),
    );

    let (code, out) = run_with_proxy_variables(d.clone(), &proxy).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        proxy.requests(),
        Vec::<String>::new(),
        "HTTP_PROXY was used"
    );
    assert_eq!(target.requests().len(), 1);

    std::fs::write(
        d.path().join("runbookd.yaml"),
        format!("http:\n  proxy: {}\n", proxy.url()),
    )
    .unwrap();
    let (code, out) = run_with_proxy_variables(d.clone(), &proxy).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        proxy.requests(),
        [format!("GET http://{host}/ping HTTP/1.1")]
    );
    let reached: Vec<String> = target.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(reached, ["/ping", "/ping"], "the proxy forwarded the call");
}

#[test]
fn a_proxy_setting_that_is_not_a_proxy_url_is_refused_by_name() {
    let d = Deployment::new();
    for bad in [
        "socks5://127.0.0.1:1080",
        "proxy.internal:3128",
        "http://p:3128/path",
    ] {
        std::fs::write(
            d.path().join("runbookd.yaml"),
            format!("http:\n  proxy: {bad}\n"),
        )
        .unwrap();
        let ran = d.cli(&["runbooks"]);
        assert_eq!(
            (ran.code, ran.stderr.lines().next().unwrap_or("")),
            (
                3,
                format!(
                    "error: runbookd.yaml: http.proxy: \"{bad}\" is not a proxy URL; write it as http://HOST:PORT"
                )
                .as_str()
            ),
            "{bad}: {}",
            ran.stderr
        );
    }
}

/// Names as a test sets them, so one can resolve to a metadata address.
struct Table(Vec<(&'static str, Vec<&'static str>)>);

#[async_trait::async_trait]
impl Lookup for Table {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let (_, ips) = self
            .0
            .iter()
            .find(|(name, _)| *name == host)
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} is unknown"))
            })?;
        Ok(ips.iter().map(|ip| ip.parse().unwrap()).collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_a_metadata_address_is_refused_through_the_proxy() {
    common::init();
    // Stands in for the metadata service: the proxy would take every name here.
    let target = Recorder::start().await;
    let port = target.url().rsplit(':').next().unwrap().to_string();
    let names = ["app.test", "metadata.test", "mixed.test"];
    let proxy = Proxy::start(&names.map(|n| (n, "127.0.0.1"))).await;
    let lookup = Table(vec![
        ("app.test", vec!["127.0.0.1"]),
        ("metadata.test", vec!["169.254.169.254"]),
        ("mixed.test", vec!["127.0.0.1", "169.254.169.254"]),
    ]);
    let proxy_url = url::Url::parse(&proxy.url()).unwrap();
    let outbound = Outbound::with_lookup(Vec::new(), Some(&proxy_url), Arc::new(lookup)).unwrap();
    let allow: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let get = |host: &str| HttpCall {
        method: "GET".into(),
        url: format!("http://{host}:{port}/latest"),
        ..HttpCall::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);

    let ok = outbound
        .call(&get("app.test"), &allow, deadline)
        .await
        .unwrap();
    assert_eq!(
        ok.value["json"],
        serde_json::json!({"ok": true}),
        "{}",
        ok.log
    );
    for (host, ip) in [
        ("metadata.test", "169.254.169.254"),
        ("mixed.test", "169.254.169.254"),
    ] {
        let err = outbound.call(&get(host), &allow, deadline).await.err();
        assert_eq!(
            err.as_deref(),
            Some(format!(
                "http GET http://{host}:{port}/latest failed: http://{host}:{port}/latest: {host} resolves to {ip}, a cloud metadata address; runbooks may never call it"
            ).as_str())
        );
    }
    assert_eq!(
        proxy.requests(),
        [format!("GET http://app.test:{port}/latest HTTP/1.1")]
    );
    assert_eq!(target.requests().len(), 1);
}
