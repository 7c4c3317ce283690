//! Validation: a parsed [`RunbookSpec`] becomes a [`Runbook`], or a list of
//! problems, each tied to the place in the file it concerns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

use super::hints::did_you_mean;
use super::model::*;
use super::spec::RunbookSpec;
use super::yaml_index::{Pos, PosIndex};
use crate::script::{CompileError, CompiledScript, Compiler};

/// Where a problem is.
#[derive(Debug, Clone)]
pub enum Loc {
    /// At the key of this dotted path (`triggers.0.timezone`).
    Key(String),
    /// At the value of this dotted path.
    Value(String),
    /// At an exact place of the runbook file.
    At(Pos),
    /// In another file (a script), at a place.
    File(PathBuf, Pos),
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub loc: Loc,
    pub message: String,
    pub hint: Option<String>,
}

/// Everything validation needs besides the spec.
pub struct Ctx<'a> {
    pub text: &'a str,
    pub index: &'a PosIndex,
    pub compiler: &'a Compiler,
    pub scripts_dir: &'a Path,
    pub default_tz: Tz,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
    /// Scripts read for `file:` steps: name → source.
    pub file_scripts: BTreeMap<String, String>,
    /// A secret's value, to check it is set (a missing one fails an enabled
    /// runbook) and strong enough to sign a webhook. Never shown.
    pub secret_value: &'a (dyn Fn(&str) -> Option<String> + Send + Sync),
}

