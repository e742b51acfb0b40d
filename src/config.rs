//! The configuration: built-in defaults < TOML file < `VIGIL_<SECTION>__<KEY>` environment
//! (with `DATABASE_URL` standing for `postgres.url`), loaded, parsed and validated once at
//! start-up into the types the checks use (an [`http::Method`], header names and values, a
//! [`tokio_postgres::Config`]). Everything after start-up reads [`Config`] and never re-checks
//! or re-parses it.
//!
//! Each section type carries its documentation (what each key is, its default, its limits) and
//! its own `validate`; the loader only overlays the environment on the file and hands each
//! section its table. Every error names the key it is about (`postgres.saturation_warn: must be
//! between 0 and 1, got 1.5`), and where an environment variable set the key, that variable too.

mod pg_url;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

pub use self::pg_url::{PostgresTarget, PostgresUrlError, SslMode};
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
    /// Variables vigil reads whose name or value is not UTF-8: refused by [`load`], naming them.
    /// Other non-UTF-8 variables (vigil never reads them) are left alone.
    pub not_utf8: Vec<String>,
}

impl Sources {
    /// The real environment, with `flag_file` (from `--config`) winning over `VIGIL_CONFIG`.
    pub fn from_process(flag_file: Option<PathBuf>) -> Self {
        let mut env = Vec::new();
        let mut not_utf8 = Vec::new();
        // `vars()` panics on the first variable that is not UTF-8, even one vigil never reads.
        for (name, value) in std::env::vars_os() {
            match (name.into_string(), value.into_string()) {
                (Ok(name), Ok(value)) => env.push((name, value)),
                (Ok(name), Err(_)) if is_read(&name) => not_utf8.push(name),
                (Err(name), _) if is_read(&name.to_string_lossy()) => {
                    not_utf8.push(name.to_string_lossy().into_owned());
                }
                _ => {}
            }
        }
        let file = flag_file.or_else(|| {
            env.iter()
                .find(|(k, v)| k == "VIGIL_CONFIG" && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        });
        Sources { file, env, not_utf8 }
    }
}

/// Whether vigil reads the environment variable `name`.
fn is_read(name: &str) -> bool {
    name.starts_with("VIGIL_") || name == "DATABASE_URL" || name == POD_IP
}

/// The downward API's pod address: `[fleet]` leaves it out of the peers. Read once, at load.
pub const POD_IP: &str = "POD_IP";

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration file: {source}")]
    Read {
        path: String,
        source: crate::files::FileError,
    },
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

/// A value a section's `validate` refuses: the full key (`upstream[0].window`) and why. The
/// loader adds the environment variable that set the key, if one did, and makes it a
/// [`ConfigError::Invalid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Invalid {
    /// The full key, such as `upstream[0].window`.
    pub key: String,
    /// Why, without the key; never quotes a secret.
    pub message: String,
}

impl Invalid {
    fn new(key: impl Into<String>, message: impl fmt::Display) -> Invalid {
        Invalid {
            key: key.into(),
            message: message.to_string(),
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The one address for probes, metrics and diag. Default `0.0.0.0:9476`; an
    /// `address:port` (`VIGIL_LISTEN` sets it too). A change needs a restart.
    pub listen: SocketAddr,
    /// `[defaults]`: the timing every check section inherits.
    pub defaults: Defaults,
    /// `[shutdown]`: what happens after SIGTERM.
    pub shutdown: Shutdown,
    /// `[diag]`: who may read `/diag` from outside the pod.
    pub diag: Diag,
    /// `[postgres]`; absent: the check is not configured (`DATABASE_URL` alone configures it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<Postgres>,
    /// `[gateway]`; absent: the check is not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Gateway>,
    /// `[jwt]`; absent: the check is not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
    /// `[system]`; runs unless `enabled = false` (then `None`, printed as `enabled = false`).
    #[serde(serialize_with = "serialize_system")]
    pub system: Option<System>,
    /// `[[upstream]]`, in the order of the file; none by default.
    #[serde(rename = "upstream", skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
    /// `[fleet]`; absent: every replica decides alone (no peer is ever asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Fleet>,
    /// `[kubernetes]`; absent: vigil never calls the Kubernetes API and there is no `pod` check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<Kubernetes>,
}

/// A turned-off `[system]` prints as `enabled = false`, so that the printed configuration
/// loads again to the same one (an absent section would run the check).
fn serialize_system<S: Serializer>(system: &Option<System>, serializer: S) -> Result<S::Ok, S::Error> {
    match system {
        Some(system) => system.serialize(serializer),
        None => {
            let mut off = serializer.serialize_struct("System", 1)?;
            off.serialize_field("enabled", &false)?;
            off.end()
        }
    }
}

/// `[defaults]`: what every check section inherits unless it says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Time between the starts of two runs of a check. Default `5s`; 100ms to 1h.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A run that takes longer fails with "timed out after …". Default `2s`; at least 10ms and
    /// at most the interval.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Consecutive failed runs before a check reports fail. Default 2; 1 to 100.
    pub failure_threshold: u32,
    /// Consecutive passing runs before a failed check recovers. Default 1; 1 to 100.
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

impl Defaults {
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_timing(
            "defaults",
            self.interval,
            self.timeout,
            self.failure_threshold,
            self.success_threshold,
        )
    }
}

/// The timing and weight of one check, after inheritance from `[defaults]`: the keys every
/// check section accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckSettings {
    /// As `defaults.interval` (its default): 100ms to 1h.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// As `defaults.timeout` (its default): at least 10ms, at most this check's interval.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// As `defaults.failure_threshold` (its default): 1 to 100.
    pub failure_threshold: u32,
    /// As `defaults.success_threshold` (its default): 1 to 100.
    pub success_threshold: u32,
    /// Whether a fail of this check fails `/readyz`. Default true for `postgres`, `gateway`
    /// and `jwt`, false for `system`, `upstream` and `pod` (`[kubernetes]`).
    pub critical: bool,
    /// Whether the dependency is the same for every replica (`shared`: with `[fleet]`, a
    /// fleet-wide failure of a critical shared check does not take this replica out of the
    /// Service) or this replica's own (`local`: never held). Default `shared` for `postgres`,
    /// `jwt` and `upstream`, `local` for `gateway`, `system` and `pod`.
    pub scope: Scope,
}

/// A check's `scope`: see [`CheckSettings::scope`] and `[fleet]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The same dependency for every replica (a database, a JWT secret, an upstream).
    Shared,
    /// This replica's own (its gateway container, its CPU and memory).
    #[default]
    Local,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Shared => "shared",
            Scope::Local => "local",
        }
    }
}

impl CheckSettings {
    /// The timing limits of the section at `prefix` (`postgres`, `upstream[2]`).
    pub fn validate(&self, prefix: &str) -> Result<(), Invalid> {
        validate_timing(
            prefix,
            self.interval,
            self.timeout,
            self.failure_threshold,
            self.success_threshold,
        )
    }
}

impl Default for CheckSettings {
    fn default() -> Self {
        let d = Defaults::default();
        CheckSettings {
            interval: d.interval,
            timeout: d.timeout,
            failure_threshold: d.failure_threshold,
            success_threshold: d.success_threshold,
            critical: false,
            scope: Scope::Local,
        }
    }
}

fn validate_timing(
    prefix: &str,
    interval: Duration,
    timeout: Duration,
    failure_threshold: u32,
    success_threshold: u32,
) -> Result<(), Invalid> {
    let key = |name: &str| format!("{prefix}.{name}");
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&interval) {
        return Err(Invalid::new(
            key("interval"),
            format!("must be between 100ms and 1h, got {}", crate::fmt::duration(interval)),
        ));
    }
    if timeout < Duration::from_millis(10) {
        return Err(Invalid::new(
            key("timeout"),
            format!("must be at least 10ms, got {}", crate::fmt::duration(timeout)),
        ));
    }
    if timeout > interval {
        return Err(Invalid::new(
            key("timeout"),
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
            return Err(Invalid::new(
                key(name),
                format!("must be between 1 and 100, got {value}"),
            ));
        }
    }
    Ok(())
}

/// `[shutdown]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    /// After SIGTERM/SIGINT, `/readyz` answers 503 while everything else still serves this
    /// long. Default `5s`; at most 10m.
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

impl Shutdown {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.drain > Duration::from_secs(600) {
            return Err(Invalid::new(
                "shutdown.drain",
                format!("must be at most 10m, got {}", crate::fmt::duration(self.drain)),
            ));
        }
        Ok(())
    }
}

/// `[diag]`: who may read `/diag` and the reasons in `/readyz` from outside the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Diag {
    /// The bearer token that lets non-loopback peers read `/diag` and the `/readyz` reasons.
    /// Default none (loopback only); not empty; not together with `token_file`. Printed
    /// `<redacted>`; after loading it holds the contents of `token_file` when that is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret<String>>,
    /// A file holding `token` (surrounding whitespace trimmed, at most 64 KiB, not empty): read
    /// at start-up, then again every 5 s so that a rotated Secret takes effect. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl Diag {
    /// Checks the keys and reads `token_file` into `token`.
    pub fn resolve(&mut self) -> Result<(), Invalid> {
        if self.token.is_some() && self.token_file.is_some() {
            return Err(Invalid::new("diag.token", "set either token or token_file, not both"));
        }
        if let Some(path) = &self.token_file {
            self.token = Some(read_secret_file("diag.token_file", path)?);
        }
        if self.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            return Err(Invalid::new("diag.token", "must not be empty"));
        }
        Ok(())
    }
}

fn read_secret_file(key: &str, path: &Path) -> Result<Secret<String>, Invalid> {
    crate::secret::read_file(path).map_err(|e| Invalid::new(key, e))
}

