//! Reading runbook files: every good runbook and every error, never the first
//! error alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use super::admit::Candidates;
use super::hints::did_you_mean;
use super::model::{Runbook, Version};
use super::settings::Settings;
use super::spec::{RunbookSpec, TOP_LEVEL_KEYS};
use super::trust;
use super::validate::{Ctx, Loc, Problem, validate};
use super::yaml_index::{self, PosIndex};
use crate::script::Sandbox;

/// Runbook files are small; anything larger is refused before parsing.
pub const MAX_RUNBOOK_BYTES: u64 = 1024 * 1024;

/// A problem with a runbook, at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// The outcome of loading: what can run, and everything that is wrong.
#[derive(Debug, Default)]
pub struct Loaded {
    pub runbooks: Vec<Arc<Runbook>>,
    pub errors: Vec<LoadError>,
    pub warnings: Vec<LoadError>,
    /// Files that failed, with the runbook name they would have had.
    pub failed: Vec<(PathBuf, String)>,
}

/// One file's outcome: the runbook and its warnings, or (the runbook's name
/// when it could be read, every error, the warnings).
pub type FileResult =
    Result<(Runbook, Vec<LoadError>), (Option<String>, Vec<LoadError>, Vec<LoadError>)>;

/// A secret's value by name, as the loader sees it.
pub type SecretLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct Loader {
    pub sandbox: Arc<Sandbox>,
    pub scripts_dir: PathBuf,
    pub default_tz: Tz,
    /// A secret's value: a missing one fails an enabled runbook, a short one
    /// its webhook. Only checked, never shown.
    pub secret_value: SecretLookup,
    /// Load files and directories others may write (`--allow-insecure-permissions`).
    pub allow_insecure_permissions: bool,
    /// The config file whose `runbooks:` settings apply, read again at each
    /// load; `None` loads the runbooks as their files say (runbook tests).
    pub settings: Option<PathBuf>,
}

impl Loader {
    /// Load every `*.yaml`/`*.yml` of the given directories and files, with
    /// no runbook active yet: when two files claim a name, the first by path wins.
    pub fn load(&self, paths: &[PathBuf]) -> Loaded {
        self.read(paths).admit(&HashMap::new())
    }

    /// Read and validate every runbook file of the given directories and
    /// files, with the deployment's settings of each applied;
    /// [`Candidates::admit`] then decides which files a name belongs to.
    pub fn read(&self, paths: &[PathBuf]) -> Candidates {
        let mut out = Candidates::default();
        let mut found = Vec::new();
        for p in paths {
            match runbook_files(p) {
                Ok(files) => {
                    if p.is_dir()
                        && let Err(e) = self.trusted(p)
                    {
                        out.errors.push(e);
                        continue;
                    }
                    found.extend(files.into_iter().map(|f| (p.clone(), f)));
                }
                Err(message) => out.errors.push(at(p, 1, 1, message, None)),
            }
        }
        let settings = match self.settings.as_deref().map(Settings::read) {
            None => Settings::default(),
            Some(Ok(s)) => s,
            Some(Err(errors)) => {
                // Which runbook a broken entry meant is unknown: none loads, so
                // each keeps the version it ran before.
                out.errors.extend(errors);
                let fail = |f: &PathBuf| Err((Some(stem(f)), Vec::new(), Vec::new()));
                out.files = found.iter().map(|(_, f)| (f.clone(), fail(f))).collect();
                return out;
            }
        };
        for (dir, file) in found {
            let result = trust::inside(&dir, &file)
                .map_err(|m| (None, vec![at(&file, 1, 1, m, None)], Vec::new()))
                .and_then(|()| self.load_file_with(&file, &settings));
            out.files.push((file, result));
        }
        // Only a whole directory tells which names exist.
        if paths.iter().any(|p| p.is_dir()) {
            let known: Vec<String> = out
                .files
                .iter()
                .map(|(f, r)| match r {
                    Ok((rb, _)) => rb.name.clone(),
                    Err((name, ..)) => name.clone().unwrap_or_else(|| stem(f)),
                })
                .collect();
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            out.trailing.extend(settings.unknown_names(&known));
        }
        out
    }

