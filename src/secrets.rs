//! Where secret values come from (the environment, then the secrets file) and
//! how they are kept out of everything we write: [`Redactor`] masks each
//! value in every form the product writes it ([`forms`]).

mod forms;

pub use forms::forms;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Secret values by name. `Debug` never shows a value.
#[derive(Clone)]
pub struct Secrets {
    file: HashMap<String, String>,
    /// Whether the environment is looked at first (not in runbook tests).
    env: bool,
}

impl Default for Secrets {
    /// The environment only.
    fn default() -> Self {
        Secrets {
            file: HashMap::new(),
            env: true,
        }
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("from_file", &self.file.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secrets {
    /// Read the secrets file: a YAML map of NAME: value.
    ///
    /// Fails when the file cannot be read, is not such a map, or can be read
    /// by group or others (secrets files must be private: `chmod 600`).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the secrets file {}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "the secrets file {} can be read by other users (mode {:o}); run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ));
            }
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the secrets file {}: {e}", path.display()))?;
        let file: HashMap<String, String> = serde_yaml::from_str(&text).map_err(|e| {
            // The error may quote a value; keep only where it is.
            let at = e
                .location()
                .map(|l| format!(" at line {}", l.line()))
                .unwrap_or_default();
            format!(
                "the secrets file {} must be a map of NAME: \"value\" strings{at}",
                path.display()
            )
        })?;
        Ok(Secrets { file, env: true })
    }

    /// Secrets given directly (as if read from a file), e.g. by an embedding program.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Secrets {
            file: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            env: true,
        }
    }

    /// Exactly these secrets, whatever the environment holds (runbook tests).
    pub fn only<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Secrets {
            env: false,
            ..Self::from_pairs(pairs)
        }
    }

    /// The value of `name`: the environment variable first, then the file.
    pub fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .filter(|v| self.env && !v.is_empty())
            .or_else(|| self.file.get(name).cloned())
    }
}

/// Replaces every occurrence of the known secret values, in each of their
/// [`forms`], with `***`.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Every form of every value, longest first, so a form containing
    /// another is masked whole.
    values: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Redactor({} values)", self.values.len())
    }
}

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| !v.is_empty())
            .flat_map(|v| forms(&v))
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Redactor { values }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        out
    }

    /// Redact every string (and key) of a JSON value.
    pub fn redact_json(&self, v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.values.is_empty() {
            return v;
        }
        match v {
            Value::String(s) => Value::String(self.redact(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|x| self.redact_json(x)).collect()),
            Value::Object(o) => Value::Object(
                o.into_iter()
                    .map(|(k, x)| (self.redact(&k), self.redact_json(x)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// The URL as logged: its password and query values that look like
/// credentials masked.
pub fn shown_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            let secret = ["token", "key", "secret", "password", "signature", "auth"]
                .iter()
                .any(|w| lower.contains(w));
            (
                k.into_owned(),
                if secret { "***".into() } else { v.into_owned() },
            )
        })
        .collect();
    if pairs.is_empty() {
        shown.set_query(None);
    } else {
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let r = Redactor::new(["abc".to_string(), "abcdef".to_string(), String::new()]);
        assert_eq!(r.redact("x abcdef y abc"), "x *** y ***");
        let j = r.redact_json(serde_json::json!({"abc": ["abcdef", 1]}));
        assert_eq!(j, serde_json::json!({"***": ["***", 1]}));
    }
}