/// `[fleet]`: the other replicas, asked while a critical shared check fails here so that a
/// failure of the whole fleet does not take every replica out of the Service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    /// The replicas: a DNS name (a headless Service with `publishNotReadyAddresses: true`;
    /// every address it resolves to is a replica) or a list of them. Each entry is `host` or
    /// `host:port` (an IP address or a DNS name; IPv6 as `[addr]:port`), the port being
    /// vigil's `listen` port unless given. Required; a list holds 1 to 256 entries. This
    /// replica's own address (see `own_ip`) is left out of what they resolve to.
    pub peers: Peers,
    /// The share of the answering replicas, this one included, that must fail a shared check
    /// for the failure to count as the fleet's (this replica then stays ready). Default 0.5;
    /// above 0, at most 1.
    pub panic_threshold: f64,
    /// This replica's own address, left out of the peers: `$POD_IP` (the downward API), read
    /// once at load, else the `listen` address unless that is unspecified (`0.0.0.0`). Not a
    /// key: not printed.
    #[serde(skip)]
    pub own_ip: Option<std::net::IpAddr>,
    /// Where the own address came from (`POD_IP`, `listen`), for `/diag`. Not a key.
    #[serde(skip)]
    pub own_ip_source: &'static str,
    /// The port of peers given without one: vigil's `listen` port. Not a key.
    #[serde(skip)]
    pub default_port: u16,
}

/// `fleet.peers`: one DNS name, or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    /// `peers = "api-gateway-peers.api-gateway.svc.cluster.local"`.
    Name(PeerTarget),
    /// `peers = ["10.0.0.5:9476", "10.0.0.6:9476"]`.
    List(Vec<PeerTarget>),
}

impl Peers {
    /// Every entry, in the order written.
    pub fn targets(&self) -> &[PeerTarget] {
        match self {
            Peers::Name(one) => std::slice::from_ref(one),
            Peers::List(list) => list,
        }
    }
}

impl Serialize for Peers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Peers::Name(one) => serializer.serialize_str(&one.text),
            Peers::List(list) => serializer.collect_seq(list.iter().map(|t| t.text.as_str())),
        }
    }
}

/// One entry of `fleet.peers`: `host` or `host:port`, parsed at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTarget {
    /// As written.
    pub text: String,
    /// An IP address or a DNS name, without brackets.
    pub host: String,
    /// As written, else vigil's `listen` port.
    pub port: u16,
}

impl PeerTarget {
    /// Parses `host`, `host:port` or `[v6]:port`; `default_port` when no port is written.
    pub fn parse(text: &str, default_port: u16) -> Result<PeerTarget, String> {
        let shown = text;
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("expected [address]:port, got {shown:?}"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(format!("expected [address]:port, got {shown:?}")),
            }
        } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
            (text, None)
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("expected host:port with a port from 1 to 65535, got {shown:?}"))?,
        };
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        let is_name = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !is_ip && !is_name {
            return Err(format!("expected an IP address or a DNS name, got {shown:?}"));
        }
        Ok(PeerTarget {
            text: text.to_owned(),
            host: host.to_owned(),
            port,
        })
    }
}

/// `[fleet]` as written (see [`Fleet`]'s fields for each key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetKeys {
    /// [`Fleet::peers`].
    peers: PeersKey,
    /// [`Fleet::panic_threshold`].
    #[serde(default = "default_panic_threshold")]
    panic_threshold: f64,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a DNS name such as \"api-gateway-peers\" or a list of \"host:port\""
)]
enum PeersKey {
    One(String),
    Many(Vec<String>),
}

/// How many entries `fleet.peers` may list.
pub const PEERS_LISTED_MAX: usize = 256;

impl FleetKeys {
    /// Parses the peers and takes the own address: `pod_ip` (from `$POD_IP`) or `listen`'s.
    fn resolve(self, listen: SocketAddr, pod_ip: Option<&str>) -> Result<Fleet, Invalid> {
        let port = listen.port();
        let peers = match self.peers {
            PeersKey::One(text) => {
                Peers::Name(PeerTarget::parse(&text, port).map_err(|m| Invalid::new("fleet.peers", m))?)
            }
            PeersKey::Many(list) => {
                if list.is_empty() || list.len() > PEERS_LISTED_MAX {
                    return Err(Invalid::new(
                        "fleet.peers",
                        format!("must list 1 to {PEERS_LISTED_MAX} peers, got {}", list.len()),
                    ));
                }
                let parsed: Result<Vec<PeerTarget>, Invalid> = list
                    .iter()
                    .enumerate()
                    .map(|(i, text)| {
                        PeerTarget::parse(text, port).map_err(|m| Invalid::new(format!("fleet.peers[{i}]"), m))
                    })
                    .collect();
                Peers::List(parsed?)
            }
        };
        let (own_ip, own_ip_source) = match pod_ip.map(str::trim).filter(|ip| !ip.is_empty()) {
            Some(text) => match text.parse::<std::net::IpAddr>() {
                Ok(ip) => (Some(ip), POD_IP),
                Err(_) => {
                    return Err(Invalid::new(
                        POD_IP,
                        format!("must be this pod's IP address (the downward API's status.podIP), got {text:?}"),
                    ));
                }
            },
            None if listen.ip().is_unspecified() => (None, "none"),
            None => (Some(listen.ip()), "listen"),
        };
        let fleet = Fleet {
            peers,
            panic_threshold: self.panic_threshold,
            own_ip,
            own_ip_source,
            default_port: port,
        };
        fleet.validate()?;
        Ok(fleet)
    }
}

impl Fleet {
    pub fn validate(&self) -> Result<(), Invalid> {
        ratio("fleet.panic_threshold", self.panic_threshold)
    }
}

/// The environment variables `[kubernetes]` takes its defaults from, read once at load: the
/// API server's address (every pod has them) and the downward API's pod name and namespace. One
/// that is not UTF-8 counts as unset (`HOSTNAME` is everyone's: it must not refuse a
/// configuration without `[kubernetes]`).
pub const KUBERNETES_ENV: [&str; 5] = [
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "POD_NAMESPACE",
    "POD_NAME",
    "HOSTNAME",
];

/// The service account token's default place (a projected volume mounts it there too).
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The cluster CA's default place.
pub const SERVICE_ACCOUNT_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// `[kubernetes]`: the Kubernetes API, read for the check named `pod` (the gateway container's
/// state and use, the Service's endpoints) and written for Events. Parsed once; a change needs
/// a restart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kubernetes {
    /// The `pod` check's `interval` (the metrics API is read once per run), `timeout`,
    /// `failure_threshold`, `success_threshold` (from `[defaults]`), `critical` (default false)
    /// and `scope` (default `local`).
    #[serde(flatten)]
    pub settings: CheckSettings,
    /// The API server. Default `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` (an
    /// IPv6 host bracketed; the port 443 when unset); required when those are not set; an
    /// `https` URL without credentials or a path.
    pub api_url: HttpUrl,
    /// The service account token, read again before every request (projected tokens rotate).
    /// Default `/var/run/secrets/kubernetes.io/serviceaccount/token`; a missing or unreadable
    /// token is a warn of the `pod` check, not a start failure.
    pub token_file: PathBuf,
    /// The cluster CA (PEM) the API server's certificate must chain to, the only one trusted,
    /// read when the check is built. Default
    /// `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`; must hold a certificate.
    pub ca_file: PathBuf,
    /// This pod's namespace. Default `$POD_NAMESPACE`, else the `namespace` file next to
    /// `token_file`; a DNS label (1 to 63 of `a-z 0-9 -`).
    pub namespace: String,
    /// This pod's name. Default `$POD_NAME`, else `$HOSTNAME`; a DNS subdomain (1 to 253 of
    /// `a-z 0-9 - .`).
    pub pod: String,
    /// The gateway container. Default none: the pod's first regular container
    /// (`spec.containers[0]`); a DNS label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The Service whose EndpointSlices are watched (label `kubernetes.io/service-name`).
    /// Default none (no endpoints are watched); a DNS label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The container's CPU use / its CPU limit that warns. Default 0.80 (the runbook's 80 %);
    /// above 0, at most 1.
    pub cpu_warn: f64,
    /// The container's memory working set / its memory limit that warns. Default 0.90; above
    /// 0, at most 1.
    pub memory_warn: f64,
    /// A restart or OOM kill of the container this recent warns. Default `15m`; 1m to 24h.
    #[serde(with = "duration")]
    pub restart_window: Duration,
    /// Whether status changes of the checks become Kubernetes Events on this pod. Default true.
    pub events: bool,
}

/// `[kubernetes]` as written (see [`Kubernetes`]'s fields for each key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesKeys {
    /// [`Kubernetes::api_url`].
    #[serde(default)]
    api_url: Option<HttpUrl>,
    /// [`Kubernetes::token_file`].
    #[serde(default = "default_token_file")]
    token_file: PathBuf,
    /// [`Kubernetes::ca_file`].
    #[serde(default = "default_ca_file")]
    ca_file: PathBuf,
    /// [`Kubernetes::namespace`].
    #[serde(default)]
    namespace: Option<String>,
    /// [`Kubernetes::pod`].
    #[serde(default)]
    pod: Option<String>,
    /// [`Kubernetes::container`].
    #[serde(default)]
    container: Option<String>,
    /// [`Kubernetes::service`].
    #[serde(default)]
    service: Option<String>,
    /// [`Kubernetes::cpu_warn`].
    #[serde(default = "default_cpu_warn")]
    cpu_warn: f64,
    /// [`Kubernetes::memory_warn`].
    #[serde(default = "default_memory_warn")]
    memory_warn: f64,
    /// [`Kubernetes::restart_window`].
    #[serde(default = "default_restart_window", with = "duration")]
    restart_window: Duration,
    /// [`Kubernetes::events`].
    #[serde(default = "yes")]
    events: bool,
}

/// What `[kubernetes]` takes from the environment (see [`KUBERNETES_ENV`]).
#[derive(Debug, Default, Clone)]
struct KubernetesEnv {
    service_host: Option<String>,
    service_port: Option<String>,
    pod_namespace: Option<String>,
    pod_name: Option<String>,
    hostname: Option<String>,
}

impl KubernetesEnv {
    fn read(env: &[(String, String)]) -> KubernetesEnv {
        let get = |name: &str| {
            env.iter()
                .find(|(k, v)| k == name && !v.trim().is_empty())
                .map(|(_, v)| v.trim().to_owned())
        };
        KubernetesEnv {
            service_host: get("KUBERNETES_SERVICE_HOST"),
            service_port: get("KUBERNETES_SERVICE_PORT"),
            pod_namespace: get("POD_NAMESPACE"),
            pod_name: get("POD_NAME"),
            hostname: get("HOSTNAME"),
        }
    }

