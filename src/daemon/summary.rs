//! Printing the start-up banner (`banner.rs` renders it) and other lines
//! `runbookd serve` writes for the person who started it.

use chrono::Utc;

use super::{Parts, banner};

/// Print the banner, with what crash recovery did.
pub(super) fn print(p: &Parts, addr: &std::net::SocketAddr, recovered: crate::run::Recovered) {
    let database = crate::store::shown_url(&p.config.database);
    let facts = banner::Facts {
        addr,
        database: &database,
        runbooks_dir: &p.config.runbooks,
        recovered,
    };
    let reg = p.registry.read().expect("registry lock");
    say(&banner::render(&reg, &facts, Utc::now()));
}

/// Write to stdout; a closed stdout (a pipe whose reader went away) must not
/// take the daemon down.
pub fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}
