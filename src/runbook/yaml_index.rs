//! A first pass over a runbook's YAML events, before serde sees the file.
//!
//! It does two jobs. It records where every key and value sits (`path:line:col`
//! for validation errors, which serde cannot give), and it refuses documents
//! that are hostile or ambiguous: explicit tags, duplicate keys, nesting deeper than
//! [`MAX_DEPTH`], more than [`MAX_ALIASES`] aliases (alias bombs), several
//! documents in one file. The parser is pulled event by event, so a deeply
//! nested file cannot exhaust the stack.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// Deeper than any sensible runbook (a step's params map inside a list inside a map...).
pub const MAX_DEPTH: usize = 32;
/// How many nodes a file may hold once its aliases are expanded. Runbooks hold
/// hundreds; an alias bomb holds billions.
pub const MAX_EXPANDED_NODES: u64 = 100_000;

/// A place in the file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// Positions by dotted path: `triggers.0.timezone`, `params.limit.default`.
#[derive(Debug, Default)]
pub struct PosIndex {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
    /// Map keys in file order, by the path of their map (`params` → names).
    order: HashMap<String, Vec<String>>,
}

impl PosIndex {
    /// Where the value at `path` starts, else the nearest enclosing value.
    pub fn value(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => {
                    return self
                        .values
                        .get("")
                        .copied()
                        .unwrap_or(Pos { line: 1, col: 1 });
                }
            }
        }
    }

    /// Where the key naming `path` sits (for "unknown key" style errors), else the value.
    pub fn key(&self, path: &str) -> Pos {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }

    /// The keys of the map at `path`, in file order.
    pub fn keys_in_order(&self, path: &str) -> &[String] {
        self.order.get(path).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// A refusal of the first pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureError {
    pub pos: Pos,
    pub message: String,
}

enum Frame {
    Map {
        path: String,
        /// Expanded nodes before this container began, to size its anchor.
        start: u64,
        anchor: usize,
        /// The key whose value comes next; `None` while a key is expected.
        key: Option<String>,
        seen: HashMap<String, Pos>,
    },
    Seq {
        path: String,
        next: usize,
        start: u64,
        anchor: usize,
    },
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else {
        format!("{path}.{seg}")
    }
}

/// Index `text` and check its structure.
///
/// Fails on the first structural problem: a YAML syntax error, a tag, a duplicate key,
/// too deep a nesting, too many aliases, a non-scalar key or a second document.
pub fn index(text: &str) -> Result<PosIndex, StructureError> {
    let mut parser = Parser::new_from_str(text);
    let mut idx = PosIndex::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut documents = 0usize;
    // Nodes seen so far with aliases expanded, and each anchor's expanded size.
    let mut expanded: u64 = 0;
    let mut anchors: HashMap<usize, u64> = HashMap::new();
    let bomb = |pos| StructureError {
        pos,
        message: format!(
            "aliases expand this file past {MAX_EXPANDED_NODES} values; a runbook may not expand aliases this much"
        ),
    };
    loop {
        let (event, mark) = parser.next_token().map_err(|e| StructureError {
            pos: Pos::from(*e.marker()),
            message: if e.info().contains("recursion limit") {
                format!("nesting deeper than {MAX_DEPTH} levels")
            } else {
                format!("invalid YAML: {}", e.info())
            },
        })?;
        let pos = Pos::from(mark);
        refuse_tag(text, &event, pos)?;
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(StructureError {
                        pos,
                        message: "a runbook file holds one YAML document; found a second `---`"
                            .into(),
                    });
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(Frame::Map { start, anchor, .. } | Frame::Seq { start, anchor, .. }) =
                    stack.pop()
                    && anchor > 0
                {
                    anchors.insert(anchor, expanded - start);
                }
            }
            Event::Alias(id) => {
                let Some(size) = anchors.get(&id) else {
                    return Err(StructureError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    });
                };
                expanded += size;
                if expanded > MAX_EXPANDED_NODES {
                    return Err(bomb(pos));
                }
                node(&mut stack, &mut idx, pos, None, false)?;
            }
            Event::Scalar(value, _, anchor, _) => {
                expanded += 1;
                if anchor > 0 {
                    anchors.insert(anchor, 1);
                }
                node(&mut stack, &mut idx, pos, Some(value), false)?;
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                expanded += 1;
                if expanded > MAX_EXPANDED_NODES {
                    return Err(bomb(pos));
                }
                let is_map = matches!(event, Event::MappingStart(..));
                let path = node(&mut stack, &mut idx, pos, None, true)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(StructureError {
                        pos,
                        message: format!("nesting deeper than {MAX_DEPTH} levels"),
                    });
                }
                stack.push(if is_map {
                    idx.order.entry(path.clone()).or_default();
                    Frame::Map {
                        path,
                        start: expanded,
                        anchor,
                        key: None,
                        seen: HashMap::new(),
                    }
                } else {
                    Frame::Seq {
                        path,
                        next: 0,
                        start: expanded,
                        anchor,
                    }
                });
            }
            _ => {}
        }
    }
    Ok(idx)
}

