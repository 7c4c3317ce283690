//! A real SMTP server in-process: mailin's SMTP state machine (the engine
//! of mailin-embedded) over TCP on a std thread per connection. It records
//! what it receives and can be told to refuse recipients (4xx or 5xx, one by
//! one), to drop the connection after DATA without answering, and to
//! require a login it refuses with 535 unless the credentials match. The
//! connection loop is ours only so that the drop after DATA can happen.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use mailin::response::{self, Response};
use mailin::{Action, AuthMechanism, Handler, SessionBuilder};

#[derive(Debug, Clone, Default)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Received {
    /// The value of the Message-ID header.
    pub fn message_id(&self) -> Option<&str> {
        self.data
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .map(str::trim)
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub received: Vec<Received>,
    /// Answer this many recipients with 450 before accepting.
    pub temporary_failures: u32,
    /// Answer every recipient with 550 (no such mailbox).
    pub reject: bool,
    /// Per recipient, the codes its next RCPTs get (250 once they run out).
    pub answers: HashMap<String, VecDeque<u16>>,
    /// Close this many connections right after the end of DATA without
    /// answering; the message was received all the same.
    pub drops_after_data: u32,
    /// When set, a login is required and only this user and password are
    /// accepted (535 otherwise).
    pub login: Option<(String, String)>,
    /// Each login tried: the user name, and whether it was accepted.
    pub logins: Vec<(String, bool)>,
    /// Every DATA end seen, accepted or not, and every refused recipient.
    pub attempts: u32,
    current: Option<Received>,
    /// The connection is to be dropped now, unanswered.
    drop_now: bool,
}

#[derive(Clone, Default)]
pub struct Sink(pub Arc<Mutex<State>>);

impl Sink {
    fn login(&mut self, user: &str, password: &str) -> Response {
        let mut s = self.0.lock().unwrap();
        let ok = s
            .login
            .as_ref()
            .is_some_and(|(u, p)| u == user && p == password);
        s.logins.push((user.to_string(), ok));
        if ok {
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
}

impl Handler for Sink {
    fn rcpt(&mut self, to: &str) -> Response {
        let mut s = self.0.lock().unwrap();
        let scripted = s.answers.get_mut(to).and_then(VecDeque::pop_front);
        let code = match scripted {
            Some(code) => code,
            None if s.reject => 550,
            None if s.temporary_failures > 0 => {
                s.temporary_failures -= 1;
                450
            }
            None => 250,
        };
        match code {
            250 => response::OK,
            _ => {
                s.attempts += 1;
                let text = if code >= 500 {
                    "Mailbox unavailable"
                } else {
                    "Mailbox busy, try again later"
                };
                Response::custom(code, text.into())
            }
        }
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.0.lock().unwrap().current = Some(Received {
            from: from.to_string(),
            to: to.to_vec(),
            data: String::new(),
        });
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(c) = self.0.lock().unwrap().current.as_mut() {
            c.data.push_str(&String::from_utf8_lossy(buf));
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mut s = self.0.lock().unwrap();
        s.attempts += 1;
        let msg = s.current.take().unwrap_or_default();
        s.received.push(msg);
        if s.drops_after_data > 0 {
            s.drops_after_data -= 1;
            s.drop_now = true;
        }
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.login(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.login(user, password)
    }
}

/// Serve SMTP on `listener` from background threads; returns the recorder.
pub fn serve(listener: TcpListener) -> Sink {
    let sink = Sink::default();
    let accepting = sink.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let sink = accepting.clone();
            std::thread::spawn(move || converse(stream, sink));
        }
    });
    sink
}

/// One SMTP session on `stream`, until the client quits or we drop it.
fn converse(stream: TcpStream, sink: Sink) {
    let mut builder = SessionBuilder::new("sink.test");
    if sink.0.lock().unwrap().login.is_some() {
        // Plain text is fine on 127.0.0.1 in a test; TLS would need a
        // certificate the mailer trusts.
        builder
            .enable_auth(AuthMechanism::Plain)
            .enable_auth(AuthMechanism::Login)
            .insecure_enable_plaintext_auth();
    }
    let Ok(peer) = stream.peer_addr() else { return };
    let mut session = builder.build(peer.ip(), sink.clone());
    let Ok(read) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read);
    let mut writer = stream;
    if session.greeting().write_to(&mut writer).is_err() {
        return;
    }
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
            return;
        }
        let res = session.process(&line);
        if std::mem::take(&mut sink.0.lock().unwrap().drop_now) {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        let closing = res.action == Action::Close;
        if res.action != Action::NoReply && res.write_to(&mut writer).is_err() || closing {
            return;
        }
    }
}

/// Standard base64, as SMTP's AUTH sends credentials.
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            let c = if i <= chunk.len() {
                ABC[(n >> (18 - 6 * i) & 63) as usize]
            } else {
                b'='
            };
            out.push(c as char);
        }
    }
    out
}
