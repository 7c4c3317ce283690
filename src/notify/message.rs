//! The MIME message of an outbox row, and the Message-ID chosen once for it.

use lettre::Message;
use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};

use crate::store::EmailRow;

/// A new Message-ID for a message from `sender`: `<uuid@sender's domain>`.
pub fn message_id(sender: &str) -> String {
    let domain = sender
        .parse::<Mailbox>()
        .map(|m| m.email.domain().to_string())
        .unwrap_or_else(|_| "runbookd.invalid".into());
    format!("<{}@{domain}>", uuid::Uuid::new_v4().simple())
}

/// The MIME message for an outbox row, with the row's Message-ID:
/// multipart when it has both parts.
///
/// Fails on an address that does not parse or a row without a body.
pub fn build(e: &EmailRow) -> Result<Message, String> {
    let mbox = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|err| format!("\"{a}\" is not an address: {err}"))
    };
    let mut b = Message::builder()
        .from(mbox(&e.sender)?)
        .subject(e.subject.clone())
        .message_id(Some(e.message_id.clone()));
    for t in &e.to {
        b = b.to(mbox(t)?);
    }
    for c in &e.cc {
        b = b.cc(mbox(c)?);
    }
    let built = match (&e.text, &e.html) {
        (Some(t), Some(h)) => b.multipart(MultiPart::alternative_plain_html(t.clone(), h.clone())),
        (Some(t), None) => b.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(t.clone()),
        ),
        (None, Some(h)) => b.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(h.clone()),
        ),
        (None, None) => return Err("the message has no body".into()),
    };
    built.map_err(|err| format!("the message cannot be built: {err}"))
}
