//! The configuration: built-in defaults < TOML file < `VIGIL_<SECTION>__<KEY>` environment
//! (with `DATABASE_URL` standing for `postgres.url`), loaded, typed and validated once at
//! start-up. Everything after start-up reads [`Config`] and never re-checks it.
//!
//! Every error names the key it is about (`postgres.saturation_warn: must be between 0 and 1,
//! got 1.5`), and where an environment variable set the key, that variable too.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::secret::Secret;

/// The port vigil listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9476";

/// Where the configuration comes from. Tests build one by hand, so they never touch the real
/// environment.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--config FILE` or `VIGIL_CONFIG`.
    pub file: Option<PathBuf>,
    /// The process environment (only `VIGIL_*` and `DATABASE_URL` are read).
    pub env: Vec<(String, String)>,
}

impl Sources {
    /// The real environment, with `flag_file` (from `--config`) winning over `VIGIL_CONFIG`.
    pub fn from_process(flag_file: Option<PathBuf>) -> Self {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = flag_file.or_else(|| {
            env.iter()
                .find(|(k, v)| k == "VIGIL_CONFIG" && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        });
        Sources { file, env }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration file: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}:{column}: invalid TOML: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// One port for probes, metrics and diag.
    pub listen: SocketAddr,
    pub defaults: Defaults,
    pub shutdown: Shutdown,
    pub diag: Diag,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<Postgres>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Gateway>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<System>,
    #[serde(rename = "upstream", skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
}

/// `[defaults]`: what every check section inherits unless it says otherwise.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Time between the starts of two runs of a check.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A run that takes longer fails with "timed out after …".
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Consecutive failed runs before a check reports fail.
    pub failure_threshold: u32,
    /// Consecutive passing runs before a failed check recovers.
    pub success_threshold: u32,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            failure_threshold: 2,
            success_threshold: 1,
        }
    }
}

/// The timing and weight of one check, after inheritance from `[defaults]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckSettings {
    #[serde(with = "duration")]
    pub interval: Duration,
    #[serde(with = "duration")]
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    /// Whether a fail of this check fails `/readyz`.
    pub critical: bool,
}

/// `[shutdown]`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    /// After SIGTERM, `/readyz` answers 503 while everything else still serves this long.
    #[serde(with = "duration")]
    pub drain: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            drain: Duration::from_secs(5),
        }
    }
}

/// `[diag]`: who may read `/diag` and the reasons in `/readyz` from outside the pod.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Diag {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// `[postgres]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    #[serde(skip_deserializing, flatten)]
    pub settings: CheckSettings,
    /// The connection URL (with its password); from `url`, `url_file` or `DATABASE_URL`.
    #[serde(default)]
    pub url: Option<Secret<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// Server connections in use / usable `max_connections` at which the check warns.
    #[serde(default = "default_saturation_warn")]
    pub saturation_warn: f64,
    #[serde(default = "default_saturation_fail")]
    pub saturation_fail: f64,
    /// Queries running longer than this are counted and shown.
    #[serde(default = "default_long_query", with = "duration")]
    pub long_query: Duration,
    /// Connections in the agent's own pool (one more is kept open beside it).
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
}

/// `[gateway]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    #[serde(skip_deserializing, flatten)]
    pub settings: CheckSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<HttpUrl>,
    /// Scraped for the gateway's own DB pool and served traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<HttpUrl>,
    #[serde(default)]
    pub pool_metrics: PoolPreset,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_in_use_metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_max_metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_waiting_metric: Option<String>,
    #[serde(default = "default_saturation_warn")]
    pub pool_saturation_warn: f64,
    #[serde(default = "default_saturation_fail")]
    pub pool_saturation_fail: f64,
    /// The gateway's request counter, with a `status` label.
    #[serde(default = "default_requests_metric")]
    pub requests_metric: String,
    /// The gateway's request duration histogram.
    #[serde(default = "default_duration_metric")]
    pub duration_metric: String,
    /// 5xx / all over `window` at which the check warns (the runbook's 5%).
    #[serde(default = "default_error_ratio_warn")]
    pub error_ratio_warn: f64,
    /// Set it to let the error ratio fail readiness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio_fail: Option<f64>,
    /// p95 of served requests over `window` at which the check warns (the runbook's 2 s).
    #[serde(default = "default_latency_p95_warn", with = "duration")]
    pub latency_p95_warn: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub latency_p95_fail: Option<Duration>,
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
}

/// Which metric names carry the gateway's DB pool figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolPreset {
    /// `connection_pool_in_use` / `_max` / `_waiting`.
    #[default]
    Generic,
    /// `hikaricp_connections_active` / `_max` / `_pending`.
    Hikaricp,
    /// `go_sql_in_use_connections` / `go_sql_max_open_connections` / `go_sql_wait_count_total`.
    GoSql,
}

/// `[jwt]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    #[serde(skip_deserializing, flatten)]
    pub settings: CheckSettings,
    #[serde(default)]
    pub algorithm: JwtAlgorithm,
    /// Re-read on every run, so that a Secret rotation is seen within one interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The name of the environment variable holding the secret (not the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate_url: Option<HttpUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<HttpUrl>,
}

