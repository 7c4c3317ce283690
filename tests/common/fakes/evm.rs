//! A fake of EVM JSON-RPC 2.0 nodes (providers.md §3.1/§3.2), several on one
//! port by path: `POST /{node}` (e.g. `/ref-a`, `/node-1`). It answers
//! `eth_blockNumber`, `eth_chainId`, `eth_syncing`, `net_version` and
//! `eth_getBlockByNumber`, single calls or a JSON array batch; unknown methods
//! get error -32601. A node exists once a setter names it; others are 404.
//!
//! Faults: `respond_with` (HTTP status codes), `rpc_error` (JSON-RPC errors)
//! and `delay` (slow answers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{bind, json, reason, spawn};

/// Assumed block time for blocks below the head (their timestamps).
const BLOCK_SECS: i64 = 12;

struct Node {
    head: u64,
    head_time: DateTime<Utc>,
    syncing: bool,
    chain_id: u64,
    /// Answer the next `.1` HTTP requests with status `.0`.
    fault: Option<(u16, usize)>,
    /// Answer the next `.2` calls with JSON-RPC error (code, message).
    rpc_error: Option<(i64, String, usize)>,
    delay: Duration,
    calls: Vec<String>,
}

struct Inner {
    now: DateTime<Utc>,
    nodes: HashMap<String, Node>,
}

impl Inner {
    fn node(&mut self, name: &str) -> &mut Node {
        let now = self.now;
        self.nodes.entry(name.to_string()).or_insert_with(|| Node {
            head: 0,
            head_time: now,
            syncing: false,
            chain_id: 1,
            fault: None,
            rpc_error: None,
            delay: Duration::ZERO,
            calls: Vec::new(),
        })
    }
}

/// Handle on running fake EVM nodes; clones share their state.
#[derive(Clone)]
pub struct Evm {
    url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Evm {
    pub async fn start(now: DateTime<Utc>) -> Evm {
        let (listener, url) = bind().await;
        let evm = Evm {
            url,
            inner: Arc::new(Mutex::new(Inner {
                now,
                nodes: HashMap::new(),
            })),
        };
        let app = Router::new()
            .route("/{node}", post(rpc))
            .with_state(evm.clone());
        spawn(listener, app);
        evm
    }

    /// The base URL; a node's endpoint is `{url}/{node}`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn with_node(&self, node: &str, change: impl FnOnce(&mut Node)) {
        change(self.inner.lock().unwrap().node(node));
    }

    /// The clock used for nodes a setter creates before their head is set.
    pub fn set_now(&self, now: DateTime<Utc>) {
        self.inner.lock().unwrap().now = now;
    }

    /// The node's latest block (added with chain id 1 if new).
    pub fn set_head(&self, node: &str, block_number: u64, block_timestamp: DateTime<Utc>) {
        self.with_node(node, |n| {
            n.head = block_number;
            n.head_time = block_timestamp;
        });
    }

    /// While syncing, `eth_syncing` answers startingBlock head-100,
    /// currentBlock head, highestBlock head+100.
    pub fn set_syncing(&self, node: &str, syncing: bool) {
        self.with_node(node, |n| n.syncing = syncing);
    }

    pub fn set_chain_id(&self, node: &str, chain_id: u64) {
        self.with_node(node, |n| n.chain_id = chain_id);
    }

    /// Answer the next `times` requests with HTTP `status` (429 adds
    /// `Retry-After: 1` and a JSON-RPC error body).
    pub fn respond_with(&self, node: &str, status: u16, times: usize) {
        self.with_node(node, |n| n.fault = Some((status, times)));
    }

    /// Answer the next `times` calls (batch members count one each) with a
    /// JSON-RPC error, over HTTP 200.
    pub fn rpc_error(&self, node: &str, code: i64, message: &str, times: usize) {
        self.with_node(node, |n| {
            n.rpc_error = Some((code, message.to_string(), times))
        });
    }

    /// Wait `delay` before every later answer from the node (zero turns it off).
    pub fn delay(&self, node: &str, delay: Duration) {
        self.with_node(node, |n| n.delay = delay);
    }

