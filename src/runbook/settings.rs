//! Per-deployment settings of runbooks: the `runbooks:` map of
//! `runbookd.yaml`, so shipped runbooks are configured, never edited.
//!
//! ```yaml
//! runbooks:
//!   stale-tickets:
//!     enabled: true
//!     params: { subdomain: acme }
//!     timezone: Europe/Paris        # cron triggers that name no zone
//!     http: { allow: [acme.zendesk.com] }
//! ```
//!
//! The file is read again at every load of the runbooks (start, reload,
//! SIGHUP), and the settings are applied to a runbook's spec *before* it is
//! validated: the model the scheduler, the webhooks and every run see already
//! holds the effective values. Each setting is checked against the runbook it
//! names, and every problem points at its `path:line:col` in the config file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde_yaml::Value;

use super::hints::{did_you_mean, timezone as timezone_hint};
use super::load::LoadError;
use super::model::{Overrides, ParamType};
use super::spec::{HttpSpec, RunbookSpec};
use super::yaml_index::{self, Pos, PosIndex};

/// The keys a runbook's entry may have.
pub(crate) const KEYS: &[&str] = &["enabled", "params", "timezone", "http"];

/// The `runbooks:` map of one config file.
#[derive(Debug, Default)]
pub struct Settings {
    /// The config file, for error locations and origins.
    source: PathBuf,
    index: PosIndex,
    /// By runbook name.
    entries: BTreeMap<String, Entry>,
    /// Entries of the wrong shape, by runbook name: that runbook fails to load.
    broken: BTreeMap<String, Vec<LoadError>>,
}

/// One runbook's settings, shaped but not yet checked against the runbook.
#[derive(Debug, Default)]
struct Entry {
    enabled: Option<bool>,
    params: Vec<(String, Value)>,
    timezone: Option<String>,
    http_allow: Vec<String>,
}

/// What applying a runbook's settings gives the validation of its spec.
#[derive(Debug, Default)]
pub struct Applied {
    /// The zone of cron triggers that name none, when the settings give one.
    pub timezone: Option<Tz>,
    pub overrides: Overrides,
}