/// The JWT signing algorithm the gateway uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    #[default]
    HS256,
    HS384,
    HS512,
    RS256,
    ES256,
}

impl JwtAlgorithm {
    fn uses_shared_secret(self) -> bool {
        matches!(self, JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512)
    }
}

/// `[system]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    #[serde(skip_deserializing, flatten)]
    pub settings: CheckSettings,
    /// `false` turns the check off (it runs by default).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Share of the container's CPU limit (of the host's cores without one) that warns.
    #[serde(default = "default_cpu_warn")]
    pub cpu_warn: f64,
    /// Share of the container's memory limit that warns.
    #[serde(default = "default_memory_warn")]
    pub memory_warn: f64,
    /// Where the cgroup filesystem is mounted.
    #[serde(default = "default_cgroup_root")]
    pub cgroup_root: PathBuf,
}

/// One `[[upstream]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    #[serde(skip_deserializing, flatten)]
    pub settings: CheckSettings,
    pub name: String,
    pub url: HttpUrl,
    #[serde(default = "default_method")]
    pub method: String,
    /// Header values may carry credentials, so they are printed redacted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret<String>>,
    #[serde(default)]
    pub expect_status: ExpectStatus,
    #[serde(default = "default_latency_warn", with = "duration")]
    pub latency_warn: Duration,
    #[serde(default = "default_latency_fail", with = "duration")]
    pub latency_fail: Duration,
    /// The span the latency percentiles cover.
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
    /// A PEM file of extra CA certificates for https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Which HTTP statuses count as up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectStatus {
    /// A class such as `2xx`: the hundreds digit.
    Class(u16),
    List(Vec<u16>),
}

impl Default for ExpectStatus {
    fn default() -> Self {
        ExpectStatus::Class(2)
    }
}

impl ExpectStatus {
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            ExpectStatus::Class(class) => status / 100 == *class,
            ExpectStatus::List(list) => list.contains(&status),
        }
    }
}

/// An absolute `http` or `https` URL, checked at load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: http::Uri = text.parse().map_err(|e| format!("not a URL ({e}): {text:?}"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(format!("must be an http:// or https:// URL, got {text:?}")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("must name a host, got {text:?}"));
        }
        // A URL is shown in reasons, /diag and logs: credentials in it would be too. Not echoed.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err("must not carry credentials (user:password@): they would show in reasons and /diag (upstreams take them in `headers`)".to_owned());
        }
        Ok(HttpUrl(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HttpUrl::parse(&text).map_err(de::Error::custom)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde's own message quotes the value (`invalid type: integer `12345678``): not here.
        T::deserialize(deserializer)
            .map(Secret::new)
            .map_err(|_| de::Error::custom("must be a string (the value is not shown: it is a secret)"))
    }
}

impl Serialize for ExpectStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ExpectStatus::Class(class) => serializer.serialize_str(&format!("{class}xx")),
            ExpectStatus::List(list) => list.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for ExpectStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Class(String),
            List(Vec<u16>),
        }
        let expected = "\"1xx\" to \"5xx\" or a list of status codes such as [200, 204]";
        match Raw::deserialize(deserializer).map_err(|_| de::Error::custom(format!("expected {expected}")))? {
            Raw::Class(text) => match text.as_bytes() {
                [digit @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Ok(ExpectStatus::Class(u16::from(digit - b'0'))),
                _ => Err(de::Error::custom(format!("expected {expected}, got {text:?}"))),
            },
            Raw::List(list) if list.is_empty() => Err(de::Error::custom("must list at least one status code")),
            Raw::List(list) => match list.iter().find(|code| !(100..=599).contains(*code)) {
                Some(code) => Err(de::Error::custom(format!("{code} is not an HTTP status code"))),
                None => Ok(ExpectStatus::List(list)),
            },
        }
    }
}

fn yes() -> bool {
    true
}
fn default_saturation_warn() -> f64 {
    0.80
}
fn default_saturation_fail() -> f64 {
    0.95
}
fn default_long_query() -> Duration {
    Duration::from_secs(30)
}
fn default_pool_size() -> u32 {
    2
}
fn default_requests_metric() -> String {
    "http_requests_total".to_owned()
}
fn default_duration_metric() -> String {
    "http_request_duration_seconds".to_owned()
}
fn default_error_ratio_warn() -> f64 {
    0.05
}
fn default_latency_p95_warn() -> Duration {
    Duration::from_secs(2)
}
fn default_window() -> Duration {
    Duration::from_secs(300)
}
fn default_cpu_warn() -> f64 {
    0.80
}
fn default_memory_warn() -> f64 {
    0.90
}
fn default_cgroup_root() -> PathBuf {
    PathBuf::from("/sys/fs/cgroup")
}
fn default_method() -> String {
    "GET".to_owned()
}
fn default_latency_warn() -> Duration {
    Duration::from_secs(1)
}
fn default_latency_fail() -> Duration {
    Duration::from_secs(2)
}

/// The per-check keys every section accepts; absent ones come from `[defaults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonKeys {
    #[serde(default, with = "opt_duration")]
    interval: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    timeout: Option<Duration>,
    failure_threshold: Option<u32>,
    success_threshold: Option<u32>,
    critical: Option<bool>,
}

