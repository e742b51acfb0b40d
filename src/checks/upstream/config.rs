//! `[[upstream]]`: one check named `upstream:<name>` per entry.

use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::config::Invalid;
use crate::config::de::{duration, headers, method};
use crate::config::limits::{cert_warn, client_cert_pair, default_cert_warn, default_window, window};
use crate::core::url::HttpUrl;
use crate::net::http::HttpVersion;

/// One `[[upstream]]`: the check named `upstream:<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Upstream {
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
    /// Our client certificate (PEM, the chain's leaf first) for an https, grpcs or tls upstream
    /// that requires mutual TLS: presented when the server asks, read when the check is built
    /// and again on every run (a cert-manager renewal, rewritten in place or swapped in a
    /// Secret volume, is picked up without a restart); its expiry is judged against
    /// `cert_warn`. Default none; only with `client_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// The private key of `client_cert_file` (PEM: PKCS#8, PKCS#1 or SEC1); read like it,
    /// never printed. Default none; only with `client_cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

/// `upstream[].addresses`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AddressMode {
    /// The first address that answers.
    #[default]
    First,
    /// Every address, each probed: pass when all pass, warn naming those that fail, fail when all fail.
    All,
}

impl Upstream {
    /// The limits of one entry at `prefix` (`upstream[0]`); names unique among all is
    /// [`validate_upstreams`]'s.
    pub(crate) fn validate(&self, prefix: &str, interval: Duration) -> Result<(), Invalid> {
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
                    crate::core::fmt::duration(self.latency_fail),
                    crate::core::fmt::duration(self.latency_warn)
                ),
            ));
        }
        cert_warn(&format!("{prefix}.cert_warn"), self.cert_warn)?;
        client_cert_pair(
            prefix,
            self.client_cert_file.as_deref(),
            self.client_key_file.as_deref(),
        )?;
        self.validate_kind_keys(prefix)?;
        window(&format!("{prefix}.window"), self.window, interval)
    }

    /// `http_version` only on http(s), `grpc_service` only on grpc(s): a key that the URL's
    /// kind would ignore is refused, naming it, rather than silently doing nothing.
    fn validate_kind_keys(&self, prefix: &str) -> Result<(), Invalid> {
        let is_http = matches!(self.url, UpstreamUrl::Http(_));
        let is_grpc = matches!(self.url, UpstreamUrl::Grpc(_) | UpstreamUrl::Grpcs(_));
        let is_tls = match &self.url {
            UpstreamUrl::Http(url) => url.uri().scheme_str() == Some("https"),
            UpstreamUrl::Grpcs(_) | UpstreamUrl::Tls(_) => true,
            UpstreamUrl::Grpc(_) | UpstreamUrl::Tcp(_) => false,
        };
        if self.client_cert_file.is_some() && !is_tls {
            return Err(Invalid::new(
                format!("{prefix}.client_cert_file"),
                format!(
                    "applies only to https://, grpcs:// and tls:// upstreams (a client certificate needs TLS), not to {}",
                    self.url.as_str()
                ),
            ));
        }
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

/// Names unique among the entries (each entry's own limits are [`Upstream::validate`]'s).
pub(crate) fn validate_names(upstreams: &[&Upstream]) -> Result<(), Invalid> {
    for (index, upstream) in upstreams.iter().enumerate() {
        let prefix = format!("upstream[{index}]");
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
pub(crate) enum ExpectStatus {
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
    pub(crate) fn accepts(&self, status: u16) -> bool {
        match self {
            ExpectStatus::Class(class) => status / 100 == *class,
            ExpectStatus::List(list) => list.contains(&status),
        }
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

/// `upstream[].url`: what the scheme says to speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpstreamUrl {
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
pub(crate) struct SocketTarget {
    text: String,
    pub host: String,
    pub port: u16,
}

impl SocketTarget {
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

impl UpstreamUrl {
    pub(crate) fn parse(text: &str) -> Result<UpstreamUrl, String> {
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

    pub(crate) fn as_str(&self) -> &str {
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

fn default_method() -> Method {
    Method::GET
}

fn default_latency_warn() -> Duration {
    Duration::from_secs(1)
}

fn default_latency_fail() -> Duration {
    Duration::from_secs(2)
}