    /// `https://host:port` from the in-cluster variables.
    fn api_url(&self) -> Option<Result<HttpUrl, String>> {
        let host = self.service_host.as_deref()?;
        let port = self.service_port.as_deref().unwrap_or("443");
        let host = match host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{host}]"),
            Err(_) => host.to_owned(),
        };
        Some(
            HttpUrl::parse(&format!("https://{host}:{port}"))
                .map_err(|e| format!("KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT do not make a URL: {e}")),
        )
    }
}

impl KubernetesKeys {
    /// Fills the defaults from the environment and the service account's files, and validates.
    fn resolve(self, settings: CheckSettings, env: &KubernetesEnv) -> Result<Kubernetes, Invalid> {
        let api_url = match (self.api_url, env.api_url()) {
            (Some(url), _) => url,
            (None, Some(url)) => url.map_err(|m| Invalid::new("kubernetes.api_url", m))?,
            (None, None) => {
                return Err(Invalid::new(
                    "kubernetes.api_url",
                    "required outside a pod: set api_url (in a pod, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT give it)",
                ));
            }
        };
        let namespace = match (self.namespace, &env.pod_namespace) {
            (Some(namespace), _) => namespace,
            (None, Some(namespace)) => namespace.clone(),
            (None, None) => {
                let file = self.token_file.with_file_name("namespace");
                crate::files::read_text(&file, crate::files::SECRET_CAP)
                    .map(|text| text.trim().to_owned())
                    .map_err(|e| {
                        Invalid::new(
                            "kubernetes.namespace",
                            format!(
                                "required: set namespace, or POD_NAMESPACE from the downward API (metadata.namespace); the service account's {} cannot be read: {e}",
                                file.display()
                            ),
                        )
                    })?
            }
        };
        let pod = match (self.pod, &env.pod_name, &env.hostname) {
            (Some(pod), _, _) => pod,
            (None, Some(pod), _) | (None, None, Some(pod)) => pod.clone(),
            (None, None, None) => {
                return Err(Invalid::new(
                    "kubernetes.pod",
                    "required: set pod, or POD_NAME from the downward API (metadata.name)",
                ));
            }
        };
        let kubernetes = Kubernetes {
            settings,
            api_url,
            token_file: self.token_file,
            ca_file: self.ca_file,
            namespace,
            pod,
            container: self.container,
            service: self.service,
            cpu_warn: self.cpu_warn,
            memory_warn: self.memory_warn,
            restart_window: self.restart_window,
            events: self.events,
        };
        kubernetes.validate()?;
        Ok(kubernetes)
    }
}

impl Kubernetes {
    pub fn validate(&self) -> Result<(), Invalid> {
        let url = self.api_url.uri();
        if url.scheme_str() != Some("https") {
            return Err(Invalid::new(
                "kubernetes.api_url",
                format!(
                    "must be an https:// URL (vigil sends its service account token), got {:?}",
                    self.api_url.as_str()
                ),
            ));
        }
        if url.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(Invalid::new(
                "kubernetes.api_url",
                format!("must name the server only (no path), got {:?}", self.api_url.as_str()),
            ));
        }
        dns_name("kubernetes.namespace", &self.namespace, 63, false)?;
        dns_name("kubernetes.pod", &self.pod, 253, true)?;
        if let Some(container) = &self.container {
            dns_name("kubernetes.container", container, 63, false)?;
        }
        if let Some(service) = &self.service {
            dns_name("kubernetes.service", service, 63, false)?;
        }
        ratio("kubernetes.cpu_warn", self.cpu_warn)?;
        ratio("kubernetes.memory_warn", self.memory_warn)?;
        if !(Duration::from_secs(60)..=Duration::from_secs(86_400)).contains(&self.restart_window) {
            return Err(Invalid::new(
                "kubernetes.restart_window",
                format!(
                    "must be between 1m and 24h, got {}",
                    crate::fmt::duration(self.restart_window)
                ),
            ));
        }
        Ok(())
    }
}