impl Ctx<'_> {
    pub fn error(&mut self, loc: Loc, message: impl Into<String>, hint: Option<String>) {
        self.problems.push(Problem {
            loc,
            message: message.into(),
            hint,
        });
    }

    pub fn warn(&mut self, loc: Loc, message: impl Into<String>) {
        self.warnings.push(Problem {
            loc,
            message: message.into(),
            hint: None,
        });
    }

    /// Parse a duration field; `None` (and a problem) when it is invalid.
    pub fn duration(&mut self, path: &str, text: &str, min: Duration) -> Option<Duration> {
        match crate::duration::parse(text) {
            Ok(d) if d < min => {
                let field = path.rsplit('.').next().unwrap_or(path);
                self.error(
                    Loc::Value(path.into()),
                    format!("`{field}` must be at least {}", crate::duration::spec(min)),
                    None,
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(Loc::Value(path.into()), e, None);
                None
            }
        }
    }

    /// One of a fixed set of words, with a did-you-mean when it is not.
    pub fn choice<T>(
        &mut self,
        path: &str,
        value: &str,
        parse: fn(&str) -> Option<T>,
        all: &[&str],
    ) -> Option<T> {
        let got = parse(value);
        if got.is_none() {
            let field = path.rsplit('.').next().unwrap_or(path);
            self.error(
                Loc::Value(path.into()),
                format!(
                    "unknown {field} \"{value}\"; expected one of {}",
                    all.join(", ")
                ),
                did_you_mean(value, all.iter().copied()),
            );
        }
        got
    }

    /// Compile a script written inline at `path`.
    pub fn compile_inline(&mut self, path: &str, source: &str) -> Option<CompiledScript> {
        match self.compiler.compile(source, path) {
            Ok(s) => Some(s),
            Err(e) => {
                let pos = self.script_pos(path, &e);
                self.error(
                    Loc::At(pos),
                    format!("script does not compile: {}", e.message),
                    None,
                );
                None
            }
        }
    }

    /// Map a place inside an inline script to the place in the file.
    fn script_pos(&self, path: &str, e: &CompileError) -> Pos {
        let start = self.index.value(path);
        let (Some(line), Some(col)) = (e.line, e.col) else {
            return start;
        };
        let key_line = self.index.key(path).line;
        let at_start = self
            .text
            .lines()
            .nth(start.line - 1)
            .and_then(|l| l.get(start.col - 1..))
            .unwrap_or("");
        if key_line < start.line {
            // A block scalar (`run: |`): the mark is where the script's text
            // begins, and every line shares its indentation.
            Pos {
                line: start.line + line - 1,
                col: start.col + col - 1,
            }
        } else if line == 1 {
            let quote = usize::from(at_start.starts_with('"') || at_start.starts_with('\''));
            Pos {
                line: start.line,
                col: start.col + quote + col - 1,
            }
        } else {
            Pos {
                line: start.line + line - 1,
                col,
            }
        }
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

pub(super) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn is_secret_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Validate a spec into a runbook. `path` is the runbook file.
///
/// Returns `None` when any problem was recorded in `ctx`.
pub fn validate(spec: RunbookSpec, path: &Path, ctx: &mut Ctx) -> Option<Runbook> {
    let name = runbook_name(&spec, path, ctx);
    let secrets = super::fields::secrets(&spec.secrets, ctx);
    if spec.enabled.unwrap_or(true) {
        for (i, s) in secrets.iter().enumerate() {
            if (ctx.secret_value)(s).is_none() {
                ctx.error(
                    Loc::Value(format!("secrets.{i}")),
                    format!("secret {s} is not set"),
                    Some(format!(
                        "set the environment variable {s} or add it to the secrets file"
                    )),
                );
            }
        }
    }
    let triggers = super::triggers::validate(&spec.triggers, &name, &secrets, ctx);
    let params = super::fields::params(&spec.params, ctx);
    if let Some(t) = triggers.iter().find(|t| !matches!(t, Trigger::Manual))
        && let Some(p) = params.iter().find(|p| p.required)
    {
        ctx.error(
            Loc::Key(format!("params.{}", p.name)),
            format!(
                "param {} is required, but its {} trigger cannot give it; give it a default",
                p.name,
                t.kind()
            ),
            None,
        );
    }
    let http_allow = super::fields::http_allow(
        spec.http
            .as_ref()
            .map(|h| h.allow.as_slice())
            .unwrap_or(&[]),
        ctx,
    );
    let http_min_interval = spec
        .http
        .as_ref()
        .and_then(|h| h.min_interval.as_deref())
        .and_then(|t| ctx.duration("http.min_interval", t, Duration::ZERO))
        .unwrap_or(Duration::ZERO);
    let concurrency = match spec.concurrency.as_deref() {
        None => Concurrency::Forbid,
        Some(v) => ctx
            .choice(
                "concurrency",
                v,
                parse_concurrency,
                &["forbid", "allow", "replace", "queue"],
            )
            .unwrap_or(Concurrency::Forbid),
    };
    let catch_up = match spec.catch_up.as_deref() {
        None => CatchUp::Latest,
        Some(v) => ctx
            .choice("catch_up", v, parse_catch_up, &["skip", "latest", "all"])
            .unwrap_or(CatchUp::Latest),
    };
    let catch_up_within = spec
        .catch_up_within
        .as_deref()
        .and_then(|t| ctx.duration("catch_up_within", t, Duration::from_secs(1)));
    let timeout = spec
        .timeout
        .as_deref()
        .and_then(|t| ctx.duration("timeout", t, Duration::from_secs(1)))
        .unwrap_or(Duration::from_secs(300));
    let retry = super::fields::retry(&spec, ctx);
    let limit = spec.limit.as_ref().and_then(|l| {
        let runs = match l.runs {
            Some(n) if n >= 1 => Some(n),
            _ => {
                ctx.error(
                    Loc::Value("limit".into()),
                    "`limit` needs `runs:` of at least 1",
                    None,
                );
                None
            }
        };
        let per = match l.per.as_deref() {
            Some(t) => ctx.duration("limit.per", t, Duration::from_secs(1)),
            None => {
                ctx.error(
                    Loc::Value("limit".into()),
                    "`limit` needs `per:`, such as `per: 1h`",
                    None,
                );
                None
            }
        };
        Some(RateLimit {
            runs: runs?,
            per: per?,
        })
    });
    let success_within = spec
        .expect
        .as_ref()
        .and_then(|e| match e.success_within.as_deref() {
            Some(t) => ctx.duration("expect.success_within", t, Duration::from_secs(60)),
            None => {
                ctx.error(
                    Loc::Value("expect".into()),
                    "`expect` needs `success_within:`, such as `26h`",
                    None,
                );
                None
            }
        });
    let steps = super::steps::steps(&spec, ctx);
    if !ctx.problems.is_empty() {
        return None;
    }
    Some(Runbook {
        name,
        description: spec.description,
        enabled: spec.enabled.unwrap_or(true),
        path: path.to_path_buf(),
        triggers,
        params,
        secrets,
        http_allow,
        http_min_interval,
        concurrency,
        catch_up,
        catch_up_within,
        timeout,
        retry,
        limit,
        success_within,
        steps,
        version: Default::default(),
        overrides: Default::default(),
    })
}

fn parse_concurrency(s: &str) -> Option<Concurrency> {
    Some(match s {
        "forbid" => Concurrency::Forbid,
        "allow" => Concurrency::Allow,
        "replace" => Concurrency::Replace,
        "queue" => Concurrency::Queue,
        _ => return None,
    })
}

fn parse_catch_up(s: &str) -> Option<CatchUp> {
    Some(match s {
        "skip" => CatchUp::Skip,
        "latest" => CatchUp::Latest,
        "all" => CatchUp::All,
        _ => return None,
    })
}

fn runbook_name(spec: &RunbookSpec, path: &Path, ctx: &mut Ctx) -> String {
    let (name, from_file) = match &spec.name {
        Some(n) => (n.clone(), false),
        None => (
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            true,
        ),
    };
    if !is_name(&name) {
        let suggestion: String = name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let hint = Some(format!(
            "did you mean \"{}\"?",
            suggestion.trim_matches('-')
        ));
        if from_file {
            ctx.error(
                Loc::At(Pos { line: 1, col: 1 }),
                format!("the file name gives the runbook name \"{name}\", which may only use a-z, 0-9 and -; rename the file or set `name:`"),
                hint,
            );
        } else {
            ctx.error(
                Loc::Value("name".into()),
                format!("runbook name \"{name}\" may only use a-z, 0-9 and - (at most 64)"),
                hint,
            );
        }
    }
    name
}