    /// Load one file as its own YAML says, without the deployment's settings.
    ///
    /// Fails as [`Loader::load_file_with`].
    pub fn load_file(&self, path: &Path) -> FileResult {
        self.load_file_with(path, &Settings::default())
    }

    /// Load one file, with the settings `runbookd.yaml` gives its runbook.
    ///
    /// Fails with every problem found in it or in its settings (and the
    /// runbook's name when it could be read), never only the first.
    pub fn load_file_with(&self, path: &Path, settings: &Settings) -> FileResult {
        let fail = |e: LoadError| (None, vec![e], Vec::new());
        self.trusted(path).map_err(fail)?;
        let text = read_text(path).map_err(fail)?;
        self.load_text(path, text, settings)
    }

    /// Load a runbook the database kept (`yaml`, the text `path` had when
    /// it last fired), with today's settings and scripts.
    ///
    /// Fails as [`Loader::load_file_with`], also when the settings are broken.
    pub fn load_kept(&self, path: &Path, yaml: String) -> FileResult {
        let settings = match self.settings.as_deref().map(Settings::read) {
            None => Settings::default(),
            Some(Ok(s)) => s,
            Some(Err(errors)) => return Err((None, errors, Vec::new())),
        };
        self.load_text(path, yaml, &settings)
    }

    fn load_text(&self, path: &Path, text: String, settings: &Settings) -> FileResult {
        let fail = |e: LoadError| (None, vec![e], Vec::new());
        let index = yaml_index::index(&text)
            .map_err(|e| fail(at(path, e.pos.line, e.pos.col, e.message, None)))?;
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Err(fail(at(
                path,
                1,
                1,
                "the file is empty; a runbook needs at least `steps:` or `run:`".into(),
                None,
            )));
        }
        let mut spec: RunbookSpec =
            serde_yaml::from_str(&text).map_err(|e| fail(serde_error(path, &e)))?;
        let name = spec.name.clone();
        let applied = settings
            .apply(name.as_deref().unwrap_or(&stem(path)), &mut spec)
            .map_err(|errors| (name.clone(), errors, Vec::new()))?;
        let compiler = self.sandbox.compiler(&self.scripts_dir);
        let mut ctx = Ctx {
            text: &text,
            index: &index,
            compiler: &compiler,
            scripts_dir: &self.scripts_dir,
            default_tz: applied.timezone.unwrap_or(self.default_tz),
            problems: Vec::new(),
            warnings: Vec::new(),
            file_scripts: BTreeMap::new(),
            secret_value: &*self.secret_value,
        };
        let validated = validate(spec, path, &mut ctx);
        let warnings = ctx
            .warnings
            .iter()
            .map(|p| locate(path, &index, p))
            .collect();
        if !ctx.problems.is_empty() {
            let mut errors: Vec<LoadError> = ctx
                .problems
                .iter()
                .map(|p| locate(path, &index, p))
                .collect();
            errors.sort_by(|a, b| (&a.path, a.line, a.col).cmp(&(&b.path, b.line, b.col)));
            return Err((name, errors, warnings));
        }
        let mut rb = validated.expect("no problems means a runbook");
        let mut scripts = compiler.scripts();
        scripts.extend(std::mem::take(&mut ctx.file_scripts));
        let untrusted: Vec<LoadError> = std::iter::once(self.scripts_dir.clone())
            .filter(|_| !scripts.is_empty())
            .chain(scripts.keys().map(|s| self.scripts_dir.join(s)))
            .filter_map(|p| self.trusted(&p).err())
            .collect();
        if !untrusted.is_empty() {
            return Err((name, untrusted, warnings));
        }
        rb.version = Arc::new(version(text, scripts));
        rb.overrides = applied.overrides;
        Ok((rb, warnings))
    }
}