    /// Method names the node received, in order, faults included.
    pub fn calls(&self, node: &str) -> Vec<String> {
        let s = self.inner.lock().unwrap();
        s.nodes
            .get(node)
            .map(|n| n.calls.clone())
            .unwrap_or_default()
    }
}

async fn rpc(State(evm): State<Evm>, Path(node): Path<String>, body: Bytes) -> Response {
    let request = serde_json::from_slice::<Value>(&body);
    let delay = {
        let mut s = evm.inner.lock().unwrap();
        let Some(n) = s.nodes.get_mut(&node) else {
            return json(404, json!({"error": format!("no node {node}")}));
        };
        let calls = match &request {
            Ok(Value::Array(items)) => items.iter().collect(),
            Ok(one) => vec![one],
            Err(_) => vec![],
        };
        let methods = calls.iter().filter_map(|c| c.get("method")?.as_str());
        n.calls.extend(methods.map(str::to_string));
        n.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut s = evm.inner.lock().unwrap();
    let n = s.nodes.get_mut(&node).expect("nodes are never removed");
    if let Some((status, times)) = n.fault.as_mut()
        && *times > 0
    {
        *times -= 1;
        return http_fault(*status);
    }
    let answer = match request {
        Err(_) => error(Value::Null, -32700, "Parse error"),
        Ok(Value::Array(items)) if items.is_empty() => {
            error(Value::Null, -32600, "Invalid Request")
        }
        Ok(Value::Array(items)) => items.iter().map(|c| call(n, c)).collect(),
        Ok(one) => call(n, &one),
    };
    json(200, answer)
}

fn http_fault(status: u16) -> Response {
    if status == 429 {
        let body = error(
            Value::Null,
            -32005,
            "Too many requests, rate limit exceeded",
        );
        return ([("retry-after", "1")], json(429, body)).into_response();
    }
    (
        axum::http::StatusCode::from_u16(status).unwrap(),
        reason(status),
    )
        .into_response()
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

fn call(n: &mut Node, req: &Value) -> Value {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return error(id, -32600, "Invalid Request");
    };
    if let Some((code, message, times)) = n.rpc_error.as_mut()
        && *times > 0
    {
        *times -= 1;
        return error(id, *code, message);
    }
    let result = match method {
        "eth_blockNumber" => json!(hex(n.head)),
        "eth_chainId" => json!(hex(n.chain_id)),
        "net_version" => json!(n.chain_id.to_string()),
        "eth_syncing" if n.syncing => json!({
            "startingBlock": hex(n.head.saturating_sub(100)),
            "currentBlock": hex(n.head),
            "highestBlock": hex(n.head + 100),
        }),
        "eth_syncing" => json!(false),
        "eth_getBlockByNumber" => match block_number(n, req.get("params")) {
            Some(number) => block(n, number),
            None => {
                return error(
                    id,
                    -32602,
                    "invalid argument 0: hex string without 0x prefix",
                );
            }
        },
        _ => return error(id, -32601, "Method not found"),
    };
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// The block a `["latest" | "pending" | "earliest" | "0x…", false]` param names.
fn block_number(n: &Node, params: Option<&Value>) -> Option<u64> {
    match params?.get(0)?.as_str()? {
        "latest" | "pending" | "safe" | "finalized" => Some(n.head),
        "earliest" => Some(0),
        other => u64::from_str_radix(other.strip_prefix("0x")?, 16).ok(),
    }
}

fn block_hash(chain_id: u64, number: u64) -> String {
    format!("0x{chain_id:016x}{number:048x}")
}

/// The block, or null above the head (as real nodes answer).
fn block(n: &Node, number: u64) -> Value {
    if number > n.head {
        return Value::Null;
    }
    let age = (n.head - number) as i64 * BLOCK_SECS;
    let timestamp = (n.head_time.timestamp() - age).max(0) as u64;
    json!({
        "number": hex(number),
        "hash": block_hash(n.chain_id, number),
        "parentHash": block_hash(n.chain_id, number.saturating_sub(1)),
        "timestamp": hex(timestamp),
        "transactions": [],
    })
}
