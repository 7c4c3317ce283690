//! Files people write by hand (runbook YAML, Rhai scripts) turned into text:
//! one rule for what such a file may hold, with the place of the first byte
//! that breaks it.
//!
//! A UTF-8 byte-order mark (Windows editors write one) is dropped. A file that
//! is not UTF-8, or holds a NUL byte (a YAML parser reads NUL as the end of the
//! stream, so the rest of the file would silently vanish), is refused.

/// Why a file is not text, and where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotText {
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
}

const BOM: &[u8] = b"\xef\xbb\xbf";

/// Decode a hand-written file; `kind` names what it should be ("runbooks", "scripts").
///
/// Fails when the bytes are not UTF-8 or hold a NUL byte, at the first such byte.
pub fn decode(mut bytes: Vec<u8>, kind: &str) -> Result<String, NotText> {
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        not_text(
            e.as_bytes(),
            at,
            "the file is not UTF-8 text",
            "save it as UTF-8",
        )
    })?;
    if let Some(at) = text.bytes().position(|b| b == 0) {
        return Err(not_text(
            text.as_bytes(),
            at,
            &format!("the file holds a NUL byte; {kind} are text"),
            "remove it; write \\0 in a string if you mean one",
        ));
    }
    Ok(text)
}

fn not_text(bytes: &[u8], at: usize, message: &str, hint: &str) -> NotText {
    let before = &bytes[..at];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    // Columns count characters, as editors show them.
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    NotText {
        line,
        col,
        message: message.to_string(),
        hint: Some(hint.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn drops_a_byte_order_mark_and_places_bad_bytes() {
        assert_eq!(
            decode(b"\xef\xbb\xbfa: 1\n".to_vec(), "runbooks").unwrap(),
            "a: 1\n"
        );
        let e = decode(b"a: 1\nb: \xc3\xa9\0".to_vec(), "scripts").unwrap_err();
        assert_eq!((e.line, e.col), (2, 5));
        assert_eq!(e.message, "the file holds a NUL byte; scripts are text");
        let e = decode(b"x\nname: caf\xe9\n".to_vec(), "runbooks").unwrap_err();
        assert_eq!(
            (e.line, e.col, e.message.as_str()),
            (2, 10, "the file is not UTF-8 text")
        );
    }
}
