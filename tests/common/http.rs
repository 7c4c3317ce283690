//! HTTP calls to a running daemon from synchronous tests.

use std::sync::OnceLock;

/// What came back: status, headers we care about, and the body as JSON (or text).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: serde_json::Value,
    pub text: String,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

pub fn client() -> reqwest::Client {
    super::init();
    reqwest::Client::new()
}

/// Send a request built by `build` and read the reply.
pub fn send(req: reqwest::RequestBuilder) -> Reply {
    runtime().block_on(read(req))
}

pub async fn read(req: reqwest::RequestBuilder) -> Reply {
    read_full(req).await.0
}

async fn read_full(req: reqwest::RequestBuilder) -> (Reply, Option<String>) {
    let resp = req.send().await.expect("the daemon answers");
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (
        Reply {
            status,
            content_type,
            body,
            text,
        },
        retry,
    )
}

/// Send, and also return the Retry-After header.
pub fn send_with_headers(req: reqwest::RequestBuilder) -> (Reply, Option<String>) {
    runtime().block_on(read_full(req))
}

/// Run many requests at once and collect their replies, in order.
pub fn send_all(reqs: Vec<reqwest::RequestBuilder>) -> Vec<Reply> {
    runtime().block_on(async {
        let tasks: Vec<_> = reqs.into_iter().map(|r| tokio::spawn(read(r))).collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
}
