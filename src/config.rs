//! Daemon settings: defaults, then `runbookd.yaml`, then `RUNBOOKD_*`
//! environment variables, then flags. Every key has a default, so no file is
//! needed to start from a checkout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;

use crate::cli::GlobalArgs;

/// A secret setting: its value never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The `http.proxy` URL: its password never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(pub url::Url);

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{:?}", crate::secrets::shown_url(&self.0))
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP server listens (webhooks, API, metrics).
    pub listen: String,
    /// Bearer token for `/api`; required to listen beyond loopback.
    pub api_token: Option<Redacted>,
    /// `sqlite://FILE`.
    pub database: String,
    pub runbooks: PathBuf,
    pub scripts: PathBuf,
    /// Read-only files scripts may read.
    pub data: PathBuf,
    /// Runbook tests (`runbookd test`).
    pub tests: PathBuf,
    /// Email templates (minijinja); built-in defaults cover the rest.
    pub templates: PathBuf,
    /// Where email goes; `None`: emails wait in the outbox.
    pub smtp: Option<Smtp>,
    /// Hosts every runbook may call, besides its own `http.allow`.
    pub http_allow: Vec<String>,
    /// The proxy outbound calls go through (`http.proxy`); never taken from
    /// `HTTP_PROXY` and the like.
    pub http_proxy: Option<ProxyUrl>,
    /// Zone of cron triggers that name none, and of `format()` without one.
    pub timezone: Tz,
    /// How many runs execute at once.
    pub workers: usize,
    /// YAML file of secret values, besides the environment.
    pub secrets_file: Option<PathBuf>,
    /// How long running runs may finish after SIGTERM before they are interrupted.
    pub shutdown_grace: Duration,
    /// Runs older than this are pruned (issues and runbook versions are kept).
    pub retention: Duration,
    /// The config file that was read, if any.
    pub source: Option<PathBuf>,
    /// MiB a script may hold at once, all its values together.
    pub script_memory_mib: usize,
    /// Connection limits of the HTTP server (`server:`).
    pub server: crate::http::ServerLimits,
    /// Load runbook and script files others may write (`--allow-insecure-permissions`).
    pub allow_insecure_permissions: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8686".into(),
            api_token: None,
            database: "sqlite://runbookd.db".into(),
            runbooks: "runbooks".into(),
            scripts: "scripts".into(),
            data: "data".into(),
            tests: "tests/runbooks".into(),
            templates: "templates".into(),
            smtp: None,
            http_allow: Vec::new(),
            http_proxy: None,
            timezone: Tz::UTC,
            workers: 8,
            secrets_file: None,
            shutdown_grace: Duration::from_secs(25),
            retention: Duration::from_secs(90 * 86_400),
            source: None,
            script_memory_mib: 64,
            server: crate::http::ServerLimits::default(),
            allow_insecure_permissions: false,
        }
    }
}

/// The mail server. Credentials are secret names, never values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    /// `smtp://host[:port]` (STARTTLS, port 587) or `smtps://host[:port]` (TLS, port 465).
    pub url: String,
    pub from: String,
    /// Secret name of the user name.
    pub username: Option<String>,
    /// Secret name of the password.
    pub password: Option<String>,
    /// `starttls`, `tls`, or `none` (plain text, only when asked for).
    pub tls: Option<String>,
    /// The first wait before retrying a temporary failure; it doubles each time.
    pub retry_delay: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    #[serde(default)]
    allow: Vec<String>,
    proxy: Option<String>,
}

/// `http.proxy`: an `http://` or `https://` URL of a host (and port).
fn parse_proxy(text: &str) -> Result<ProxyUrl, String> {
    url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .filter(|u| u.path() == "/" && u.query().is_none() && u.fragment().is_none())
        .map(ProxyUrl)
        .ok_or_else(|| {
            format!("http.proxy: \"{text}\" is not a proxy URL; write it as http://HOST:PORT")
        })
}

/// The file's mirror: unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<String>,
    api_token: Option<String>,
    database: Option<String>,
    /// The runbooks directory (a path, as before), or the settings of each
    /// runbook by name (a map, read by `runbook::Settings` at each load).
    runbooks: Option<serde_yaml::Value>,
    /// The runbooks directory, for a file whose `runbooks:` holds settings.
    runbooks_dir: Option<PathBuf>,
    scripts: Option<PathBuf>,
    data: Option<PathBuf>,
    tests: Option<PathBuf>,
    timezone: Option<String>,
    workers: Option<usize>,
    secrets_file: Option<PathBuf>,
    shutdown_grace: Option<String>,
    retention: Option<String>,
    templates: Option<PathBuf>,
    smtp: Option<Smtp>,
    http: Option<HttpFile>,
    server: Option<ServerFile>,
    script_memory_mib: Option<usize>,
}