/// Refuse an explicit tag (`!Secret`, `!!binary`, `!!python/object:…`): serde
/// would drop it silently, so the file would not mean what its author wrote.
fn refuse_tag(text: &str, event: &Event, pos: Pos) -> Result<(), StructureError> {
    let tag = match event {
        Event::Scalar(_, _, _, tag)
        | Event::MappingStart(_, tag)
        | Event::SequenceStart(_, tag) => tag.as_ref(),
        _ => None,
    };
    let Some(tag) = tag else { return Ok(()) };
    let written = match tag.handle.as_str() {
        "tag:yaml.org,2002:" => format!("!!{}", tag.suffix),
        handle => format!("{handle}{}", tag.suffix),
    };
    // The event is placed at its value; point at the tag before it on the line.
    let line = text.lines().nth(pos.line - 1).unwrap_or("");
    let before: String = line.chars().take(pos.col - 1).collect();
    let pos = match before.rfind(&written) {
        Some(i) => Pos {
            line: pos.line,
            col: before[..i].chars().count() + 1,
        },
        None => pos,
    };
    Err(StructureError {
        pos,
        message: format!(
            "YAML tags are not allowed (found `{written}`); write the value without a tag"
        ),
    })
}

/// Account for one node: a key, or a value in a map or a sequence. Returns the
/// path of the node when it is a value.
fn node(
    stack: &mut [Frame],
    idx: &mut PosIndex,
    pos: Pos,
    scalar: Option<String>,
    container: bool,
) -> Result<String, StructureError> {
    let Some(top) = stack.last_mut() else {
        idx.values.insert(String::new(), pos);
        return Ok(String::new());
    };
    match top {
        Frame::Seq { path, next, .. } => {
            let p = join(path, &next.to_string());
            *next += 1;
            idx.values.insert(p.clone(), pos);
            Ok(p)
        }
        Frame::Map {
            path, key, seen, ..
        } => match key.take() {
            Some(k) => {
                let p = join(path, &k);
                idx.values.insert(p.clone(), pos);
                Ok(p)
            }
            None => {
                let Some(k) = scalar.filter(|_| !container) else {
                    return Err(StructureError {
                        pos,
                        message: "map keys must be plain words, not lists, maps or aliases".into(),
                    });
                };
                if let Some(first) = seen.get(&k) {
                    return Err(StructureError {
                        pos,
                        message: format!("duplicate key `{k}` (first at line {})", first.line),
                    });
                }
                if seen.is_empty() {
                    // A block map's own mark is unreliable; its first key is
                    // where a person sees it start.
                    idx.values.insert(path.clone(), pos);
                }
                seen.insert(k.clone(), pos);
                let p = join(path, &k);
                idx.keys.insert(p, pos);
                idx.order.entry(path.clone()).or_default().push(k.clone());
                *key = Some(k);
                Ok(String::new())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_positions_of_keys_and_values() {
        let idx =
            index("name: x\ntriggers:\n  - cron: \"0 9 * * *\"\n    timezone: Europe/Paris\n")
                .unwrap();
        assert_eq!(idx.value("name"), Pos { line: 1, col: 7 });
        assert_eq!(idx.key("triggers.0.timezone"), Pos { line: 4, col: 5 });
        assert_eq!(idx.value("triggers.0.timezone"), Pos { line: 4, col: 15 });
        assert_eq!(idx.value("triggers.0.nothing"), Pos { line: 3, col: 5 });
        assert_eq!(idx.keys_in_order(""), ["name", "triggers"]);
    }

    #[test]
    fn refuses_duplicate_keys_anywhere() {
        let err = index("params:\n  a: {type: string}\n  a: {type: integer}\n").unwrap_err();
        assert_eq!(err.pos, Pos { line: 3, col: 3 });
        assert_eq!(err.message, "duplicate key `a` (first at line 2)");
    }

    #[test]
    fn refuses_deep_nesting_without_recursing() {
        let text = "[".repeat(100_000);
        let err = index(&text).unwrap_err();
        assert!(
            err.message.contains("nesting deeper than 32"),
            "{}",
            err.message
        );
    }

    #[test]
    fn refuses_alias_bombs() {
        let mut text = String::from("a: &a [x, x]\n");
        for i in 0..20 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            };
            let refs = vec![format!("*{prev}"); 6].join(", ");
            text.push_str(&format!("b{i}: &b{i} [{refs}]\n"));
        }
        let err = index(&text).unwrap_err();
        assert!(
            err.message
                .contains("aliases expand this file past 100000 values"),
            "{}",
            err.message
        );
    }
}