const COMMON_KEYS: [&str; 5] = [
    "interval",
    "timeout",
    "failure_threshold",
    "success_threshold",
    "critical",
];

/// Loads and validates the configuration.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    let mut root = match &sources.file {
        Some(path) => read_toml(path)?,
        None => toml::Table::new(),
    };
    let mut loader = Loader::default();
    loader.overlay_env(&mut root, &sources.env)?;
    loader.resolve(root)
}

fn read_toml(path: &Path) -> Result<toml::Table, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    text.parse::<toml::Table>().map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |span| line_column(&text, span.start));
        ConfigError::Syntax {
            path: shown,
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Carries, through resolution, which keys the environment set, so that errors can say so.
#[derive(Default)]
struct Loader {
    /// `postgres.saturation_warn` → `VIGIL_POSTGRES__SATURATION_WARN`.
    env_origin: HashMap<String, String>,
}

impl Loader {
    fn invalid(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        let key = match self.env_origin.get(key) {
            Some(var) => format!("{key} (from {var})"),
            None => key.to_owned(),
        };
        ConfigError::Invalid {
            key,
            message: message.to_string(),
        }
    }

    /// Applies `VIGIL_<SECTION>__<KEY>`, `VIGIL_LISTEN` and `DATABASE_URL` over the file.
    fn overlay_env(&mut self, root: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
        let mut vars: Vec<&(String, String)> = env.iter().collect();
        vars.sort();
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix("VIGIL_") else {
                continue;
            };
            let path: Vec<String> = if rest == "LISTEN" {
                vec!["listen".to_owned()]
            } else if let Some((section, key)) = rest.split_once("__") {
                if section.is_empty() || key.is_empty() || key.contains("__") {
                    return Err(ConfigError::Invalid {
                        key: name.clone(),
                        message: "expected VIGIL_<SECTION>__<KEY>, such as VIGIL_POSTGRES__SATURATION_WARN".to_owned(),
                    });
                }
                vec![section.to_ascii_lowercase(), key.to_ascii_lowercase()]
            } else {
                // VIGIL_CONFIG, VIGIL_LOG_FORMAT: read elsewhere, not configuration keys.
                continue;
            };
            let dotted = path.join(".");
            let table = match path.as_slice() {
                [_] => &mut *root,
                [section, _] => {
                    let entry = root
                        .entry(section.clone())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    match entry {
                        toml::Value::Table(table) => table,
                        _ => {
                            return Err(ConfigError::Invalid {
                                key: name.clone(),
                                message: format!("{section} is not a section that environment variables can set"),
                            });
                        }
                    }
                }
                _ => unreachable!("paths have one or two parts"),
            };
            // Secrets stay strings as given: read as TOML, a numeric token would be refused
            // with a message quoting it.
            let value = match SECRET_KEYS.contains(&dotted.as_str()) {
                true => toml::Value::String(raw.clone()),
                false => env_value(raw),
            };
            table.insert(path[path.len() - 1].clone(), value);
            self.env_origin.insert(dotted, name.clone());
        }

        let database_url = env.iter().find(|(k, v)| k == "DATABASE_URL" && !v.is_empty());
        if let Some((_, url)) = database_url {
            let entry = root
                .entry("postgres")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(postgres) = entry
                && !postgres.contains_key("url")
                && !postgres.contains_key("url_file")
            {
                postgres.insert("url".to_owned(), toml::Value::String(url.clone()));
                self.env_origin
                    .insert("postgres.url".to_owned(), "DATABASE_URL".to_owned());
            }
        }
        Ok(())
    }

    fn resolve(&self, mut root: toml::Table) -> Result<Config, ConfigError> {
        let listen = match root.remove("listen") {
            None => DEFAULT_LISTEN.parse().map_err(|e| self.invalid("listen", e))?,
            Some(toml::Value::String(text)) => text.parse().map_err(|_| {
                self.invalid(
                    "listen",
                    format!("expected an address such as 0.0.0.0:9476, got {text:?}"),
                )
            })?,
            Some(other) => {
                return Err(self.invalid(
                    "listen",
                    format!("expected a string such as \"0.0.0.0:9476\", got {other}"),
                ));
            }
        };
        let defaults: Defaults = self.table_or_default(&mut root, "defaults")?;
        self.validate_timing(
            "defaults",
            defaults.interval,
            defaults.timeout,
            defaults.failure_threshold,
            defaults.success_threshold,
        )?;
        let shutdown: Shutdown = self.table_or_default(&mut root, "shutdown")?;
        if shutdown.drain > Duration::from_secs(600) {
            return Err(self.invalid(
                "shutdown.drain",
                format!("must be at most 10m, got {}", crate::fmt::duration(shutdown.drain)),
            ));
        }
        let mut diag: Diag = self.table_or_default(&mut root, "diag")?;
        self.resolve_diag(&mut diag)?;

        let postgres = self
            .section::<Postgres>(&mut root, "postgres", &defaults, true)?
            .map(|p| self.resolve_postgres(p))
            .transpose()?;
        let gateway = self
            .section::<Gateway>(&mut root, "gateway", &defaults, true)?
            .map(|g| self.validate_gateway(g))
            .transpose()?;
        let jwt = self
            .section::<Jwt>(&mut root, "jwt", &defaults, true)?
            .map(|j| self.validate_jwt(j))
            .transpose()?;
        let system = match root.contains_key("system") {
            true => self.section::<System>(&mut root, "system", &defaults, false)?,
            false => Some(self.parse_section(toml::Table::new(), "system", &defaults, false)?),
        };
        let system = system
            .map(|s| self.validate_system(s))
            .transpose()?
            .filter(|s| s.enabled);
        let upstreams = self.upstreams(&mut root, &defaults)?;

        if let Some(key) = root.keys().next() {
            return Err(self.invalid(
                key,
                "unknown key; expected one of listen, defaults, shutdown, diag, postgres, gateway, jwt, system, upstream",
            ));
        }
        Ok(Config {
            listen,
            defaults,
            shutdown,
            diag,
            postgres,
            gateway,
            jwt,
            system,
            upstreams,
        })
    }

    fn table_or_default<T: DeserializeOwned + Default>(
        &self,
        root: &mut toml::Table,
        key: &str,
    ) -> Result<T, ConfigError> {
        match root.remove(key) {
            None => Ok(T::default()),
            Some(toml::Value::Table(table)) => self.deserialize(table, key),
            Some(_) => Err(self.invalid(key, "expected a table, such as [".to_owned() + key + "]")),
        }
    }

    /// Deserializes `table` (at `prefix`) into `T`, naming the exact key of any error.
    fn deserialize<T: DeserializeOwned>(&self, table: toml::Table, prefix: &str) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let inner = e.path().to_string();
            let message = e.into_inner().message().trim().to_owned();
            // serde's "unknown field `x`, expected one of …": the path already names `x`.
            let message = match message.starts_with("unknown field") {
                true => format!("unknown key; {}", expected_part(&message)),
                false => message,
            };
            let key = join(prefix, &inner);
            self.invalid(&key, message.trim_end_matches('.'))
        })
    }

    /// A check section: its common keys inherit from `[defaults]`, the rest is `T`.
    fn section<T: DeserializeOwned + HasSettings>(
        &self,
        root: &mut toml::Table,
        key: &str,
        defaults: &Defaults,
        critical: bool,
    ) -> Result<Option<T>, ConfigError> {
        match root.remove(key) {
            None => Ok(None),
            Some(toml::Value::Table(table)) => self.parse_section(table, key, defaults, critical).map(Some),
            Some(_) => Err(self.invalid(key, format!("expected a table, such as [{key}]"))),
        }
    }

    fn parse_section<T: DeserializeOwned + HasSettings>(
        &self,
        mut table: toml::Table,
        prefix: &str,
        defaults: &Defaults,
        critical: bool,
    ) -> Result<T, ConfigError> {
        let mut common = toml::Table::new();
        for key in COMMON_KEYS {
            if let Some(value) = table.remove(key) {
                common.insert(key.to_owned(), value);
            }
        }
        let common: CommonKeys = self.deserialize(common, prefix)?;
        let mut section: T = self.deserialize(table, prefix)?;
        let settings = CheckSettings {
            interval: common.interval.unwrap_or(defaults.interval),
            timeout: common.timeout.unwrap_or(defaults.timeout),
            failure_threshold: common.failure_threshold.unwrap_or(defaults.failure_threshold),
            success_threshold: common.success_threshold.unwrap_or(defaults.success_threshold),
            critical: common.critical.unwrap_or(critical),
        };
        self.validate_timing(
            prefix,
            settings.interval,
            settings.timeout,
            settings.failure_threshold,
            settings.success_threshold,
        )?;
        *section.settings_mut() = settings;
        Ok(section)
    }

    fn validate_timing(
        &self,
        prefix: &str,
        interval: Duration,
        timeout: Duration,
        failure_threshold: u32,
        success_threshold: u32,
    ) -> Result<(), ConfigError> {
        let key = |name: &str| format!("{prefix}.{name}");
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&interval) {
            return Err(self.invalid(
                &key("interval"),
                format!("must be between 100ms and 1h, got {}", crate::fmt::duration(interval)),
            ));
        }
        if timeout < Duration::from_millis(10) {
            return Err(self.invalid(
                &key("timeout"),
                format!("must be at least 10ms, got {}", crate::fmt::duration(timeout)),
            ));
        }
        if timeout > interval {
            return Err(self.invalid(
                &key("timeout"),
                format!(
                    "must not exceed the interval ({}), got {}",
                    crate::fmt::duration(interval),
                    crate::fmt::duration(timeout)
                ),
            ));
        }
        for (name, value) in [
            ("failure_threshold", failure_threshold),
            ("success_threshold", success_threshold),
        ] {
            if !(1..=100).contains(&value) {
                return Err(self.invalid(&key(name), format!("must be between 1 and 100, got {value}")));
            }
        }
        Ok(())
    }

    fn ratio(&self, key: &str, value: f64) -> Result<(), ConfigError> {
        if value > 0.0 && value <= 1.0 {
            Ok(())
        } else {
            Err(self.invalid(key, format!("must be between 0 and 1, got {value}")))
        }
    }

    fn warn_below_fail(&self, prefix: &str, warn: (&str, f64), fail: (&str, f64)) -> Result<(), ConfigError> {
        self.ratio(&format!("{prefix}.{}", warn.0), warn.1)?;
        self.ratio(&format!("{prefix}.{}", fail.0), fail.1)?;
        if warn.1 >= fail.1 {
            return Err(self.invalid(
                &format!("{prefix}.{}", warn.0),
                format!("must be below {} ({}), got {}", fail.0, fail.1, warn.1),
            ));
        }
        Ok(())
    }

    fn resolve_diag(&self, diag: &mut Diag) -> Result<(), ConfigError> {
        if diag.token.is_some() && diag.token_file.is_some() {
            return Err(self.invalid("diag.token", "set either token or token_file, not both"));
        }
        if let Some(path) = &diag.token_file {
            diag.token = Some(self.read_secret_file("diag.token_file", path)?);
        }
        if diag.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            return Err(self.invalid("diag.token", "must not be empty"));
        }
        Ok(())
    }

    fn read_secret_file(&self, key: &str, path: &Path) -> Result<Secret<String>, ConfigError> {
        crate::secret::read_file(path).map_err(|e| self.invalid(key, e.to_string()))
    }

    fn resolve_postgres(&self, mut postgres: Postgres) -> Result<Postgres, ConfigError> {
        match (&postgres.url, &postgres.url_file) {
            (Some(_), Some(_)) => return Err(self.invalid("postgres.url", "set either url or url_file, not both")),
            (None, None) => {
                return Err(self.invalid(
                    "postgres.url",
                    "required: set url, url_file or the DATABASE_URL environment variable",
                ));
            }
            (None, Some(path)) => postgres.url = Some(self.read_secret_file("postgres.url_file", path)?),
            (Some(_), None) => {}
        }
        let key = if postgres.url_file.is_some() {
            "postgres.url_file"
        } else {
            "postgres.url"
        };
        let url = postgres.url.as_ref().map(|u| u.expose().as_str()).unwrap_or_default();
        // The URL holds the password: the message shows its scheme at most.
        let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let keyword_form = !url.contains("://") && url.contains('=');
        if !scheme_ok && !keyword_form {
            return Err(self.invalid(
                key,
                "must be a postgres:// or postgresql:// URL (or key=value connection string)",
            ));
        }
        self.warn_below_fail(
            "postgres",
            ("saturation_warn", postgres.saturation_warn),
            ("saturation_fail", postgres.saturation_fail),
        )?;
        if postgres.long_query < Duration::from_secs(1) {
            return Err(self.invalid(
                "postgres.long_query",
                format!("must be at least 1s, got {}", crate::fmt::duration(postgres.long_query)),
            ));
        }
        if !(1..=16).contains(&postgres.pool_size) {
            return Err(self.invalid(
                "postgres.pool_size",
                format!("must be between 1 and 16, got {}", postgres.pool_size),
            ));
        }
        Ok(postgres)
    }

    fn validate_gateway(&self, gateway: Gateway) -> Result<Gateway, ConfigError> {
        if gateway.health_url.is_none() && gateway.metrics_url.is_none() {
            return Err(self.invalid("gateway.health_url", "required: set health_url, metrics_url or both"));
        }
        self.warn_below_fail(
            "gateway",
            ("pool_saturation_warn", gateway.pool_saturation_warn),
            ("pool_saturation_fail", gateway.pool_saturation_fail),
        )?;
        self.ratio("gateway.error_ratio_warn", gateway.error_ratio_warn)?;
        if let Some(fail) = gateway.error_ratio_fail {
            self.warn_below_fail(
                "gateway",
                ("error_ratio_warn", gateway.error_ratio_warn),
                ("error_ratio_fail", fail),
            )?;
        }
        if let Some(fail) = gateway.latency_p95_fail
            && fail <= gateway.latency_p95_warn
        {
            return Err(self.invalid(
                "gateway.latency_p95_fail",
                format!(
                    "must exceed latency_p95_warn ({}), got {}",
                    crate::fmt::duration(gateway.latency_p95_warn),
                    crate::fmt::duration(fail)
                ),
            ));
        }
        for (key, name) in [
            ("gateway.pool_in_use_metric", &gateway.pool_in_use_metric),
            ("gateway.pool_max_metric", &gateway.pool_max_metric),
            ("gateway.pool_waiting_metric", &gateway.pool_waiting_metric),
        ] {
            if let Some(name) = name {
                self.metric_name(key, name)?;
            }
        }
        self.metric_name("gateway.requests_metric", &gateway.requests_metric)?;
        self.metric_name("gateway.duration_metric", &gateway.duration_metric)?;
        self.window("gateway.window", gateway.window, gateway.settings.interval)?;
        Ok(gateway)
    }

    fn metric_name(&self, key: &str, name: &str) -> Result<(), ConfigError> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
        if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            Ok(())
        } else {
            Err(self.invalid(key, format!("not a Prometheus metric name: {name:?}")))
        }
    }

    fn window(&self, key: &str, window: Duration, interval: Duration) -> Result<(), ConfigError> {
        if window < interval || window > Duration::from_secs(24 * 3600) {
            return Err(self.invalid(
                key,
                format!(
                    "must be between the interval ({}) and 24h, got {}",
                    crate::fmt::duration(interval),
                    crate::fmt::duration(window)
                ),
            ));
        }
        Ok(())
    }

    fn validate_jwt(&self, jwt: Jwt) -> Result<Jwt, ConfigError> {
        if jwt.algorithm.uses_shared_secret() {
            match (&jwt.secret_file, &jwt.secret_env) {
                (Some(_), Some(_)) => {
                    return Err(self.invalid("jwt.secret_file", "set either secret_file or secret_env, not both"));
                }
                (None, None) => {
                    return Err(self.invalid(
                        "jwt.secret_file",
                        format!("required for {:?}: set secret_file or secret_env", jwt.algorithm),
                    ));
                }
                _ => {}
            }
        } else if jwt.jwks_url.is_none() {
            return Err(self.invalid("jwt.jwks_url", format!("required for {:?}", jwt.algorithm)));
        } else if jwt.validate_url.is_some() {
            // The probe tokens are signed with the shared secret; vigil holds no private key.
            return Err(self.invalid(
                "jwt.validate_url",
                format!(
                    "needs HS256, HS384 or HS512 (vigil signs its probe tokens with the shared secret), got {:?}",
                    jwt.algorithm
                ),
            ));
        }
        if let Some(name) = &jwt.secret_env
            && (name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(self.invalid(
                "jwt.secret_env",
                format!("must be an environment variable name, got {name:?}"),
            ));
        }
        Ok(jwt)
    }

    fn validate_system(&self, system: System) -> Result<System, ConfigError> {
        self.ratio("system.cpu_warn", system.cpu_warn)?;
        self.ratio("system.memory_warn", system.memory_warn)?;
        Ok(system)
    }

    fn upstreams(&self, root: &mut toml::Table, defaults: &Defaults) -> Result<Vec<Upstream>, ConfigError> {
        let entries = match root.remove("upstream") {
            None => return Ok(Vec::new()),
            Some(toml::Value::Array(entries)) => entries,
            Some(_) => return Err(self.invalid("upstream", "expected a list of tables, such as [[upstream]]")),
        };
        let mut upstreams: Vec<Upstream> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let prefix = format!("upstream[{index}]");
            let toml::Value::Table(table) = entry else {
                return Err(self.invalid(&prefix, "expected a table, such as [[upstream]]"));
            };
            let upstream: Upstream = self.parse_section(table, &prefix, defaults, false)?;
            let name = &upstream.name;
            if name.is_empty()
                || name.len() > 64
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(self.invalid(
                    &format!("{prefix}.name"),
                    format!("must be 1 to 64 characters of letters, digits, '-', '_' and '.', got {name:?}"),
                ));
            }
            if upstreams.iter().any(|u| &u.name == name) {
                return Err(self.invalid(
                    &format!("{prefix}.name"),
                    format!("{name:?} names another upstream too; names must be unique"),
                ));
            }
            let method_ok = ["GET", "HEAD", "POST", "PUT", "OPTIONS"].contains(&upstream.method.as_str());
            if !method_ok {
                return Err(self.invalid(
                    &format!("{prefix}.method"),
                    format!(
                        "must be one of GET, HEAD, POST, PUT, OPTIONS, got {:?}",
                        upstream.method
                    ),
                ));
            }
            for (header, value) in &upstream.headers {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(self.invalid(
                        &format!("{prefix}.headers"),
                        format!("not a valid header name: {header:?}"),
                    ));
                }
                if http::HeaderValue::from_str(value.expose()).is_err() {
                    return Err(self.invalid(&format!("{prefix}.headers.{header}"), "not a valid header value"));
                }
            }
            if upstream.latency_warn >= upstream.latency_fail {
                return Err(self.invalid(
                    &format!("{prefix}.latency_warn"),
                    format!(
                        "must be below latency_fail ({}), got {}",
                        crate::fmt::duration(upstream.latency_fail),
                        crate::fmt::duration(upstream.latency_warn)
                    ),
                ));
            }
            self.window(&format!("{prefix}.window"), upstream.window, upstream.settings.interval)?;
            upstreams.push(upstream);
        }
        Ok(upstreams)
    }
}