/// `server:` of runbookd.yaml: limits on the HTTP server's connections.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
}

/// Every top-level key of the file, for did-you-mean hints (and the schema's test).
pub const KEYS: &[&str] = &[
    "listen",
    "api_token",
    "database",
    "runbooks",
    "runbooks_dir",
    "scripts",
    "data",
    "tests",
    "timezone",
    "workers",
    "secrets_file",
    "shutdown_grace",
    "retention",
    "templates",
    "smtp",
    "http",
    "server",
    "script_memory_mib",
];

impl Config {
    /// The sandbox limits this config asks for.
    pub fn script_limits(&self) -> crate::script::Limits {
        crate::script::Limits {
            max_memory: self.script_memory_mib * 1024 * 1024,
            ..Default::default()
        }
    }

    /// Build the config from all its layers.
    ///
    /// Fails when a named config file is missing, a file or variable holds an
    /// invalid value, or the file has an unknown key.
    pub fn load(flags: &GlobalArgs) -> Result<Config, String> {
        let mut cfg = Config::default();
        let explicit = flags
            .config
            .clone()
            .or_else(|| std::env::var_os("RUNBOOKD_CONFIG").map(PathBuf::from));
        let file = match explicit {
            Some(p) if !p.exists() => {
                return Err(format!("the config file {} does not exist", p.display()));
            }
            Some(p) => Some(p),
            None => Some(PathBuf::from("runbookd.yaml")).filter(|p| p.exists()),
        };
        if let Some(path) = file {
            cfg.apply_file(&path)?;
        }
        cfg.apply_env()?;
        if let Some(d) = &flags.database {
            cfg.database = d.clone();
        }
        if let Some(d) = &flags.runbooks {
            cfg.runbooks = d.clone();
        }
        if let Some(d) = &flags.scripts {
            cfg.scripts = d.clone();
        }
        cfg.allow_insecure_permissions = flags.allow_insecure_permissions;
        if cfg.workers == 0 {
            return Err("`workers` must be at least 1".into());
        }
        Ok(cfg)
    }