/// A Kubernetes object name: a DNS label (`a-z 0-9 -`, alphanumeric at both ends), or with
/// `dots` a DNS subdomain. Names go into URL paths and selectors, so nothing else may pass.
fn dns_name(key: &str, name: &str, max: usize, dots: bool) -> Result<(), Invalid> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty()
        || name.len() > max
        || !name.chars().all(allowed)
        || !ends(name.chars().next())
        || !ends(name.chars().last())
    {
        let what = if dots { "a DNS subdomain" } else { "a DNS label" };
        return Err(Invalid::new(
            key,
            format!(
                "must be {what} (1 to {max} of a-z, 0-9, '-'{}), got {name:?}",
                if dots { ", '.'" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// `[postgres]`: the check named `postgres`.
#[derive(Debug, Clone, PartialEq)]
pub struct Postgres {
    /// `interval`, `timeout`, `failure_threshold`, `success_threshold` (from `[defaults]`) and
    /// `critical` (default true).
    pub settings: CheckSettings,
    /// The server to watch, parsed from `url` (or the contents of `url_file`, or
    /// `DATABASE_URL`): required, one of the three. A `postgres://` or `postgresql://` URL or a
    /// libpq `key=value` string; `sslmode` (`disable`, `allow`, `prefer` (default), `require`,
    /// `verify-ca`, `verify-full`) and `sslrootcert` are taken out and handled by vigil.
    /// Printed as `url = "<redacted>"` (it holds the password), or not at all when it came
    /// from `url_file`.
    pub target: PostgresTarget,
    /// A file holding the URL (a Secret volume), read at start-up, whitespace trimmed. Default
    /// none; not together with `url`.
    pub url_file: Option<PathBuf>,
    /// Server connections in use / usable `max_connections` at which the check warns.
    /// Default 0.80; above 0, at most 1, below `saturation_fail`.
    pub saturation_warn: f64,
    /// The same share at which the check fails. Default 0.95; above 0, at most 1.
    pub saturation_fail: f64,
    /// Queries running longer than this are counted and shown. Default `30s`; at least 1s.
    pub long_query: Duration,
    /// Connections in the agent's own pool (one more is kept open beside it). Default 2;
    /// 1 to 16.
    pub pool_size: u32,
    /// How close the earliest `notAfter` of the certificate chain the server presented (any
    /// `sslmode` but `disable`, when the server speaks TLS) may come before the check warns
    /// (expired fails). Default `14d`; at most 365d.
    pub cert_warn: Duration,
}

/// Prints the keys as written: `url` (redacted) or `url_file`, never both, so that the
/// printed configuration loads again.
impl Serialize for Postgres {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            #[serde(flatten)]
            settings: &'a CheckSettings,
            #[serde(skip_serializing_if = "Option::is_none")]
            url: Option<&'a PostgresTarget>,
            #[serde(skip_serializing_if = "Option::is_none")]
            url_file: Option<&'a PathBuf>,
            saturation_warn: f64,
            saturation_fail: f64,
            #[serde(with = "duration")]
            long_query: Duration,
            pool_size: u32,
            #[serde(with = "duration")]
            cert_warn: Duration,
        }
        Shown {
            settings: &self.settings,
            url: self.url_file.is_none().then_some(&self.target),
            url_file: self.url_file.as_ref(),
            saturation_warn: self.saturation_warn,
            saturation_fail: self.saturation_fail,
            long_query: self.long_query,
            pool_size: self.pool_size,
            cert_warn: self.cert_warn,
        }
        .serialize(serializer)
    }
}

/// `[postgres]` as written: what [`Postgres`] is loaded from (see its fields for each key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresKeys {
    /// [`Postgres::target`] unparsed.
    #[serde(default)]
    url: Option<Secret<String>>,
    /// [`Postgres::url_file`].
    #[serde(default)]
    url_file: Option<PathBuf>,
    /// [`Postgres::saturation_warn`].
    #[serde(default = "default_saturation_warn")]
    saturation_warn: f64,
    /// [`Postgres::saturation_fail`].
    #[serde(default = "default_saturation_fail")]
    saturation_fail: f64,
    /// [`Postgres::long_query`].
    #[serde(default = "default_long_query", with = "duration")]
    long_query: Duration,
    /// [`Postgres::pool_size`].
    #[serde(default = "default_pool_size")]
    pool_size: u32,
    /// [`Postgres::cert_warn`].
    #[serde(default = "default_cert_warn", with = "duration")]
    cert_warn: Duration,
}

impl PostgresKeys {
    /// Reads `url_file`, parses the URL and validates the section.
    fn resolve(self, settings: CheckSettings) -> Result<Postgres, Invalid> {
        let (key, url) = match (self.url, &self.url_file) {
            (Some(_), Some(_)) => return Err(Invalid::new("postgres.url", "set either url or url_file, not both")),
            (None, None) => {
                return Err(Invalid::new(
                    "postgres.url",
                    "required: set url, url_file or the DATABASE_URL environment variable",
                ));
            }
            (None, Some(path)) => ("postgres.url_file", read_secret_file("postgres.url_file", path)?),
            (Some(url), None) => ("postgres.url", url),
        };
        let target = PostgresTarget::parse(url.expose()).map_err(|message| Invalid::new(key, message))?;
        let postgres = Postgres {
            settings,
            target,
            url_file: self.url_file,
            saturation_warn: self.saturation_warn,
            saturation_fail: self.saturation_fail,
            long_query: self.long_query,
            pool_size: self.pool_size,
            cert_warn: self.cert_warn,
        };
        postgres.validate()?;
        Ok(postgres)
    }
}

impl Postgres {
    /// The limits of the keys besides the URL (parsed before).
    pub fn validate(&self) -> Result<(), Invalid> {
        cert_warn("postgres.cert_warn", self.cert_warn)?;
        warn_below_fail(
            "postgres",
            ("saturation_warn", self.saturation_warn),
            ("saturation_fail", self.saturation_fail),
        )?;
        if self.long_query < Duration::from_secs(1) {
            return Err(Invalid::new(
                "postgres.long_query",
                format!("must be at least 1s, got {}", crate::fmt::duration(self.long_query)),
            ));
        }
        if !(1..=16).contains(&self.pool_size) {
            return Err(Invalid::new(
                "postgres.pool_size",
                format!("must be between 1 and 16, got {}", self.pool_size),
            ));
        }
        Ok(())
    }
}

/// `[gateway]`: the check named `gateway`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// `interval`, `timeout`, `failure_threshold`, `success_threshold` (from `[defaults]`) and
    /// `critical` (default true).
    #[serde(skip_deserializing, flatten)]
    pub settings: CheckSettings,
    /// The gateway's health endpoint, asked with `GET` on every run. Default none; an
    /// `http(s)` URL without credentials; `health_url`, `metrics_url` or both are required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<HttpUrl>,
    /// The gateway's Prometheus endpoint, scraped for its DB pool and served traffic. Default
    /// none; an `http(s)` URL without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<HttpUrl>,
    /// Which metric names carry the DB pool figures: `generic` (default), `hikaricp` or
    /// `go_sql`; the `pool_*_metric` keys override single names.
    #[serde(default)]
    pub pool_metrics: PoolPreset,
    /// The pool's connections in use, instead of the preset's name. Default none (the
    /// preset's); a Prometheus metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_in_use_metric: Option<String>,
    /// The pool's maximum size, instead of the preset's name. Default none; a metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_max_metric: Option<String>,
    /// The pool's waiting requests, instead of the preset's name. Default none; a metric name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_waiting_metric: Option<String>,
    /// Pool in use / max at which the check warns. Default 0.80; above 0, at most 1, below
    /// `pool_saturation_fail`.
    #[serde(default = "default_saturation_warn")]
    pub pool_saturation_warn: f64,
    /// Pool in use / max at which the check fails. Default 0.95; above 0, at most 1.
    #[serde(default = "default_saturation_fail")]
    pub pool_saturation_fail: f64,
    /// The gateway's request counter, with a `status` label. Default `http_requests_total`;
    /// a metric name.
    #[serde(default = "default_requests_metric")]
    pub requests_metric: String,
    /// The gateway's request duration histogram. Default `http_request_duration_seconds`;
    /// a metric name.
    #[serde(default = "default_duration_metric")]
    pub duration_metric: String,
    /// 5xx / all over `window` at which the check warns (the runbook's 5%). Default 0.05;
    /// above 0, at most 1.
    #[serde(default = "default_error_ratio_warn")]
    pub error_ratio_warn: f64,
    /// The error ratio at which the check fails readiness. Default none (it only warns);
    /// above 0, at most 1, above `error_ratio_warn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio_fail: Option<f64>,
    /// p95 of served requests over `window` at which the check warns (the runbook's 2 s).
    /// Default `2s`.
    #[serde(default = "default_latency_p95_warn", with = "duration")]
    pub latency_p95_warn: Duration,
    /// The p95 at which the check fails. Default none (it only warns); above
    /// `latency_p95_warn`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_duration")]
    pub latency_p95_fail: Option<Duration>,
    /// The span the error ratio and the p95 cover. Default `5m`; between the interval and 24h.
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
    /// How close the earliest `notAfter` of the certificate chain an https `health_url` or
    /// `metrics_url` presents may come before the check warns (expired fails). Default `14d`;
    /// at most 365d.
    #[serde(default = "default_cert_warn", with = "duration")]
    pub cert_warn: Duration,
}

/// `cert_warn`: at most a year.
fn cert_warn(key: &str, value: Duration) -> Result<(), Invalid> {
    if value > Duration::from_secs(365 * 86_400) {
        return Err(Invalid::new(
            key,
            format!("must be at most 365d, got {}", crate::fmt::duration(value)),
        ));
    }
    Ok(())
}

impl Gateway {
    pub fn validate(&self) -> Result<(), Invalid> {
        cert_warn("gateway.cert_warn", self.cert_warn)?;
        if self.health_url.is_none() && self.metrics_url.is_none() {
            return Err(Invalid::new(
                "gateway.health_url",
                "required: set health_url, metrics_url or both",
            ));
        }
        warn_below_fail(
            "gateway",
            ("pool_saturation_warn", self.pool_saturation_warn),
            ("pool_saturation_fail", self.pool_saturation_fail),
        )?;
        ratio("gateway.error_ratio_warn", self.error_ratio_warn)?;
        if let Some(fail) = self.error_ratio_fail {
            warn_below_fail(
                "gateway",
                ("error_ratio_warn", self.error_ratio_warn),
                ("error_ratio_fail", fail),
            )?;
        }
        if let Some(fail) = self.latency_p95_fail
            && fail <= self.latency_p95_warn
        {
            return Err(Invalid::new(
                "gateway.latency_p95_fail",
                format!(
                    "must exceed latency_p95_warn ({}), got {}",
                    crate::fmt::duration(self.latency_p95_warn),
                    crate::fmt::duration(fail)
                ),
            ));
        }
        for (key, name) in [
            ("gateway.pool_in_use_metric", &self.pool_in_use_metric),
            ("gateway.pool_max_metric", &self.pool_max_metric),
            ("gateway.pool_waiting_metric", &self.pool_waiting_metric),
        ] {
            if let Some(name) = name {
                metric_name(key, name)?;
            }
        }
        metric_name("gateway.requests_metric", &self.requests_metric)?;
        metric_name("gateway.duration_metric", &self.duration_metric)?;
        window("gateway.window", self.window, self.settings.interval)
    }
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

/// `[jwt]`: the check named `jwt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jwt {
    /// `interval`, `timeout`, `failure_threshold`, `success_threshold` (from `[defaults]`) and
    /// `critical` (default true).
    #[serde(skip_deserializing, flatten)]
    pub settings: CheckSettings,
    /// The algorithm the gateway verifies with. Default `HS256`; `HS256`, `HS384`, `HS512`
    /// (need `secret_file` or `secret_env`), `RS256`, `ES256` (need `jwks_url`).
    #[serde(default)]
    pub algorithm: JwtAlgorithm,
    /// A file holding the shared secret, used byte for byte. Re-read on every run, so that a
    /// Secret rotation is seen within one interval. Default none; with an `HS*` algorithm,
    /// exactly one of `secret_file` and `secret_env` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The name of the environment variable holding the secret (not the secret). Default
    /// none; letters, digits and `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// The `iss` claim of the probe tokens vigil signs. Default none (no claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The `aud` claim of the probe tokens vigil signs. Default none (no claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The gateway endpoint that a valid and a forged probe token are sent to (end-to-end
    /// test). Default none; an `http(s)` URL without credentials; `HS*` algorithms only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate_url: Option<HttpUrl>,
    /// The auth service's JWKS. Default none; an `http(s)` URL without credentials; required
    /// for `RS256` and `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<HttpUrl>,
    /// A PEM file of extra CA certificates for an https `validate_url` or `jwks_url` (beside the
    /// built-in Mozilla roots; an in-cluster auth service's private CA), read when the check is
    /// built. Default none; must hold at least one certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How close the earliest `notAfter` of the certificate chains an https `validate_url` or
    /// `jwks_url` presents may come before the check warns (expired fails). Default `14d`; at
    /// most 365d.
    #[serde(default = "default_cert_warn", with = "duration")]
    pub cert_warn: Duration,
}

impl Jwt {
    pub fn validate(&self) -> Result<(), Invalid> {
        cert_warn("jwt.cert_warn", self.cert_warn)?;
        if self.algorithm.uses_shared_secret() {
            match (&self.secret_file, &self.secret_env) {
                (Some(_), Some(_)) => {
                    return Err(Invalid::new(
                        "jwt.secret_file",
                        "set either secret_file or secret_env, not both",
                    ));
                }
                (None, None) => {
                    return Err(Invalid::new(
                        "jwt.secret_file",
                        format!("required for {:?}: set secret_file or secret_env", self.algorithm),
                    ));
                }
                _ => {}
            }
        } else if self.jwks_url.is_none() {
            return Err(Invalid::new(
                "jwt.jwks_url",
                format!("required for {:?}", self.algorithm),
            ));
        } else if self.validate_url.is_some() {
            // The probe tokens are signed with the shared secret; vigil holds no private key.
            return Err(Invalid::new(
                "jwt.validate_url",
                format!(
                    "needs HS256, HS384 or HS512 (vigil signs its probe tokens with the shared secret), got {:?}",
                    self.algorithm
                ),
            ));
        }
        if let Some(name) = &self.secret_env
            && (name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(Invalid::new(
                "jwt.secret_env",
                format!("must be an environment variable name, got {name:?}"),
            ));
        }
        Ok(())
    }
}

/// The JWT signing algorithm the gateway uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and the shared secret (the default).
    #[default]
    HS256,
    /// HMAC with SHA-384 and the shared secret.
    HS384,
    /// HMAC with SHA-512 and the shared secret.
    HS512,
    /// RSA with SHA-256; keys from `jwks_url`.
    RS256,
    /// ECDSA P-256 with SHA-256; keys from `jwks_url`.
    ES256,
}

impl JwtAlgorithm {
    fn uses_shared_secret(self) -> bool {
        matches!(self, JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512)
    }
}

/// `[system]`: the check named `system`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// `interval`, `timeout`, `failure_threshold`, `success_threshold` (from `[defaults]`) and
    /// `critical` (default false).
    #[serde(skip_deserializing, flatten)]
    pub settings: CheckSettings,
    /// `false` turns the check off. Default true (it runs without a `[system]` section).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Share of the container's CPU limit (of the host's cores without one) that warns.
    /// Default 0.80; above 0, at most 1.
    #[serde(default = "default_cpu_warn")]
    pub cpu_warn: f64,
    /// Share of the container's memory limit that warns. Default 0.90; above 0, at most 1.
    #[serde(default = "default_memory_warn")]
    pub memory_warn: f64,
    /// Where the cgroup filesystem is mounted. Default `/sys/fs/cgroup`.
    #[serde(default = "default_cgroup_root")]
    pub cgroup_root: PathBuf,
}

impl System {
    pub fn validate(&self) -> Result<(), Invalid> {
        ratio("system.cpu_warn", self.cpu_warn)?;
        ratio("system.memory_warn", self.memory_warn)
    }
}