/// A section type that carries [`CheckSettings`].
trait HasSettings {
    fn settings_mut(&mut self) -> &mut CheckSettings;
}

macro_rules! has_settings {
    ($($t:ty),*) => {$(
        impl HasSettings for $t {
            fn settings_mut(&mut self) -> &mut CheckSettings {
                &mut self.settings
            }
        }
    )*};
}
has_settings!(Postgres, Gateway, Jwt, System, Upstream);

impl Default for CheckSettings {
    fn default() -> Self {
        let d = Defaults::default();
        CheckSettings {
            interval: d.interval,
            timeout: d.timeout,
            failure_threshold: d.failure_threshold,
            success_threshold: d.success_threshold,
            critical: false,
        }
    }
}

/// Keys whose values are secrets, set as-is from the environment.
const SECRET_KEYS: [&str; 2] = ["diag.token", "postgres.url"];

/// An environment value as TOML would read it (`0.7`, `true`, `[200, 204]`), else a string.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty() || key == ".") {
        (_, true) => prefix.to_owned(),
        (true, false) => key.to_owned(),
        (false, false) if key.starts_with('[') => format!("{prefix}{key}"),
        (false, false) => format!("{prefix}.{key}"),
    }
}

fn expected_part(message: &str) -> String {
    match message.split_once(", ") {
        Some((_, expected)) => expected.replace('`', ""),
        None => "see the README for the keys of this section".to_owned(),
    }
}