impl Settings {
    /// Read the `runbooks:` map of the config file at `path`. A `runbooks:`
    /// that is a path (the runbooks directory) or absent gives no settings.
    /// An entry of the wrong shape (not a map, an unknown key, a value of the
    /// wrong kind) is kept as its problems: [`Settings::apply`] gives them.
    ///
    /// Fails when the file cannot be read or is not valid YAML.
    pub fn read(path: &Path) -> Result<Settings, Vec<LoadError>> {
        let err =
            |pos: Pos, message: String, hint: Option<String>| vec![error(path, pos, message, hint)];
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(
                Pos { line: 1, col: 1 },
                format!("cannot read the config file: {e}"),
                None,
            )
        })?;
        let index = yaml_index::index(&text).map_err(|e| err(e.pos, e.message, None))?;
        let value: Value = serde_yaml::from_str(&text).unwrap_or(Value::Null);
        let mut settings = Settings {
            source: path.to_path_buf(),
            index,
            entries: BTreeMap::new(),
            broken: BTreeMap::new(),
        };
        let Some(Value::Mapping(map)) = value.get("runbooks") else {
            return Ok(settings);
        };
        for (name, body) in map {
            let name = name.as_str().unwrap_or_default().to_string();
            match settings.entry(&name, body) {
                Ok(entry) => settings.entries.insert(name, entry).map(|_| ()),
                Err(e) => settings.broken.insert(name, e).map(|_| ()),
            };
        }
        Ok(settings)
    }

    fn entry(&self, name: &str, body: &Value) -> Result<Entry, Vec<LoadError>> {
        let base = format!("runbooks.{name}");
        let mut errors = Vec::new();
        let mut entry = Entry::default();
        let Value::Mapping(map) = body else {
            return Err(vec![self.at_value(
                &base,
                format!(
                    "the settings of runbook {name} must be a map of {}",
                    KEYS.join(", ")
                ),
                None,
            )]);
        };
        for (key, v) in map {
            let key = key.as_str().unwrap_or_default();
            let path = format!("{base}.{key}");
            let wrong = |what: &str| self.at_value(&path, format!("`{key}` must be {what}"), None);
            match (key, v) {
                ("enabled", Value::Bool(b)) => entry.enabled = Some(*b),
                ("enabled", _) => errors.push(wrong("true or false")),
                ("timezone", Value::String(s)) => entry.timezone = Some(s.clone()),
                ("timezone", _) => errors.push(wrong("an IANA zone name, such as Europe/Paris")),
                ("params", Value::Mapping(m)) => {
                    entry.params = m
                        .iter()
                        .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.clone()))
                        .collect();
                }
                ("params", _) => errors.push(wrong("a map of param names to values")),
                ("http", Value::Mapping(m)) => match self.allow_list(&path, m) {
                    Ok(hosts) => entry.http_allow = hosts,
                    Err(e) => errors.push(e),
                },
                ("http", _) => errors.push(wrong("a map with `allow:`")),
                _ => errors.push(self.at_key(
                    &path,
                    format!(
                        "unknown key `{key}` in the settings of runbook {name}, expected one of {}",
                        KEYS.join(", ")
                    ),
                    did_you_mean(key, KEYS.iter().copied()),
                )),
            }
        }
        if errors.is_empty() {
            Ok(entry)
        } else {
            Err(errors)
        }
    }

    fn allow_list(&self, path: &str, m: &serde_yaml::Mapping) -> Result<Vec<String>, LoadError> {
        let mut hosts = Vec::new();
        for (k, v) in m {
            let key = k.as_str().unwrap_or_default();
            let at = format!("{path}.{key}");
            if key != "allow" {
                return Err(self.at_key(
                    &at,
                    format!("unknown key `{key}` under `http`, expected `allow`"),
                    did_you_mean(key, ["allow"]),
                ));
            }
            let list = v.as_sequence().filter(|s| s.iter().all(Value::is_string));
            let Some(list) = list else {
                return Err(self.at_value(
                    &at,
                    "`http.allow` must be a list of host names".into(),
                    None,
                ));
            };
            hosts.extend(list.iter().filter_map(|h| h.as_str().map(str::to_string)));
        }
        Ok(hosts)
    }

    /// Apply the settings of runbook `name` to its spec, after checking them
    /// against it: every param named exists and has a value of its type, the
    /// zone exists, the hosts are host names.
    ///
    /// Fails with every problem found, each at its place in the config file.
    pub fn apply(&self, name: &str, spec: &mut RunbookSpec) -> Result<Applied, Vec<LoadError>> {
        if let Some(problems) = self.broken.get(name) {
            return Err(problems.clone());
        }
        let Some(entry) = self.entries.get(name) else {
            return Ok(Applied::default());
        };
        let base = format!("runbooks.{name}");
        let mut errors = Vec::new();
        let mut applied = Applied::default();
        let origin = |path: &str| self.origin(self.index.value(path));
        if let Some(enabled) = entry.enabled {
            spec.enabled = Some(enabled);
            applied.overrides.enabled = Some(origin(&format!("{base}.enabled")));
        }
        if let Some(tz) = &entry.timezone {
            match tz.parse::<Tz>() {
                Ok(zone) => {
                    applied.timezone = Some(zone);
                    applied.overrides.timezone = Some(origin(&format!("{base}.timezone")));
                    applied.overrides.zoned_triggers = (spec.triggers.iter().enumerate())
                        .filter(|(_, t)| t.fields.cron.is_some() && t.fields.timezone.is_none())
                        .map(|(i, _)| i)
                        .collect();
                }
                Err(_) => errors.push(self.at_value(
                    &format!("{base}.timezone"),
                    format!("unknown timezone \"{tz}\""),
                    timezone_hint(tz),
                )),
            }
        }
        for (param, value) in &entry.params {
            let path = format!("{base}.params.{param}");
            match self.check_param(name, spec, param, value, &path) {
                Ok(()) => {
                    let p = spec.params.get_mut(param).expect("checked");
                    p.default = Some(value.clone());
                    // A value given here is a default: the param is never missing.
                    p.required = None;
                    applied
                        .overrides
                        .params
                        .insert(param.clone(), origin(&path));
                }
                Err(e) => errors.push(e),
            }
        }
        for (i, host) in entry.http_allow.iter().enumerate() {
            let path = format!("{base}.http.allow.{i}");
            if let Some((message, hint)) = super::fields::host_problem(host) {
                errors.push(self.at_value(&path, message, hint));
                continue;
            }
            let http = spec.http.get_or_insert_with(HttpSpec::default);
            if !http.allow.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                http.allow.push(host.clone());
                applied
                    .overrides
                    .http_allow
                    .insert(host.to_ascii_lowercase(), origin(&path));
            }
        }
        if errors.is_empty() {
            Ok(applied)
        } else {
            errors.sort_by_key(|e| (e.line, e.col));
            Err(errors)
        }
    }

    fn check_param(
        &self,
        name: &str,
        spec: &RunbookSpec,
        param: &str,
        value: &Value,
        path: &str,
    ) -> Result<(), LoadError> {
        let Some(def) = spec.params.get(param) else {
            let known: Vec<&str> = spec.params.keys().map(String::as_str).collect();
            let list = if known.is_empty() {
                "it has no params".to_string()
            } else {
                format!("its params are {}", known.join(", "))
            };
            return Err(self.at_key(
                path,
                format!("runbook {name} has no param `{param}`; {list}"),
                did_you_mean(param, known.iter().copied()),
            ));
        };
        // A runbook whose param has no valid type fails its own validation.
        let Some(kind) = def.kind.as_deref().and_then(ParamType::parse) else {
            return Ok(());
        };
        super::fields::typed_default(kind, value)
            .map(|_| ())
            .map_err(|found| {
                self.at_value(
                    path,
                    format!(
                        "param {param} of runbook {name} is {}, but its type is {}",
                        found,
                        kind.as_str()
                    ),
                    None,
                )
            })
    }

    /// Names given settings that no loaded file has: a typo, or a runbook removed.
    pub fn unknown_names(&self, known: &[&str]) -> Vec<LoadError> {
        (self.entries.keys().chain(self.broken.keys()))
            .filter(|n| !known.contains(&n.as_str()))
            .map(|n| {
                let hint = did_you_mean(n, known.iter().copied()).unwrap_or_else(|| {
                    "settings only apply to runbooks of the runbooks directory".into()
                });
                self.at_key(
                    &format!("runbooks.{n}"),
                    format!("there is no runbook named {n}"),
                    Some(hint),
                )
            })
            .collect()
    }

    fn origin(&self, pos: Pos) -> String {
        format!("{}:{}:{}", self.source.display(), pos.line, pos.col)
    }

    fn at_key(&self, path: &str, message: String, hint: Option<String>) -> LoadError {
        error(&self.source, self.index.key(path), message, hint)
    }

    fn at_value(&self, path: &str, message: String, hint: Option<String>) -> LoadError {
        error(&self.source, self.index.value(path), message, hint)
    }
}

fn error(path: &Path, pos: Pos, message: String, hint: Option<String>) -> LoadError {
    LoadError {
        path: path.to_path_buf(),
        line: pos.line,
        col: pos.col,
        message,
        hint,
    }
}