/// One `[[upstream]]`: the check named `upstream:<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `interval`, `timeout`, `failure_threshold`, `success_threshold` (from `[defaults]`) and
    /// `critical` (default false).
    #[serde(skip_deserializing, flatten)]
    pub settings: CheckSettings,
    /// The check's name after `upstream:`. Required; 1 to 64 letters, digits, `-`, `_`, `.`;
    /// unique among the upstreams.
    pub name: String,
    /// What each run asks; the scheme picks the protocol. Required; an `http(s)` URL without
    /// credentials, `grpc://host:port` (gRPC health over h2c) or `grpcs://host:port` (over TLS,
    /// ALPN h2), or `tcp://host:port` (connect only) or `tls://host:port` (connect and TLS
    /// handshake, certificate read).
    pub url: UpstreamUrl,
    /// `"1.1"`, `"2"` or `"auto"` (default): which HTTP an http(s) upstream is asked in. `auto`
    /// offers h2 and http/1.1 by ALPN on https and speaks HTTP/1.1 on plain http (h2c is never
    /// guessed); `"2"` insists on HTTP/2 (h2c prior knowledge on http). Only on http(s) upstreams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_version: Option<HttpVersion>,
    /// The service asked of `grpc.health.v1.Health/Check`. Default `""` (the server as a whole);
    /// at most 200 characters, no control characters. Only on grpc(s) upstreams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_service: Option<String>,
    /// The request's method. Default `GET`; one of `GET`, `HEAD`, `POST`, `PUT`, `OPTIONS`.
    #[serde(default = "default_method", with = "method")]
    pub method: Method,
    /// Extra request headers, a table of name to value, sent in the file's order. Default
    /// none; valid header names and values. The values may be credentials: they are marked
    /// sensitive and printed `<redacted>`.
    #[serde(default, with = "headers", skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Which statuses count as up. Default `"2xx"`; `"1xx"` to `"5xx"` or a non-empty list of
    /// codes (100 to 599) such as `[200, 204]`.
    #[serde(default)]
    pub expect_status: ExpectStatus,
    /// p95 over `window` at which the check warns. Default `1s`; below `latency_fail`.
    #[serde(default = "default_latency_warn", with = "duration")]
    pub latency_warn: Duration,
    /// p95 over `window` at which the check fails. Default `2s`.
    #[serde(default = "default_latency_fail", with = "duration")]
    pub latency_fail: Duration,
    /// The span the latency percentiles cover. Default `5m`; between the interval and 24h.
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
    /// A PEM file of extra CA certificates for https, grpcs and tls (beside the built-in Mozilla roots), read
    /// when the check is built. Default none; must hold at least one certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How close the earliest `notAfter` of the certificate chain an https, grpcs or tls upstream presents
    /// may come before the check warns (expired fails). Default `14d`; at most 365d.
    #[serde(default = "default_cert_warn", with = "duration")]
    pub cert_warn: Duration,
    /// `first` (default): connect to the first address that answers (Happy Eyeballs); `all`:
    /// probe every address the name resolves to (at most 64), each in the same run.
    #[serde(default)]
    pub addresses: AddressMode,
}

/// `upstream[].http_version`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpVersion {
    /// HTTP/1.1 only (ALPN `http/1.1` on https).
    #[serde(rename = "1.1")]
    Http1,
    /// HTTP/2 only: ALPN `h2` on https (a server that does not choose it fails), h2c with prior
    /// knowledge on http.
    #[serde(rename = "2")]
    Http2,
    /// ALPN offers `h2` and `http/1.1` on https and the server chooses; HTTP/1.1 on http.
    #[default]
    #[serde(rename = "auto")]
    Auto,
}

/// `upstream[].addresses`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressMode {
    /// The first address that answers.
    #[default]
    First,
    /// Every address, each probed: pass when all pass, warn naming those that fail, fail when all fail.
    All,
}

impl Upstream {
    /// The limits of one entry at `prefix` (`upstream[0]`); names unique among all is
    /// [`validate_upstreams`]'s.
    pub fn validate(&self, prefix: &str) -> Result<(), Invalid> {
        let name = &self.name;
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(Invalid::new(
                format!("{prefix}.name"),
                format!("must be 1 to 64 characters of letters, digits, '-', '_' and '.', got {name:?}"),
            ));
        }
        if self.latency_warn >= self.latency_fail {
            return Err(Invalid::new(
                format!("{prefix}.latency_warn"),
                format!(
                    "must be below latency_fail ({}), got {}",
                    crate::fmt::duration(self.latency_fail),
                    crate::fmt::duration(self.latency_warn)
                ),
            ));
        }
        cert_warn(&format!("{prefix}.cert_warn"), self.cert_warn)?;
        self.validate_kind_keys(prefix)?;
        window(&format!("{prefix}.window"), self.window, self.settings.interval)
    }

    /// `http_version` only on http(s), `grpc_service` only on grpc(s): a key that the URL's
    /// kind would ignore is refused, naming it, rather than silently doing nothing.
    fn validate_kind_keys(&self, prefix: &str) -> Result<(), Invalid> {
        let is_http = matches!(self.url, UpstreamUrl::Http(_));
        let is_grpc = matches!(self.url, UpstreamUrl::Grpc(_) | UpstreamUrl::Grpcs(_));
        if self.http_version.is_some() && !is_http {
            return Err(Invalid::new(
                format!("{prefix}.http_version"),
                format!(
                    "applies only to http:// and https:// upstreams, not to {}",
                    self.url.as_str()
                ),
            ));
        }
        match &self.grpc_service {
            Some(_) if !is_grpc => Err(Invalid::new(
                format!("{prefix}.grpc_service"),
                format!(
                    "applies only to grpc:// and grpcs:// upstreams, not to {}",
                    self.url.as_str()
                ),
            )),
            Some(service) if service.chars().count() > 200 || service.chars().any(char::is_control) => {
                Err(Invalid::new(
                    format!("{prefix}.grpc_service"),
                    "must be at most 200 characters without control characters, such as \"orders.v1.Orders\"",
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Every entry's own limits, and names unique among them.
pub fn validate_upstreams(upstreams: &[Upstream]) -> Result<(), Invalid> {
    for (index, upstream) in upstreams.iter().enumerate() {
        let prefix = format!("upstream[{index}]");
        upstream.validate(&prefix)?;
        if upstreams[..index].iter().any(|u| u.name == upstream.name) {
            return Err(Invalid::new(
                format!("{prefix}.name"),
                format!("{:?} names another upstream too; names must be unique", upstream.name),
            ));
        }
    }
    Ok(())
}

/// Which HTTP statuses count as up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectStatus {
    /// A class such as `2xx`: the hundreds digit.
    Class(u16),
    /// These codes exactly, such as `[200, 204]`.
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

/// An absolute `http` or `https` URL naming a host and no credentials, parsed at load: the
/// text as written (for reasons and `/diag`) and the [`http::Uri`] requests are made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// As written in the configuration.
    text: String,
    /// The same, parsed: what requests are made with.
    uri: http::Uri,
}

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
        Ok(HttpUrl {
            text: text.to_owned(),
            uri,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn uri(&self) -> &http::Uri {
        &self.uri
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HttpUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HttpUrl::parse(&text).map_err(de::Error::custom)
    }
}

/// `upstream[].url`: what the scheme says to speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamUrl {
    /// `http://` or `https://`: one request per run.
    Http(HttpUrl),
    /// `tcp://host:port`: a connection per run, nothing sent.
    Tcp(SocketTarget),
    /// `tls://host:port`: a connection and a TLS handshake per run (the certificate is read).
    Tls(SocketTarget),
    /// `grpc://host:port`: `grpc.health.v1.Health/Check` over HTTP/2 without TLS (h2c).
    Grpc(SocketTarget),
    /// `grpcs://host:port`: the same over TLS, ALPN h2 (the certificate is read).
    Grpcs(SocketTarget),
}

/// A `host:port` to connect to, with the URL as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketTarget {
    text: String,
    pub host: String,
    pub port: u16,
}

impl SocketTarget {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl UpstreamUrl {
    pub fn parse(text: &str) -> Result<UpstreamUrl, String> {
        let socket = |rest: &str| -> Result<SocketTarget, String> {
            let authority = rest.trim_end_matches('/');
            let uri: http::uri::Authority = authority
                .parse()
                .map_err(|e| format!("not a host:port ({e}): {text:?}"))?;
            if authority.contains('@') {
                return Err("must not carry credentials (user:password@)".to_owned());
            }
            let port = uri
                .port_u16()
                .ok_or_else(|| format!("must name a port, such as {text}:6379"))?;
            let host = uri.host().trim_start_matches('[').trim_end_matches(']').to_owned();
            if host.is_empty() {
                return Err(format!("must name a host, got {text:?}"));
            }
            Ok(SocketTarget {
                text: text.to_owned(),
                host,
                port,
            })
        };
        if let Some(rest) = text.strip_prefix("tcp://") {
            return socket(rest).map(UpstreamUrl::Tcp);
        }
        if let Some(rest) = text.strip_prefix("tls://") {
            return socket(rest).map(UpstreamUrl::Tls);
        }
        if let Some(rest) = text.strip_prefix("grpc://") {
            return socket(rest).map(UpstreamUrl::Grpc);
        }
        if let Some(rest) = text.strip_prefix("grpcs://") {
            return socket(rest).map(UpstreamUrl::Grpcs);
        }
        HttpUrl::parse(text).map(UpstreamUrl::Http).map_err(|e| {
            e.replace(
                "must be an http:// or https:// URL",
                "must be an http://, https://, grpc://, grpcs://, tcp:// or tls:// URL",
            )
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            UpstreamUrl::Http(url) => url.as_str(),
            UpstreamUrl::Tcp(target)
            | UpstreamUrl::Tls(target)
            | UpstreamUrl::Grpc(target)
            | UpstreamUrl::Grpcs(target) => target.as_str(),
        }
    }
}

impl Serialize for UpstreamUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for UpstreamUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        UpstreamUrl::parse(&text).map_err(de::Error::custom)
    }
}

/// What a secret of the wrong type is refused with: serde's own message quotes the value
/// (`invalid type: integer `12345678``).
const SECRET_NOT_A_STRING: &str = "must be a string (the value is not shown: it is a secret)";

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer)
            .map(Secret::new)
            .map_err(|_| de::Error::custom(SECRET_NOT_A_STRING))
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

/// A share that must be above 0 and at most 1.
fn ratio(key: &str, value: f64) -> Result<(), Invalid> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(Invalid::new(key, format!("must be between 0 and 1, got {value}")))
    }
}