/// Serde for durations written as `250ms`, `5s`, `2m`.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::fmt::duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Other(toml::Value),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => parse(&text).map_err(de::Error::custom),
            Raw::Other(value) => Err(de::Error::custom(format!(
                "expected a duration such as \"250ms\", \"5s\" or \"2m\", got {value}"
            ))),
        }
    }

    pub fn parse(text: &str) -> Result<Duration, String> {
        humantime::parse_duration(text.trim())
            .map_err(|_| format!("expected a duration such as \"250ms\", \"5s\" or \"2m\", got {text:?}"))
    }
}

/// Serde for optional durations.
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::duration::serialize(d, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(deserializer).map(Some)
    }
}

impl Config {
    /// The effective configuration as TOML, every secret printed as `<redacted>`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut root: toml::Table = toml.parse().expect("test TOML parses");
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut loader = Loader::default();
        loader.overlay_env(&mut root, &env)?;
        loader.resolve(root)
    }

    fn error(toml: &str, env: &[(&str, &str)]) -> String {
        load_str(toml, env)
            .expect_err("configuration must be refused")
            .to_string()
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_refused_without_quoting_it() {
        for toml in [
            "[diag]\ntoken = 12345678\n",
            "[postgres]\nurl = 31337\n",
            "[[upstream]]\nname = \"a\"\nurl = \"http://a/\"\nheaders = { Authorization = 42424242 }\n",
        ] {
            let message = error(toml, &[]);
            assert!(
                message.contains("must be a string (the value is not shown"),
                "{message}"
            );
            for value in ["12345678", "31337", "42424242"] {
                assert!(!message.contains(value), "{message}");
            }
        }
    }

    #[test]
    fn defaults_alone_run_the_system_check() {
        let config = load_str("", &[]).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9476");
        let system = config.system.expect("system runs by default");
        assert_eq!(system.settings.interval, Duration::from_secs(5));
        assert!(!system.settings.critical);
        assert!(config.postgres.is_none() && config.upstreams.is_empty());
    }

    #[test]
    fn sections_inherit_defaults_and_override_them() {
        let config = load_str(
            "[defaults]\ninterval = \"10s\"\nfailure_threshold = 3\n[system]\ninterval = \"1s\"\ntimeout = \"500ms\"\n\
             [postgres]\nurl = \"postgres://u:pw@localhost/db\"\n",
            &[],
        )
        .unwrap();
        let system = config.system.unwrap().settings;
        assert_eq!(
            (system.interval, system.timeout, system.failure_threshold),
            (Duration::from_secs(1), Duration::from_millis(500), 3)
        );
        let postgres = config.postgres.unwrap().settings;
        assert_eq!(postgres.interval, Duration::from_secs(10));
        assert!(postgres.critical, "postgres is critical by default");
    }

    #[test]
    fn environment_wins_over_the_file_and_is_named_in_errors() {
        let config = load_str("[system]\ncpu_warn = 0.5\n", &[("VIGIL_SYSTEM__CPU_WARN", "0.7")]).unwrap();
        assert_eq!(config.system.unwrap().cpu_warn, 0.7);
        assert_eq!(
            error("", &[("VIGIL_SYSTEM__CPU_WARN", "1.5")]),
            "system.cpu_warn (from VIGIL_SYSTEM__CPU_WARN): must be between 0 and 1, got 1.5"
        );
        assert_eq!(
            error("", &[("VIGIL_SYSTEM__CPU_WARNING", "0.5")]),
            "system.cpu_warning (from VIGIL_SYSTEM__CPU_WARNING): unknown key; expected one of enabled, cpu_warn, memory_warn, cgroup_root"
        );
    }

    #[test]
    fn database_url_configures_postgres_alone() {
        let config = load_str("", &[("DATABASE_URL", "postgres://gw:pw@127.0.0.1/gw")]).unwrap();
        let postgres = config.postgres.expect("DATABASE_URL configures postgres");
        assert_eq!(postgres.url.unwrap().expose(), "postgres://gw:pw@127.0.0.1/gw");
        let explicit = load_str(
            "[postgres]\nurl = \"postgres://a@b/c\"\n",
            &[("DATABASE_URL", "postgres://x@y/z")],
        )
        .unwrap();
        assert_eq!(explicit.postgres.unwrap().url.unwrap().expose(), "postgres://a@b/c");
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let cases = [
            (
                "[postgres]\nurl = \"postgres://a@b/c\"\nsaturation_warn = 1.5\n",
                "postgres.saturation_warn: must be between 0 and 1, got 1.5",
            ),
            (
                "[postgres]\nurl = \"postgres://a@b/c\"\nsaturation_warn = 0.97\n",
                "postgres.saturation_warn: must be below saturation_fail (0.95), got 0.97",
            ),
            (
                "[postgres]\n",
                "postgres.url: required: set url, url_file or the DATABASE_URL environment variable",
            ),
            (
                "[postgres]\nurl = \"mysql://root:hunter2@db/x\"\n",
                "postgres.url: must be a postgres:// or postgresql:// URL (or key=value connection string)",
            ),
            (
                "[defaults]\ninterval = \"5\"\n",
                "defaults.interval: expected a duration such as \"250ms\", \"5s\" or \"2m\", got \"5\"",
            ),
            (
                "[defaults]\ninterval = 5\n",
                "defaults.interval: expected a duration such as \"250ms\", \"5s\" or \"2m\", got 5",
            ),
            (
                "[defaults]\ntimeout = \"10s\"\n",
                "defaults.timeout: must not exceed the interval (5s), got 10s",
            ),
            (
                "[system]\nfailure_threshold = 0\n",
                "system.failure_threshold: must be between 1 and 100, got 0",
            ),
            (
                "listen = \"nowhere\"\n",
                "listen: expected an address such as 0.0.0.0:9476, got \"nowhere\"",
            ),
            (
                "colour = \"blue\"\n",
                "colour: unknown key; expected one of listen, defaults, shutdown, diag, postgres, gateway, jwt, system, upstream",
            ),
            (
                "[gateway]\nhealth_url = \"ftp://gw/healthz\"\n",
                "gateway.health_url: must be an http:// or https:// URL, got \"ftp://gw/healthz\"",
            ),
            ("[jwt]\nalgorithm = \"RS256\"\n", "jwt.jwks_url: required for RS256"),
            (
                "[jwt]\nalgorithm = \"ES256\"\njwks_url = \"http://auth/jwks\"\nvalidate_url = \"http://gw/v\"\n",
                "jwt.validate_url: needs HS256, HS384 or HS512 (vigil signs its probe tokens with the shared secret), got ES256",
            ),
            (
                "[jwt]\nalgorithm = \"none\"\nsecret_env = \"X\"\n",
                "jwt.algorithm: unknown variant `none`, expected one of `HS256`, `HS384`, `HS512`, `RS256`, `ES256`",
            ),
            (
                "[[upstream]]\nname = \"a b\"\nurl = \"http://x/\"\n",
                "upstream[0].name: must be 1 to 64 characters of letters, digits, '-', '_' and '.', got \"a b\"",
            ),
            (
                "[[upstream]]\nname = \"a\"\nurl = \"http://x/\"\n[[upstream]]\nname = \"a\"\nurl = \"http://y/\"\n",
                "upstream[1].name: \"a\" names another upstream too; names must be unique",
            ),
            (
                "[[upstream]]\nname = \"a\"\nurl = \"http://x/\"\nexpect_status = \"7xx\"\n",
                "upstream[0].expect_status: expected \"1xx\" to \"5xx\" or a list of status codes such as [200, 204], got \"7xx\"",
            ),
            (
                "[[upstream]]\nname = \"a\"\nurl = \"http://x/\"\nlatency_warn = \"3s\"\n",
                "upstream[0].latency_warn: must be below latency_fail (2s), got 3s",
            ),
            (
                "[diag]\ntoken_file = \"/nonexistent/vigil-token\"\n",
                "diag.token_file: cannot read /nonexistent/vigil-token: No such file or directory (os error 2)",
            ),
        ];
        for (toml, expected) in cases {
            assert_eq!(error(toml, &[]), expected, "for {toml:?}");
        }
    }

    #[test]
    fn numeric_looking_secrets_from_the_environment_stay_strings() {
        let config = load_str("", &[("VIGIL_DIAG__TOKEN", "12345678901234567890")]).unwrap();
        assert_eq!(config.diag.token.unwrap().expose(), "12345678901234567890");
    }

    #[test]
    fn urls_with_credentials_are_refused_without_echoing_them() {
        let message = error(
            "[gateway]\nhealth_url = \"http://admin:hunter2@gw:8080/healthz\"\n",
            &[],
        );
        assert!(
            message.starts_with("gateway.health_url: must not carry credentials"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn errors_never_show_the_database_password() {
        let message = error("[postgres]\nurl = \"mysql://root:hunter2@db/x\"\n", &[]);
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn redacted_toml_hides_every_secret_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "diag-token-value\n").unwrap();
        let config = load_str(
            &format!(
                "[diag]\ntoken_file = {token:?}\n[postgres]\nurl = \"postgres://gw:db-password@h/db\"\n\
                 [[upstream]]\nname = \"orders\"\nurl = \"http://o/healthz\"\nheaders = {{ Authorization = \"Bearer upstream-token\" }}\n"
            ),
            &[],
        )
        .unwrap();
        assert_eq!(config.diag.token.as_ref().unwrap().expose(), "diag-token-value");
        let shown = config.to_redacted_toml();
        for secret in ["diag-token-value", "db-password", "upstream-token"] {
            assert!(!shown.contains(secret), "{secret} leaked into:\n{shown}");
        }
        assert!(shown.contains("<redacted>"));
        assert!(shown.contains("interval = \"5s\""), "{shown}");
        let reparsed: toml::Table = shown.parse().expect("validate output is TOML");
        assert!(reparsed.contains_key("upstream"));
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vigil.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:9476\"\n[system\n").unwrap();
        let message = read_toml(&path).unwrap_err().to_string();
        assert!(message.starts_with(&format!("{}:2:", path.display())), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
}