impl Loader {
    /// Refuse a file or directory others may change, unless allowed.
    fn trusted(&self, path: &Path) -> Result<(), LoadError> {
        if self.allow_insecure_permissions {
            return Ok(());
        }
        trust::owned_safely(path).map_err(|(m, h)| at(path, 1, 1, m, Some(h)))
    }
}

/// The runbook name a file gives when it sets no `name:`.
fn stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn at(
    path: &Path,
    line: usize,
    col: usize,
    message: String,
    hint: Option<String>,
) -> LoadError {
    LoadError {
        path: path.to_path_buf(),
        line,
        col,
        message,
        hint,
    }
}

fn locate(path: &Path, index: &PosIndex, p: &Problem) -> LoadError {
    let (file, pos) = match &p.loc {
        Loc::Key(k) => (path.to_path_buf(), index.key(k)),
        Loc::Value(k) => (path.to_path_buf(), index.value(k)),
        Loc::At(pos) => (path.to_path_buf(), *pos),
        Loc::File(f, pos) => (f.clone(), *pos),
    };
    LoadError {
        path: file,
        line: pos.line,
        col: pos.col,
        message: p.message.clone(),
        hint: p.hint.clone(),
    }
}

fn version(yaml: String, scripts: BTreeMap<String, String>) -> Version {
    let mut h = Sha256::new();
    h.update(yaml.as_bytes());
    for (name, source) in &scripts {
        h.update([0]);
        h.update(name.as_bytes());
        h.update([0]);
        h.update(source.as_bytes());
    }
    Version {
        hash: hex::encode(h.finalize()),
        yaml,
        scripts,
    }
}

fn runbook_files(p: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    if meta.is_file() {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(p)
        .map_err(|e| format!("cannot read directory {}: {e}", p.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .filter(|f| {
            !f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

fn read_text(path: &Path) -> Result<String, LoadError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| at(path, 1, 1, format!("cannot read the file: {e}"), None))?;
    if meta.len() > MAX_RUNBOOK_BYTES {
        return Err(at(
            path,
            1,
            1,
            format!(
                "the file is {} bytes; runbooks are limited to 1 MiB",
                meta.len()
            ),
            Some("move data into data/ and code into scripts/".into()),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| at(path, 1, 1, format!("cannot read the file: {e}"), None))?;
    crate::text::decode(bytes, "runbooks").map_err(|e| at(path, e.line, e.col, e.message, e.hint))
}

/// Turn a serde error into `path:line:col: message`, with a did-you-mean for
/// unknown keys and values.
fn serde_error(path: &Path, e: &serde_yaml::Error) -> LoadError {
    let (line, col) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let full = e.to_string();
    let message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full.clone(),
    };
    let hint = unknown_word(&message).and_then(|(word, candidates)| {
        let candidates: Vec<&str> = if candidates.is_empty() {
            TOP_LEVEL_KEYS.to_vec()
        } else {
            candidates.iter().map(String::as_str).collect()
        };
        did_you_mean(&word, candidates.iter().copied())
    });
    let message = message.replace("unknown field", "unknown key");
    LoadError {
        path: path.to_path_buf(),
        line,
        col,
        message,
        hint,
    }
}

/// From "unknown field `x`, expected one of `a`, `b`", the word and the candidates.
fn unknown_word(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message
        .split("unknown field `")
        .nth(1)
        .or_else(|| message.split("unknown variant `").nth(1))?;
    let word = rest.split('`').next()?.to_string();
    let candidates = rest
        .split('`')
        .skip(2)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((word, candidates))
}

#[cfg(test)]
mod tests {
    use super::unknown_word;

    #[test]
    fn reads_unknown_field_messages() {
        let (w, c) = unknown_word(
            "triggers[0]: unknown field `timezon`, expected one of `cron`, `timezone`",
        )
        .unwrap();
        assert_eq!(w, "timezon");
        assert_eq!(c, ["cron", "timezone"]);
    }
}
