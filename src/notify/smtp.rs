//! One SMTP conversation for one email, held through lettre's connection
//! (`AsyncSmtpConnection`): lettre's transport answers for a message as a
//! whole, and the outbox needs each recipient's answer. This module owns
//! connecting with the configured TLS and login, and turning what the
//! server said into one [`Reply`] per recipient tried. It never decides
//! what to do next; `outcome` does.

use std::collections::BTreeMap;
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::Error;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;

use crate::config::Smtp;
use crate::secrets::Secrets;

/// Connecting (TCP, TLS, greeting) may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// What the server made of one recipient in one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// It accepted the message for this recipient.
    Accepted(String),
    /// Refused for now (4xx), or the server could not be reached.
    Temporary(String),
    /// Refused for good (5xx).
    Permanent(String),
    /// The connection was lost after the message was handed over: the
    /// server may or may not have it.
    Lost(String),
}

/// How our login went.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Login {
    /// No credentials are configured, or the server was not reached.
    #[default]
    NotTried,
    Accepted,
    /// The server refused it (5xx to AUTH, e.g. 535); nobody was tried.
    Refused(String),
}

/// A conversation's result: the login, and each tried recipient's reply.
#[derive(Debug)]
pub struct Conversation {
    pub login: Login,
    pub replies: BTreeMap<String, Reply>,
}

/// The mail server as configured (`smtp:`), credentials included.
pub struct Server {
    host: String,
    port: u16,
    tls: Tls,
    /// Read from the secrets at start; lettre's `Debug` masks the password.
    credentials: Option<Credentials>,
    hello: ClientId,
}

impl Server {
    /// The server `smtp` names.
    ///
    /// Fails on an unreadable URL, an unknown `tls` mode or a missing credential.
    pub fn new(smtp: &Smtp, secrets: &Secrets) -> Result<Self, String> {
        let url =
            url::Url::parse(&smtp.url).map_err(|e| format!("smtp.url \"{}\": {e}", smtp.url))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("smtp.url \"{}\" has no host", smtp.url))?
            .to_string();
        let mode = smtp.tls.clone().unwrap_or_else(|| {
            let implicit = url.scheme() == "smtps";
            (if implicit { "tls" } else { "starttls" }).into()
        });
        let port = url.port().unwrap_or(if mode == "tls" { 465 } else { 587 });
        let params =
            || TlsParameters::new(host.clone()).map_err(|e| format!("smtp: TLS for {host}: {e}"));
        let tls = match mode.as_str() {
            "starttls" => Tls::Required(params()?),
            "tls" => Tls::Wrapper(params()?),
            "none" => Tls::None,
            other => {
                return Err(format!(
                    "smtp.tls \"{other}\": expected starttls, tls or none"
                ));
            }
        };
        Ok(Server {
            host,
            port,
            tls,
            credentials: credentials(smtp, secrets)?,
            hello: ClientId::default(),
        })
    }

    /// Offer `message` (its bytes, headers included) from `from` to
    /// `recipients` (each with the name the outbox knows it by), within
    /// `limit` for the whole conversation. Never fails: what went wrong is
    /// in the replies.
    pub async fn deliver(
        &self,
        from: &Address,
        recipients: &[(String, Address)],
        message: &[u8],
        limit: Duration,
    ) -> Conversation {
        let mut talk = Talk::default();
        let done = tokio::time::timeout(limit, self.converse(&mut talk, from, recipients, message));
        if done.await.is_err() {
            talk.cut(recipients, "the mail server did not answer in time");
        }
        Conversation {
            login: talk.login,
            replies: talk.replies,
        }
    }

    async fn converse(
        &self,
        talk: &mut Talk,
        from: &Address,
        recipients: &[(String, Address)],
        message: &[u8],
    ) {
        let mut conn = match self.open(talk).await {
            Ok(conn) => conn,
            Err(reply) => return talk.everyone(recipients, reply),
        };
        let mail = Mail::new(Some(from.clone()), mail_options(&conn, recipients, message));
        if let Err(e) = conn.command(mail).await {
            conn.abort().await;
            return talk.everyone(recipients, refused(&e));
        }
        for (name, address) in recipients {
            match conn.command(Rcpt::new(address.clone(), vec![])).await {
                Ok(_) => talk.accepted.push(name.clone()),
                Err(e) => talk.reply(name, refused(&e)),
            }
        }
        if talk.accepted.is_empty() {
            let _ = conn.quit().await;
            return;
        }
        if let Err(e) = conn.command(Data).await {
            conn.abort().await;
            return talk.settle_accepted(refused(&e));
        }
        talk.handed_over = true;
        let answer = match conn.message(message).await {
            Ok(r) => Reply::Accepted(said(&r)),
            Err(e) if e.is_transient() || e.is_permanent() => refused(&e),
            Err(e) => Reply::Lost(format!("the connection was lost after the message: {e}")),
        };
        talk.settle_accepted(answer);
        let _ = conn.quit().await;
    }

    /// Connect, secure and log in as configured; the reply every recipient
    /// gets when that fails (the login's refusal is kept in `talk`).
    async fn open(&self, talk: &mut Talk) -> Result<AsyncSmtpConnection, Reply> {
        let wrapper = match &self.tls {
            Tls::Wrapper(p) => Some(p.clone()),
            _ => None,
        };
        let server = (self.host.as_str(), self.port);
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            server,
            Some(CONNECT_TIMEOUT),
            &self.hello,
            wrapper,
            None,
        )
        .await
        .map_err(|e| refused(&e))?;
        if let Tls::Required(p) = &self.tls {
            conn.starttls(p.clone(), &self.hello)
                .await
                .map_err(|e| refused(&e))?;
        }
        let Some(credentials) = &self.credentials else {
            return Ok(conn);
        };
        match conn.auth(DEFAULT_MECHANISMS, credentials).await {
            Ok(_) => {
                talk.login = Login::Accepted;
                Ok(conn)
            }
            Err(e) => {
                conn.abort().await;
                if e.is_permanent() {
                    talk.login = Login::Refused(e.to_string());
                }
                Err(Reply::Temporary(format!("login: {e}")))
            }
        }
    }
}