fn warn_below_fail(prefix: &str, warn: (&str, f64), fail: (&str, f64)) -> Result<(), Invalid> {
    ratio(&format!("{prefix}.{}", warn.0), warn.1)?;
    ratio(&format!("{prefix}.{}", fail.0), fail.1)?;
    if warn.1 >= fail.1 {
        return Err(Invalid::new(
            format!("{prefix}.{}", warn.0),
            format!("must be below {} ({}), got {}", fail.0, fail.1, warn.1),
        ));
    }
    Ok(())
}

fn metric_name(key: &str, name: &str) -> Result<(), Invalid> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(Invalid::new(key, format!("not a Prometheus metric name: {name:?}")))
    }
}

fn window(key: &str, window: Duration, interval: Duration) -> Result<(), Invalid> {
    if window < interval || window > Duration::from_secs(24 * 3600) {
        return Err(Invalid::new(
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
fn default_panic_threshold() -> f64 {
    0.5
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
fn default_cert_warn() -> Duration {
    Duration::from_secs(14 * 86_400)
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
fn default_token_file() -> PathBuf {
    PathBuf::from(SERVICE_ACCOUNT_TOKEN)
}
fn default_ca_file() -> PathBuf {
    PathBuf::from(SERVICE_ACCOUNT_CA)
}
fn default_restart_window() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_cgroup_root() -> PathBuf {
    PathBuf::from("/sys/fs/cgroup")
}
fn default_method() -> Method {
    Method::GET
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
    /// [`CheckSettings::interval`].
    #[serde(default, with = "opt_duration")]
    interval: Option<Duration>,
    /// [`CheckSettings::timeout`].
    #[serde(default, with = "opt_duration")]
    timeout: Option<Duration>,
    /// [`CheckSettings::failure_threshold`].
    failure_threshold: Option<u32>,
    /// [`CheckSettings::success_threshold`].
    success_threshold: Option<u32>,
    /// [`CheckSettings::critical`].
    critical: Option<bool>,
    /// [`CheckSettings::scope`].
    scope: Option<Scope>,
}

const COMMON_KEYS: [&str; 6] = [
    "interval",
    "timeout",
    "failure_threshold",
    "success_threshold",
    "critical",
    "scope",
];

/// Loads and validates the configuration.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    if let Some(name) = sources.not_utf8.first() {
        return Err(ConfigError::Invalid {
            key: name.clone(),
            message: "the environment variable is not UTF-8 text".to_owned(),
        });
    }
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
    let text = crate::files::read_text(path, crate::files::CONFIG_CAP).map_err(|source| ConfigError::Read {
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

/// Overlays the environment on the file and hands each section its table; it carries, through
/// resolution, which keys the environment set, so that errors can say so. What a section's
/// keys mean and what they may be is the section type's (its fields and its `validate`).
#[derive(Default)]
struct Loader {
    /// `postgres.saturation_warn` → `VIGIL_POSTGRES__SATURATION_WARN`.
    env_origin: HashMap<String, String>,
    /// `$POD_IP`, for `[fleet]`'s own address.
    pod_ip: Option<String>,
    /// What `[kubernetes]` takes its defaults from.
    kubernetes_env: KubernetesEnv,
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

    /// A section's refusal, with the environment variable that set the key if one did.
    fn refuse(&self, invalid: Invalid) -> ConfigError {
        self.invalid(&invalid.key, invalid.message)
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

        self.pod_ip = env.iter().find(|(k, _)| k == POD_IP).map(|(_, v)| v.clone());
        self.kubernetes_env = KubernetesEnv::read(env);
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

    /// `listen`, the default when absent.
    fn listen(&self, value: Option<toml::Value>) -> Result<SocketAddr, ConfigError> {
        let listen = match value {
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
        Ok(listen)
    }

    fn resolve(&self, mut root: toml::Table) -> Result<Config, ConfigError> {
        let listen = self.listen(root.remove("listen"))?;
        let defaults: Defaults = self.table_or_default(&mut root, "defaults")?;
        defaults.validate().map_err(|e| self.refuse(e))?;
        let shutdown: Shutdown = self.table_or_default(&mut root, "shutdown")?;
        shutdown.validate().map_err(|e| self.refuse(e))?;
        let mut diag: Diag = self.table_or_default(&mut root, "diag")?;
        diag.resolve().map_err(|e| self.refuse(e))?;

        let postgres = match self.section::<PostgresKeys>(&mut root, "postgres", &defaults, (true, Scope::Shared))? {
            Some((keys, settings)) => Some(keys.resolve(settings).map_err(|e| self.refuse(e))?),
            None => None,
        };
        let gateway = match self.section::<Gateway>(&mut root, "gateway", &defaults, (true, Scope::Local))? {
            Some((mut gateway, settings)) => {
                gateway.settings = settings;
                gateway.validate().map_err(|e| self.refuse(e))?;
                Some(gateway)
            }
            None => None,
        };
        let jwt = match self.section::<Jwt>(&mut root, "jwt", &defaults, (true, Scope::Shared))? {
            Some((mut jwt, settings)) => {
                jwt.settings = settings;
                jwt.validate().map_err(|e| self.refuse(e))?;
                Some(jwt)
            }
            None => None,
        };
        // Absent, `[system]` runs with every default.
        let system_table = match root.remove("system") {
            None => toml::Table::new(),
            Some(toml::Value::Table(table)) => table,
            Some(_) => return Err(self.invalid("system", "expected a table, such as [system]")),
        };
        let (mut system, settings): (System, _) =
            self.parse_section(system_table, "system", &defaults, (false, Scope::Local))?;
        system.settings = settings;
        system.validate().map_err(|e| self.refuse(e))?;
        let system = Some(system).filter(|s| s.enabled);
        let upstreams = self.upstreams(&mut root, &defaults)?;
        let fleet = match root.remove("fleet") {
            None => None,
            Some(toml::Value::Table(table)) => {
                let keys: FleetKeys = self.deserialize(table, "fleet")?;
                Some(
                    keys.resolve(listen, self.pod_ip.as_deref())
                        .map_err(|e| self.refuse(e))?,
                )
            }
            Some(_) => return Err(self.invalid("fleet", "expected a table, such as [fleet]")),
        };
        let kubernetes =
            match self.section::<KubernetesKeys>(&mut root, "kubernetes", &defaults, (false, Scope::Local))? {
                Some((keys, settings)) => Some(
                    keys.resolve(settings, &self.kubernetes_env)
                        .map_err(|e| self.refuse(e))?,
                ),
                None => None,
            };

        if let Some(key) = root.keys().next() {
            return Err(self.invalid(
                key,
                "unknown key; expected one of listen, defaults, shutdown, diag, postgres, gateway, jwt, system, upstream, fleet, kubernetes",
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
            fleet,
            kubernetes,
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

    /// A check section: its common keys inherit from `[defaults]` (returned as its
    /// [`CheckSettings`]), the rest is `T`.
    fn section<T: DeserializeOwned>(
        &self,
        root: &mut toml::Table,
        key: &str,
        defaults: &Defaults,
        section_defaults: (bool, Scope),
    ) -> Result<Option<(T, CheckSettings)>, ConfigError> {
        match root.remove(key) {
            None => Ok(None),
            Some(toml::Value::Table(table)) => self.parse_section(table, key, defaults, section_defaults).map(Some),
            Some(_) => Err(self.invalid(key, format!("expected a table, such as [{key}]"))),
        }
    }

    fn parse_section<T: DeserializeOwned>(
        &self,
        mut table: toml::Table,
        prefix: &str,
        defaults: &Defaults,
        (critical, scope): (bool, Scope),
    ) -> Result<(T, CheckSettings), ConfigError> {
        let mut common = toml::Table::new();
        for key in COMMON_KEYS {
            if let Some(value) = table.remove(key) {
                common.insert(key.to_owned(), value);
            }
        }
        let common: CommonKeys = self.deserialize(common, prefix)?;
        let section: T = self.deserialize(table, prefix)?;
        let settings = CheckSettings {
            interval: common.interval.unwrap_or(defaults.interval),
            timeout: common.timeout.unwrap_or(defaults.timeout),
            failure_threshold: common.failure_threshold.unwrap_or(defaults.failure_threshold),
            success_threshold: common.success_threshold.unwrap_or(defaults.success_threshold),
            critical: common.critical.unwrap_or(critical),
            scope: common.scope.unwrap_or(scope),
        };
        settings.validate(prefix).map_err(|e| self.refuse(e))?;
        Ok((section, settings))
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
            let (mut upstream, settings): (Upstream, _) =
                self.parse_section(table, &prefix, defaults, (false, Scope::Shared))?;
            upstream.settings = settings;
            upstreams.push(upstream);
        }
        validate_upstreams(&upstreams).map_err(|e| self.refuse(e))?;
        Ok(upstreams)
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

/// Serde for an upstream's `method`: one of the methods a health endpoint answers.
mod method {
    use http::Method;
    use serde::{Deserialize, Deserializer, Serializer, de};

    const ALLOWED: [Method; 5] = [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::OPTIONS];

    pub fn serialize<S: Serializer>(value: &Method, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(value.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Method, D::Error> {
        let text = String::deserialize(deserializer)?;
        ALLOWED
            .into_iter()
            .find(|method| method.as_str() == text)
            .ok_or_else(|| de::Error::custom(format!("must be one of GET, HEAD, POST, PUT, OPTIONS, got {text:?}")))
    }
}

/// Serde for an upstream's `headers`: a table of header name to value, read into the
/// [`http`] types in the file's order, every value marked sensitive; printed with every value
/// `<redacted>`. No message quotes a value.
mod headers {
    use std::fmt;

    use http::{HeaderName, HeaderValue};
    use serde::de::{self, MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secret::Secret;

    pub fn serialize<S: Serializer>(headers: &[(HeaderName, HeaderValue)], serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(headers.len()))?;
        for (name, _) in headers {
            map.serialize_entry(name.as_str(), &Secret::new(()))?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<(HeaderName, HeaderValue)>, D::Error> {
        deserializer.deserialize_map(Headers)
    }

    struct Headers;

    impl<'de> Visitor<'de> for Headers {
        type Value = Vec<(HeaderName, HeaderValue)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table of header names to values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut headers = Vec::new();
            while let Some(name) = map.next_key::<String>()? {
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| de::Error::custom(format!("not a valid header name: {name:?}")))?;
                let SensitiveValue(value) = map.next_value()?;
                headers.push((header, value));
            }
            Ok(headers)
        }
    }

    /// A header value, refused without being quoted.
    struct SensitiveValue(HeaderValue);

    impl<'de> Deserialize<'de> for SensitiveValue {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = String::deserialize(deserializer).map_err(|_| de::Error::custom(super::SECRET_NOT_A_STRING))?;
            let mut value = HeaderValue::from_str(&text).map_err(|_| de::Error::custom("not a valid header value"))?;
            value.set_sensitive(true);
            Ok(SensitiveValue(value))
        }
    }
}

impl Config {
    /// The effective configuration as TOML, every secret printed as `<redacted>`. With the
    /// secrets put back, it loads again to the same configuration.
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
    fn kubernetes_takes_its_defaults_from_the_pod_and_names_bad_keys() {
        let in_pod = [
            ("KUBERNETES_SERVICE_HOST", "fd00::1"),
            ("KUBERNETES_SERVICE_PORT", "6443"),
            ("POD_NAMESPACE", "api-gateway"),
            ("HOSTNAME", "gw-7d9f8-x2x4q"),
        ];
        let config = load_str("[kubernetes]\nservice = \"api-gateway-service\"\n", &in_pod).unwrap();
        let k = config.kubernetes.as_ref().unwrap();
        assert_eq!(k.api_url.as_str(), "https://[fd00::1]:6443", "IPv6 bracketed");
        assert_eq!(
            (k.namespace.as_str(), k.pod.as_str()),
            ("api-gateway", "gw-7d9f8-x2x4q")
        );
        assert_eq!(k.token_file, Path::new(SERVICE_ACCOUNT_TOKEN));
        assert_eq!((k.cpu_warn, k.memory_warn, k.events), (0.8, 0.9, true));
        assert_eq!(k.restart_window, Duration::from_secs(900));
        assert_eq!((k.settings.critical, k.settings.scope), (false, Scope::Local));
        let again = load_str(&config.to_redacted_toml(), &[]).unwrap();
        assert_eq!(
            again, config,
            "the printed configuration loads again, outside the pod too"
        );

        let with_name = load_str(
            "[kubernetes]\n",
            &[
                ("POD_NAME", "gw-1"),
                ("HOSTNAME", "h"),
                ("POD_NAMESPACE", "n"),
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ],
        )
        .unwrap();
        let k = with_name.kubernetes.unwrap();
        assert_eq!((k.pod.as_str(), k.api_url.as_str()), ("gw-1", "https://10.96.0.1:443"));

        let (dir, token) = crate::files::temp_file("token", "t");
        std::fs::write(dir.path().join("namespace"), "from-file\n").unwrap();
        let from_file = load_str(
            &format!(
                "[kubernetes]\napi_url = \"https://k8s.local\"\npod = \"p\"\ntoken_file = {:?}\n",
                token.display().to_string()
            ),
            &[],
        )
        .unwrap();
        assert_eq!(from_file.kubernetes.unwrap().namespace, "from-file");

        for (toml, env, expected) in [
            (
                "[kubernetes]\npod = \"p\"\nnamespace = \"n\"\n",
                &[][..],
                "kubernetes.api_url: required outside a pod",
            ),
            (
                "[kubernetes]\napi_url = \"http://k8s\"\npod = \"p\"\nnamespace = \"n\"\n",
                &[][..],
                "kubernetes.api_url: must be an https:// URL",
            ),
            (
                "[kubernetes]\napi_url = \"https://k8s/api\"\npod = \"p\"\nnamespace = \"n\"\n",
                &[][..],
                "kubernetes.api_url: must name the server only",
            ),
            (
                "[kubernetes]\napi_url = \"https://k8s\"\nnamespace = \"n\"\n",
                &[][..],
                "kubernetes.pod: required",
            ),
            (
                "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\ntoken_file = \"/nonexistent/token\"\n",
                &[][..],
                "kubernetes.namespace: required",
            ),
            (
                "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\nnamespace = \"Bad_NS\"\n",
                &[][..],
                "kubernetes.namespace: must be a DNS label",
            ),
            (
                "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\nnamespace = \"n\"\nservice = \"a/b\"\n",
                &[][..],
                "kubernetes.service: must be a DNS label",
            ),
            (
                "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\nnamespace = \"n\"\ncpu_warn = 1.5\n",
                &[][..],
                "kubernetes.cpu_warn: must be between 0 and 1, got 1.5",
            ),
            (
                "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\nnamespace = \"n\"\nrestart_window = \"10s\"\n",
                &[][..],
                "kubernetes.restart_window: must be between 1m and 24h, got 10s",
            ),
            (
                "[kubernetes]\napi_url = \"https://k8s\"\npod = \"p\"\nnamespace = \"n\"\nwatch = true\n",
                &[][..],
                "kubernetes.watch: unknown key",
            ),
            (
                "[kubernetes]\n",
                &[
                    ("POD_NAMESPACE", "n"),
                    ("POD_NAME", "UPPER"),
                    ("KUBERNETES_SERVICE_HOST", "h"),
                ][..],
                "kubernetes.pod: must be a DNS subdomain",
            ),
        ] {
            let message = error(toml, env);
            assert!(message.starts_with(expected), "{toml}: {message}");
        }
    }

    #[test]
    fn scope_defaults_per_section_and_can_be_set() {
        let config = load_str(
            "[postgres]\nurl = \"postgres://u@db/gw\"\n[gateway]\nhealth_url = \"http://127.0.0.1:8080/\"\n\
             [jwt]\nsecret_env = \"S\"\nscope = \"local\"\n[[upstream]]\nname = \"a\"\nurl = \"http://a/\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.postgres.as_ref().unwrap().settings.scope, Scope::Shared);
        assert_eq!(config.gateway.as_ref().unwrap().settings.scope, Scope::Local);
        assert_eq!(
            config.jwt.as_ref().unwrap().settings.scope,
            Scope::Local,
            "set per section"
        );
        assert_eq!(config.upstreams[0].settings.scope, Scope::Shared);
        assert_eq!(config.system.as_ref().unwrap().settings.scope, Scope::Local);
        let shown = config.to_redacted_toml();
        assert!(shown.contains("scope = \"shared\""), "{shown}");
        assert_eq!(
            error("[system]\nscope = \"global\"\n", &[]),
            "system.scope: unknown variant `global`, expected `shared` or `local`"
        );
    }

    #[test]
    fn fleet_peers_are_a_name_or_a_list_and_the_own_address_is_pod_ip_else_listen() {
        let named = load_str(
            "[fleet]\npeers = \"api-gateway-peers.gw.svc\"\n",
            &[("POD_IP", "10.0.0.7")],
        )
        .unwrap();
        let fleet = named.fleet.as_ref().unwrap();
        assert_eq!(fleet.panic_threshold, 0.5);
        assert_eq!(fleet.peers.targets()[0].host, "api-gateway-peers.gw.svc");
        assert_eq!(fleet.peers.targets()[0].port, 9476, "vigil's listen port");
        assert_eq!(
            (fleet.own_ip, fleet.own_ip_source),
            (Some("10.0.0.7".parse().unwrap()), "POD_IP")
        );
        assert!(
            named
                .to_redacted_toml()
                .contains("[fleet]\npeers = \"api-gateway-peers.gw.svc\"")
        );
        assert_eq!(
            load_str(&named.to_redacted_toml(), &[("POD_IP", "10.0.0.7")]).unwrap(),
            named
        );

        let listed = load_str(
            "listen = \"127.0.0.2:7000\"\n[fleet]\npeers = [\"127.0.0.3:7000\", \"[::1]:7001\", \"peer-4\"]\npanic_threshold = 0.75\n",
            &[],
        )
        .unwrap();
        let fleet = listed.fleet.unwrap();
        let targets: Vec<(&str, u16)> = fleet
            .peers
            .targets()
            .iter()
            .map(|t| (t.host.as_str(), t.port))
            .collect();
        assert_eq!(targets, [("127.0.0.3", 7000), ("::1", 7001), ("peer-4", 7000)]);
        assert_eq!(
            (fleet.own_ip, fleet.own_ip_source),
            (Some("127.0.0.2".parse().unwrap()), "listen")
        );
        let unspecified = load_str("[fleet]\npeers = \"p\"\n", &[]).unwrap().fleet.unwrap();
        assert_eq!(unspecified.own_ip, None, "0.0.0.0 is no address of this replica");

        for (toml, env, expected) in [
            ("[fleet]\n", &[][..], "fleet: missing field `peers`"),
            (
                "[fleet]\npeers = []\n",
                &[],
                "fleet.peers: must list 1 to 256 peers, got 0",
            ),
            (
                "[fleet]\npeers = [\"a:0\"]\n",
                &[],
                "fleet.peers[0]: expected host:port with a port from 1 to 65535, got \"a:0\"",
            ),
            (
                "[fleet]\npeers = \"a b\"\n",
                &[],
                "fleet.peers: expected an IP address or a DNS name, got \"a b\"",
            ),
            (
                "[fleet]\npeers = \"p\"\npanic_threshold = 0\n",
                &[],
                "fleet.panic_threshold: must be between 0 and 1, got 0",
            ),
            (
                "[fleet]\npeers = \"p\"\npanic_threshold = 1.5\n",
                &[],
                "fleet.panic_threshold: must be between 0 and 1, got 1.5",
            ),
            (
                "[fleet]\npeers = \"p\"\n",
                &[("POD_IP", "pod-1")],
                "POD_IP: must be this pod's IP address (the downward API's status.podIP), got \"pod-1\"",
            ),
            (
                "[fleet]\npeers = \"p\"\n",
                &[("VIGIL_FLEET__PANIC_THRESHOLD", "2")],
                "fleet.panic_threshold (from VIGIL_FLEET__PANIC_THRESHOLD): must be between 0 and 1, got 2",
            ),
        ] {
            assert_eq!(error(toml, env), expected);
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
        assert_eq!(
            postgres.target,
            PostgresTarget::parse("postgres://gw:pw@127.0.0.1/gw").unwrap()
        );
        assert_eq!(postgres.target.config.get_password(), Some(&b"pw"[..]));
        let explicit = load_str(
            "[postgres]\nurl = \"postgres://a@b/c\"\n",
            &[("DATABASE_URL", "postgres://x@y/z")],
        )
        .unwrap();
        assert_eq!(explicit.postgres.unwrap().target.config.get_dbname(), Some("c"));
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
                "colour: unknown key; expected one of listen, defaults, shutdown, diag, postgres, gateway, jwt, system, upstream, fleet, kubernetes",
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

    /// A configuration that sets every key of every section (a value besides the default
    /// where there is one).
    const EVERY_SECTION: &str = r#"listen = "127.0.0.1:9999"
[defaults]
interval = "10s"
timeout = "3s"
failure_threshold = 3
success_threshold = 2
[shutdown]
drain = "30s"
[diag]
token = "diag-secret"
[postgres]
url = "postgres://gw:db-secret@db.example:6432/gateway?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3"
saturation_warn = 0.7
saturation_fail = 0.9
long_query = "1m 30s"
pool_size = 4
critical = false
[gateway]
health_url = "http://127.0.0.1:8080/healthz"
metrics_url = "http://127.0.0.1:8080/metrics"
pool_metrics = "hikaricp"
pool_in_use_metric = "my_pool_in_use"
pool_max_metric = "my_pool_max"
pool_waiting_metric = "my_pool_waiting"
pool_saturation_warn = 0.6
pool_saturation_fail = 0.7
requests_metric = "requests_total"
duration_metric = "request_seconds"
error_ratio_warn = 0.02
error_ratio_fail = 0.1
latency_p95_warn = "500ms"
latency_p95_fail = "1s"
window = "10m"
[jwt]
algorithm = "HS384"
secret_env = "JWT_SECRET"
issuer = "api-gateway"
audience = "api"
validate_url = "http://127.0.0.1:8080/api/validate"
interval = "30s"
[system]
cpu_warn = 0.5
memory_warn = 0.6
cgroup_root = "/tmp/cgroup"
success_threshold = 3
[[upstream]]
name = "orders"
url = "https://orders.shop.svc:8443/healthz"
method = "HEAD"
headers = { Authorization = "Bearer upstream-secret", X-Tenant = "tenant-7" }
expect_status = [200, 204]
latency_warn = "250ms"
latency_fail = "750ms"
window = "1h"
ca_file = "/etc/ca.pem"
critical = true
[[upstream]]
name = "users"
url = "http://users/healthz"
expect_status = "3xx"
"#;

    #[test]
    fn the_printed_configuration_loads_again_to_the_same_one() {
        let original = load_str(EVERY_SECTION, &[]).unwrap();
        let shown = original.to_redacted_toml();
        for secret in ["diag-secret", "db-secret", "upstream-secret", "tenant-7"] {
            assert!(!shown.contains(secret), "{secret} leaked into:\n{shown}");
        }
        // The secrets put back where the printed form says `<redacted>`.
        let pg_url = "postgres://gw:db-secret@db.example:6432/gateway?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=3";
        let restored = shown
            .replace("token = \"<redacted>\"", "token = \"diag-secret\"")
            .replace("url = \"<redacted>\"", &format!("url = \"{pg_url}\""))
            .replace(
                "authorization = \"<redacted>\"",
                "authorization = \"Bearer upstream-secret\"",
            )
            .replace("x-tenant = \"<redacted>\"", "x-tenant = \"tenant-7\"");
        assert!(!restored.contains("<redacted>"), "{restored}");
        let reloaded = load_str(&restored, &[]).expect("the printed configuration loads");
        assert_eq!(reloaded, original);
        assert_eq!(reloaded.to_redacted_toml(), shown);

        // Every section is there, parsed.
        let postgres = original.postgres.as_ref().unwrap();
        assert_eq!(postgres.target.sslmode, SslMode::VerifyFull);
        assert_eq!(postgres.target.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert!(!postgres.settings.critical);
        let orders = &original.upstreams[0];
        assert_eq!(orders.method, Method::HEAD);
        let names: Vec<&str> = orders.headers.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["authorization", "x-tenant"]);
        assert!(orders.headers.iter().all(|(_, value)| value.is_sensitive()));
        assert!(!format!("{orders:?}").contains("upstream-secret"));
        assert!(original.gateway.is_some() && original.jwt.is_some() && original.system.is_some());

        // A URL from a file prints as the file, and loads again as it is.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://gw:db-secret@db/gw\n").unwrap();
        let from_file = load_str(&format!("[postgres]\nurl_file = {file:?}\n"), &[]).unwrap();
        let shown = from_file.to_redacted_toml();
        assert!(!shown.contains("db-secret") && !shown.contains("url = "), "{shown}");
        assert_eq!(load_str(&shown, &[]).unwrap(), from_file);

        // A system check turned off stays off.
        let off = load_str("[system]\nenabled = false\n", &[]).unwrap();
        assert!(off.system.is_none());
        assert_eq!(load_str(&off.to_redacted_toml(), &[]).unwrap(), off);
        // The defaults alone.
        let defaults = load_str("", &[]).unwrap();
        assert_eq!(load_str(&defaults.to_redacted_toml(), &[]).unwrap(), defaults);
    }

    #[test]
    fn methods_and_headers_are_parsed_at_load_and_named_when_bad() {
        let upstream = |extra: &str| format!("[[upstream]]\nname = \"a\"\nurl = \"http://a/\"\n{extra}\n");
        let cases = [
            (
                "method = \"DELETE\"",
                "upstream[0].method: must be one of GET, HEAD, POST, PUT, OPTIONS, got \"DELETE\"",
            ),
            (
                "method = \"get\"",
                "upstream[0].method: must be one of GET, HEAD, POST, PUT, OPTIONS, got \"get\"",
            ),
            (
                "headers = { \"bad header\" = \"x\" }",
                "upstream[0].headers: not a valid header name: \"bad header\"",
            ),
            (
                "headers = { X-Token = \"line\\nbreak-secret\" }",
                "upstream[0].headers.X-Token: not a valid header value",
            ),
        ];
        for (extra, expected) in cases {
            assert_eq!(error(&upstream(extra), &[]), expected, "for {extra:?}");
        }
        let config = load_str(&upstream("method = \"POST\"\nheaders = { X-Api-Key = \"k\" }"), &[]).unwrap();
        let only = &config.upstreams[0];
        assert_eq!(only.method, Method::POST);
        assert_eq!(only.headers[0].0, http::header::HeaderName::from_static("x-api-key"));
        assert_eq!(only.headers[0].1, "k");
        assert_eq!(load_str(&upstream(""), &[]).unwrap().upstreams[0].method, Method::GET);
    }

    #[test]
    fn the_postgres_url_is_parsed_at_load_and_named_when_bad() {
        assert_eq!(
            error("[postgres]\nurl = \"postgres://u:hunter2@h/db?sslmode=bogus\"\n", &[]),
            "postgres.url: sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got \"bogus\""
        );
        let message = error("[postgres]\nurl = \"postgres://u:hunter2@h:notaport/db\"\n", &[]);
        assert!(message.starts_with("postgres.url: cannot be parsed: "), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert_eq!(
            error("", &[("DATABASE_URL", "postgres://u:hunter2@h/db?sslmode=nope")]),
            "postgres.url (from DATABASE_URL): sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got \"nope\""
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://gw:hunter2@db/gw?sslmode=require\n").unwrap();
        let config = load_str(&format!("[postgres]\nurl_file = {file:?}\n"), &[]).unwrap();
        let postgres = config.postgres.unwrap();
        assert_eq!(postgres.target.sslmode, SslMode::Require);
        assert_eq!(postgres.target.config.get_hosts().len(), 1);
        std::fs::write(&file, "mysql://root:hunter2@db/x\n").unwrap();
        assert_eq!(
            error(&format!("[postgres]\nurl_file = {file:?}\n"), &[]),
            "postgres.url_file: must be a postgres:// or postgresql:// URL (or key=value connection string)"
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let (_dir, path) = crate::files::temp_file("vigil.toml", "listen = \"0.0.0.0:9476\"\n[system\n");
        let message = read_toml(&path).unwrap_err().to_string();
        assert!(message.starts_with(&format!("{}:2:", path.display())), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }

    #[test]
    fn grpc_and_http_version_keys_belong_to_their_kinds() {
        let entry = |url: &str, extra: &str| format!("[[upstream]]\nname = \"a\"\nurl = \"{url}\"\n{extra}\n");
        let config = load_str(
            &entry("grpcs://orders:9000", "grpc_service = \"orders.v1.Orders\""),
            &[],
        )
        .unwrap();
        assert!(matches!(config.upstreams[0].url, UpstreamUrl::Grpcs(ref t) if t.host == "orders" && t.port == 9000));
        assert_eq!(config.upstreams[0].grpc_service.as_deref(), Some("orders.v1.Orders"));
        let config = load_str(&entry("https://a/", "http_version = \"2\""), &[]).unwrap();
        assert_eq!(config.upstreams[0].http_version, Some(HttpVersion::Http2));
        assert_eq!(
            load_str(&entry("http://a/", ""), &[]).unwrap().upstreams[0].http_version,
            None
        );
        for (toml, expected) in [
            (
                entry("grpc://orders", ""),
                "upstream[0].url: must name a port, such as grpc://orders:6379",
            ),
            (
                entry("grpc://orders:9000", "http_version = \"2\""),
                "upstream[0].http_version: applies only to http:// and https:// upstreams, not to grpc://orders:9000",
            ),
            (
                entry("https://a/", "grpc_service = \"\""),
                "upstream[0].grpc_service: applies only to grpc:// and grpcs:// upstreams, not to https://a/",
            ),
            (
                entry("grpc://orders:9000", "grpc_service = \"a\\nb\""),
                "upstream[0].grpc_service: must be at most 200 characters without control characters, such as \"orders.v1.Orders\"",
            ),
        ] {
            assert_eq!(error(&toml, &[]), expected, "for {toml:?}");
        }
        assert!(error(&entry("http://a/", "http_version = \"3\""), &[]).starts_with("upstream[0].http_version: "));
    }
}