    fn apply_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
        let f: ConfigFile = if text.trim().is_empty() {
            ConfigFile::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| {
                let hint = e
                    .to_string()
                    .split("unknown field `")
                    .nth(1)
                    .and_then(|r| r.split('`').next())
                    .and_then(|w| crate::runbook::did_you_mean(w, KEYS.iter().copied()))
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                format!(
                    "{}: {}{hint}",
                    path.display(),
                    e.to_string().replace("unknown field", "unknown key")
                )
            })?
        };
        // Paths in the file are relative to the file, so a config works from anywhere.
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: PathBuf| {
            if p.is_absolute() || base.as_os_str().is_empty() {
                p
            } else {
                base.join(p)
            }
        };
        if let Some(l) = f.listen {
            self.listen = l;
        }
        if let Some(t) = f.api_token {
            self.api_token = Some(Redacted(t));
        }
        if let Some(d) = f.database {
            // A SQLite file named in the file is relative to the file, like every path in it.
            let file = d
                .strip_prefix("sqlite://")
                .or_else(|| (!d.contains("://")).then_some(d.as_str()));
            self.database = match file {
                Some(f) if !f.starts_with('/') && !base.as_os_str().is_empty() => {
                    format!("sqlite://{}", base.join(f).display())
                }
                _ => d,
            };
        }
        match (f.runbooks, f.runbooks_dir) {
            (Some(serde_yaml::Value::String(_)), Some(_)) => {
                return Err(format!(
                    "{}: the runbooks directory is given twice, as `runbooks` and `runbooks_dir`; keep `runbooks_dir` and give `runbooks` the settings of each runbook",
                    path.display()
                ));
            }
            (Some(serde_yaml::Value::String(p)), None) => self.runbooks = rel(p.into()),
            (_, Some(p)) => self.runbooks = rel(p),
            (None | Some(serde_yaml::Value::Null | serde_yaml::Value::Mapping(_)), None) => {}
            (Some(_), None) => {
                return Err(format!(
                    "{}: `runbooks` must be the runbooks directory or a map of runbook settings by name",
                    path.display()
                ));
            }
        }
        if let Some(p) = f.scripts {
            self.scripts = rel(p);
        }
        if let Some(p) = f.data {
            self.data = rel(p);
        }
        if let Some(p) = f.tests {
            self.tests = rel(p);
        }
        if let Some(p) = f.templates {
            self.templates = rel(p);
        }
        if let Some(s) = f.smtp {
            self.smtp = Some(s);
        }
        if let Some(m) = f.script_memory_mib {
            if m == 0 {
                return Err("`script_memory_mib` must be at least 1".into());
            }
            self.script_memory_mib = m;
        }
        if let Some(s) = f.server {
            self.apply_server(s)?;
        }
        if let Some(h) = f.http {
            self.http_allow = h.allow;
            self.http_proxy = h
                .proxy
                .as_deref()
                .map(parse_proxy)
                .transpose()
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some(tz) = f.timezone {
            self.timezone = parse_tz(&tz).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some(w) = f.workers {
            self.workers = w;
        }
        if let Some(p) = f.secrets_file {
            self.secrets_file = Some(rel(p));
        }
        let at = |k: &str, e: String| format!("{}: {k}: {e}", path.display());
        if let Some(d) = f.shutdown_grace {
            self.shutdown_grace =
                crate::duration::parse(&d).map_err(|e| at("shutdown_grace", e))?;
        }
        if let Some(d) = f.retention {
            self.retention = crate::duration::parse(&d).map_err(|e| at("retention", e))?;
        }
        self.source = Some(path.to_path_buf());
        Ok(())
    }

    fn apply_server(&mut self, s: ServerFile) -> Result<(), String> {
        let duration = |key: &str, v: Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(text) => crate::duration::parse(&text)
                .ok()
                .filter(|d| *d >= Duration::from_millis(100))
                .ok_or_else(|| {
                    format!("`server.{key}`: \"{text}\" is not a duration of at least 100ms")
                }),
        };
        let l = &mut self.server;
        l.header_timeout = duration("header_timeout", s.header_timeout, l.header_timeout)?;
        l.idle_timeout = duration("idle_timeout", s.idle_timeout, l.idle_timeout)?;
        if let Some(n) = s.max_connections {
            if n == 0 {
                return Err("`server.max_connections` must be at least 1".into());
            }
            l.max_connections = n;
        }
        Ok(())
    }

    fn apply_env(&mut self) -> Result<(), String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(url) = var("RUNBOOKD_SMTP_URL") {
            // Overrides the file's url (and whatever else is set here), keeping the rest.
            let base = self.smtp.take();
            self.smtp = Some(Smtp {
                url,
                from: var("RUNBOOKD_SMTP_FROM")
                    .or_else(|| base.as_ref().map(|b| b.from.clone()))
                    .unwrap_or_else(|| "runbookd@localhost".into()),
                username: base.as_ref().and_then(|b| b.username.clone()),
                password: base.as_ref().and_then(|b| b.password.clone()),
                tls: var("RUNBOOKD_SMTP_TLS").or_else(|| base.as_ref().and_then(|b| b.tls.clone())),
                retry_delay: var("RUNBOOKD_SMTP_RETRY_DELAY")
                    .or_else(|| base.as_ref().and_then(|b| b.retry_delay.clone())),
            });
        }
        if let Some(v) = var("RUNBOOKD_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = var("RUNBOOKD_API_TOKEN") {
            self.api_token = Some(Redacted(v));
        }
        if let Some(v) = var("RUNBOOKD_DATABASE") {
            self.database = v;
        }
        if let Some(v) = var("RUNBOOKD_RUNBOOKS") {
            self.runbooks = v.into();
        }
        if let Some(v) = var("RUNBOOKD_SCRIPTS") {
            self.scripts = v.into();
        }
        if let Some(v) = var("RUNBOOKD_DATA") {
            self.data = v.into();
        }
        if let Some(v) = var("RUNBOOKD_TESTS") {
            self.tests = v.into();
        }
        if let Some(v) = var("RUNBOOKD_TIMEZONE") {
            self.timezone = parse_tz(&v).map_err(|e| format!("RUNBOOKD_TIMEZONE: {e}"))?;
        }
        if let Some(v) = var("RUNBOOKD_WORKERS") {
            self.workers = v
                .parse()
                .map_err(|_| format!("RUNBOOKD_WORKERS: \"{v}\" is not a whole number"))?;
        }
        if let Some(v) = var("RUNBOOKD_SECRETS_FILE") {
            self.secrets_file = Some(v.into());
        }
        if let Some(v) = var("RUNBOOKD_SHUTDOWN_GRACE") {
            self.shutdown_grace =
                crate::duration::parse(&v).map_err(|e| format!("RUNBOOKD_SHUTDOWN_GRACE: {e}"))?;
        }
        if let Some(v) = var("RUNBOOKD_RETENTION") {
            self.retention =
                crate::duration::parse(&v).map_err(|e| format!("RUNBOOKD_RETENTION: {e}"))?;
        }
        Ok(())
    }
}

fn parse_tz(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        let hint = crate::runbook::timezone_hint(name)
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        format!("unknown timezone \"{name}\"{hint}")
    })
}