fn credentials(smtp: &Smtp, secrets: &Secrets) -> Result<Option<Credentials>, String> {
    let (Some(u), Some(p)) = (&smtp.username, &smtp.password) else {
        return Ok(None);
    };
    let user = secrets
        .get(u)
        .ok_or_else(|| format!("smtp.username: secret {u} is not set"))?;
    let pass = secrets
        .get(p)
        .ok_or_else(|| format!("smtp.password: secret {p} is not set"))?;
    Ok(Some(Credentials::new(user, pass)))
}

/// What lettre's own `send` asks of MAIL FROM for non-ASCII addresses
/// and bodies, when the server offers it.
fn mail_options(
    conn: &AsyncSmtpConnection,
    recipients: &[(String, Address)],
    message: &[u8],
) -> Vec<MailParameter> {
    let info = conn.server_info();
    let mut options = vec![];
    if recipients
        .iter()
        .any(|(_, a)| !AsRef::<str>::as_ref(a).is_ascii())
        && info.supports_feature(Extension::SmtpUtfEight)
    {
        options.push(MailParameter::SmtpUtfEight);
    }
    if !message.is_ascii() && info.supports_feature(Extension::EightBitMime) {
        options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    options
}

/// A server's answer (or our failure to get one) as a reply.
fn refused(e: &Error) -> Reply {
    if e.is_permanent() {
        Reply::Permanent(e.to_string())
    } else {
        Reply::Temporary(e.to_string())
    }
}

fn said(r: &Response) -> String {
    format!("{} {}", r.code(), r.message().collect::<Vec<_>>().join(" "))
}

/// What a conversation has learnt so far: it survives a timeout that drops
/// the conversation half-way.
#[derive(Default)]
struct Talk {
    login: Login,
    replies: BTreeMap<String, Reply>,
    /// Recipients the server accepted at RCPT, waiting for the DATA answer.
    accepted: Vec<String>,
    /// The message has been handed over (DATA was accepted).
    handed_over: bool,
}

impl Talk {
    fn reply(&mut self, name: &str, reply: Reply) {
        self.replies.insert(name.to_string(), reply);
    }

    fn everyone(&mut self, recipients: &[(String, Address)], reply: Reply) {
        for (name, _) in recipients {
            self.reply(name, reply.clone());
        }
    }

    fn settle_accepted(&mut self, reply: Reply) {
        for name in std::mem::take(&mut self.accepted) {
            self.reply(&name, reply.clone());
        }
    }

    /// The conversation stopped half-way: those accepted after the
    /// message was handed over may have it; the others did not get it.
    fn cut(&mut self, recipients: &[(String, Address)], why: &str) {
        for (name, _) in recipients {
            if self.replies.contains_key(name) {
                continue;
            }
            let reply = if self.handed_over && self.accepted.contains(name) {
                Reply::Lost(why.to_string())
            } else {
                Reply::Temporary(why.to_string())
            };
            self.reply(name, reply);
        }
    }
}
