//! A real SMTP server in-process (mailin-embedded) that records what it
//! receives and can be told to answer 4xx or 5xx.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use mailin_embedded::response::{self, Response};
use mailin_embedded::{Handler, Server};

#[derive(Debug, Clone, Default)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct State {
    pub received: Vec<Received>,
    /// Answer this many recipients with 450 before accepting.
    pub temporary_failures: u32,
    /// Answer every recipient with 550 (no such mailbox).
    pub reject: bool,
    /// Every DATA end seen, accepted or not.
    pub attempts: u32,
    current: Option<Received>,
}

#[derive(Clone, Default)]
pub struct Sink(pub Arc<Mutex<State>>);

impl Handler for Sink {
    fn rcpt(&mut self, _to: &str) -> Response {
        let mut s = self.0.lock().unwrap();
        if s.reject {
            s.attempts += 1;
            return response::NO_MAILBOX;
        }
        if s.temporary_failures > 0 {
            s.temporary_failures -= 1;
            s.attempts += 1;
            return Response::custom(450, "Mailbox busy, try again later".into());
        }
        response::OK
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
        response::OK
    }
}

/// Serve SMTP on `listener` from a background thread; returns the recorder.
pub fn serve(listener: TcpListener) -> Sink {
    let sink = Sink::default();
    let mut server = Server::new(sink.clone());
    server.with_name("sink.test").with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    sink
}
