//! A real forward HTTP proxy on 127.0.0.1:0 that records the request line of
//! every request it is asked to carry: absolute-form (`GET http://host/path`)
//! requests are forwarded in origin form, `CONNECT host:port` is tunnelled.
//! It resolves names itself, from its own table first (so a test can give a
//! name it alone knows), else through the system. One request per connection
//! is rewritten; later ones on a kept-alive connection go to the same host.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Start a proxy that resolves `hosts` (name → address) itself.
    pub async fn start(hosts: &[(&str, &str)]) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let table: Arc<HashMap<String, String>> = Arc::new(
            hosts
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (record, table) = (record.clone(), table.clone());
                tokio::spawn(async move { carry(conn, &record, &table).await });
            }
        });
        Proxy { addr, seen }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request lines asked of the proxy so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Read one request head, record its first line, connect and relay.
async fn carry(
    mut client: TcpStream,
    seen: &Mutex<Vec<String>>,
    table: &HashMap<String, String>,
) -> Option<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let (first, rest) = head.split_once("\r\n")?;
    seen.lock().unwrap().push(first.to_string());
    let mut parts = first.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if method == "CONNECT" {
        let mut upstream = connect(target, table).await?;
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .ok()?;
        upstream.write_all(&buf[head_end..]).await.ok()?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream)
            .await
            .ok()?;
        return Some(());
    }
    let uri: axum::http::Uri = target.parse().ok()?;
    let authority = uri.authority()?.to_string();
    let authority = if authority.contains(':') {
        authority
    } else {
        format!("{authority}:80")
    };
    let mut upstream = connect(&authority, table).await?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let rewritten = format!("{method} {path} {version}\r\n{rest}");
    upstream.write_all(rewritten.as_bytes()).await.ok()?;
    upstream.write_all(&buf[head_end..]).await.ok()?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream)
        .await
        .ok()?;
    Some(())
}

/// Connect to `host:port`, the host looked up in `table` first.
async fn connect(authority: &str, table: &HashMap<String, String>) -> Option<TcpStream> {
    let (host, port) = authority.rsplit_once(':')?;
    let host = table.get(host).map_or(host, String::as_str);
    TcpStream::connect((host, port.parse::<u16>().ok()?))
        .await
        .ok()
}
