//! The running daemon's API, as `run` and `prune` use it when that daemon
//! holds the database: where it listens (the config's `listen`, resolved as
//! `serve` resolves it), its token, and what each refusal means to a person.
//!
//! The one rule kept here: when the daemon cannot be reached or refuses us,
//! the message says both facts — the database is held, and why the API did
//! not help — and what to do.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{Env, Exit, Failure};

/// How long one call to the daemon may take (polls and submissions alike).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The daemon holding the database, reached over its API.
#[derive(Clone)]
pub struct Daemon {
    client: reqwest::Client,
    /// `http://HOST:PORT`, without a trailing slash.
    pub url: String,
    token: Option<String>,
    /// "the database X is in use by another runbookd (pid N)": the first
    /// half of every message about this daemon.
    held: String,
}

/// Why a call to the daemon did not give an answer.
#[derive(Debug)]
pub enum Refused {
    /// Nothing answers at the address, or the answer was not the API's.
    Unreachable(String),
    /// A token is needed, or the one given is not the daemon's.
    Token,
    /// The API refused the request itself (`detail` of its problem+json).
    Problem { status: u16, detail: String },
}

impl Daemon {
    /// The daemon that holds `database` (it is in use by `holder`), at the
    /// address the config says it listens on.
    pub fn new(env: &Env, database: &str, holder: &str) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(3))
            .timeout(CALL_TIMEOUT)
            .build()
            .expect("an HTTP client without TLS settings builds");
        Daemon {
            client,
            url: format!("http://{}", reachable(&env.config.listen)),
            token: env.config.api_token.as_ref().map(|t| t.0.clone()),
            held: format!("the database {database} is in use by {holder}"),
        }
    }

    /// `GET path` and its JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Refused> {
        self.send(self.client.get(format!("{}{path}", self.url)))
            .await
    }

    /// `POST path` with a JSON body, and its JSON answer.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, Refused> {
        self.send(self.client.post(format!("{}{path}", self.url)).json(body))
            .await
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, Refused> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| Refused::Unreachable(root_cause(&e)))?;
        let status = resp.status().as_u16();
        if status == 401 {
            return Err(Refused::Token);
        }
        let text = resp
            .text()
            .await
            .map_err(|e| Refused::Unreachable(e.to_string()))?;
        if status >= 400 {
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_string))
                .ok_or_else(|| Refused::Unreachable(format!("it answered {status}: {text}")))?;
            return Err(Refused::Problem { status, detail });
        }
        serde_json::from_str(&text).map_err(|e| {
            Refused::Unreachable(format!("its answer is not the runbookd API's ({e})"))
        })
    }

    /// What a person reads when the daemon could not do what was asked;
    /// `doing` is what we asked ("run greet", "prune").
    pub fn failure(&self, doing: &str, refused: Refused) -> Failure {
        let held = &self.held;
        let url = &self.url;
        match refused {
            Refused::Unreachable(cause) => Failure::new(
                Exit::Unavailable,
                format!("{held}, and its API at {url} does not answer ({cause}), so this command cannot {doing} through it"),
            )
            .hint("set `listen` in runbookd.yaml (or RUNBOOKD_LISTEN) to the address that daemon serves, or stop it to work on the database here"),
            Refused::Token => Failure::new(
                Exit::Unavailable,
                match self.token {
                    Some(_) => format!("{held}, and its API at {url} refused this command's API token, so this command cannot {doing} through it"),
                    None => format!("{held}, and its API at {url} needs an API token, so this command cannot {doing} through it"),
                },
            )
            .hint("set RUNBOOKD_API_TOKEN (or `api_token` in runbookd.yaml) to the daemon's token"),
            Refused::Problem { status: 503, detail } => Failure::new(Exit::Unavailable, format!("the daemon at {url} cannot {doing} now: {detail}")),
            Refused::Problem { status: 409, detail } => Failure::new(Exit::Failed, detail),
            Refused::Problem { status: 404, detail } => Failure::new(Exit::Usage, format!("the daemon at {url}: {detail}"))
                .hint("it may not have loaded the runbook yet: `runbookd runbooks` lists what it runs"),
            Refused::Problem { detail, .. } => Failure::new(Exit::Usage, format!("the daemon at {url} refused to {doing}: {detail}")),
        }
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)"),
/// which says more than the layers around it.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The address to call a daemon listening on `listen` at: an unspecified
/// address (`0.0.0.0`, `[::]`) is reached on loopback.
fn reachable(listen: &str) -> String {
    match listen.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip = match a.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            SocketAddr::new(ip, a.port()).to_string()
        }
        _ => listen.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn a_wildcard_listen_address_is_called_on_loopback() {
        for (listen, called) in [
            ("127.0.0.1:8686", "127.0.0.1:8686"),
            ("0.0.0.0:9000", "127.0.0.1:9000"),
            ("[::]:9000", "[::1]:9000"),
            ("10.0.0.5:8686", "10.0.0.5:8686"),
            ("ops.internal:8686", "ops.internal:8686"),
        ] {
            assert_eq!(reachable(listen), called, "{listen}");
        }
    }
}
