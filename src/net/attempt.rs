//! One attempt of a probe: what it got as far as (its [`Progress`]: the phases reached, the
//! addresses, the certificate seen), how it failed ([`ProbeError`], [`ProbeFailure`]), and its
//! deadline ([`cut_at`]). Every request vigil makes, HTTP or not, is timed and reported this way.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::Version;

use crate::core::outcome::FailureKind;

use super::grpc;

/// The time each phase took. `None` for a phase that did not happen (no DNS for an IP
/// literal, no TLS for http) or was not reached.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Phases {
    pub dns: Option<Duration>,
    pub connect: Option<Duration>,
    pub tls: Option<Duration>,
    /// From the request written to the response head read: the server's think time.
    pub first_byte: Option<Duration>,
    /// From the start to the end of the (capped) body.
    pub total: Duration,
}

/// A request that got an answer, whatever its status.
#[derive(Debug, Clone)]
pub struct ProbeResponse {
    pub status: u16,
    pub phases: Phases,
    /// How many addresses the host resolved to (1 for an IP literal).
    pub addresses: usize,
    /// The one the connection was made to (see [`connect_any`]).
    pub answered: Option<SocketAddr>,
    /// The earliest `notAfter` of the chain the server presented (https only).
    pub cert_not_after: Option<SystemTime>,
    /// The body as read: at most the caller's limit ([`BODY_LIMIT`] for upstreams).
    pub body: Bytes,
    /// Whether the body went on past the limit.
    pub truncated: bool,
    /// The server's `Date` header, when it sent a valid one: the jwt check measures the clock
    /// skew against the auth service with it.
    pub date: Option<SystemTime>,
    /// The HTTP the answer came in (`HTTP_11` or `HTTP_2`); `None` for `tcp://` and `tls://`.
    pub version: Option<Version>,
    /// A gRPC health check's answer ([`HttpClient::grpc_health`] only).
    pub grpc: Option<grpc::HealthAnswer>,
    /// The answer's `Retry-After`, when it sent a valid one (HTTP only).
    pub retry_after: Option<RetryAfter>,
}

/// A `Retry-After` header (RFC 9110 §10.2.3): a number of seconds, or an HTTP date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Seconds(u64),
    Date(SystemTime),
}

impl RetryAfter {
    /// The header's value; `None` for anything but digits or an HTTP date. A number too large
    /// for 64 bits is the largest there is (the caller caps the wait anyway).
    pub(crate) fn parse(value: &str) -> Option<RetryAfter> {
        let value = value.trim();
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return Some(RetryAfter::Seconds(value.parse().unwrap_or(u64::MAX)));
        }
        httpdate::parse_http_date(value).ok().map(RetryAfter::Date)
    }

    /// How long from `now` the server asked to wait: nothing for a date already past.
    pub fn wait(self, now: SystemTime) -> Duration {
        match self {
            RetryAfter::Seconds(seconds) => Duration::from_secs(seconds),
            RetryAfter::Date(at) => at.duration_since(now).unwrap_or_default(),
        }
    }

    /// The wait in whole seconds as a person reads it: the header's number, or the seconds
    /// left until its date, rounded up.
    pub fn seconds(self, now: SystemTime) -> u64 {
        match self {
            RetryAfter::Seconds(seconds) => seconds,
            RetryAfter::Date(_) => {
                let wait = self.wait(now);
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            }
        }
    }
}

/// A request that got no answer. The message never quotes a header value.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("DNS lookup of {host} failed: {source}")]
    Dns { host: String, source: std::io::Error },
    #[error("{host} resolves to no addresses")]
    NoAddresses { host: String },
    #[error("connection refused")]
    Refused,
    #[error("connect to {addr} failed: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// With the error's sources: hyper's HTTP/2 errors say little alone ("connection error").
    #[error("HTTP exchange failed: {}", with_sources(.0))]
    Http(#[from] hyper::Error),
    /// `http_version = "2"` or gRPC over TLS, and the server did not choose h2 by ALPN; `how`
    /// says what it did instead.
    #[error("the server does not speak HTTP/2: {how}")]
    NotHttp2 { how: String },
    /// A gRPC answer that is no health answer (see [`grpc::interpret`]).
    #[error("not a gRPC health answer: {0}")]
    Grpc(#[from] grpc::DecodeError),
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
    #[error("timed out after {0}")]
    Timeout(String),
    /// The server asked for a client certificate, none is configured, and the exchange failed.
    #[error("the server wants a client certificate and none is configured (client_cert_file, client_key_file): {0}")]
    ClientCertificateRequired(Box<ProbeError>),
    /// We presented our client certificate and the server refused it.
    #[error("the server refused our client certificate: {0}")]
    ClientCertificateRefused(Box<ProbeError>),
}

/// `error: its source: the source's source`, each told once.
fn with_sources(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

impl ProbeError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ProbeError::Dns { .. } | ProbeError::NoAddresses { .. } => FailureKind::Dns,
            ProbeError::Refused => FailureKind::Refused,
            ProbeError::Connect { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => FailureKind::Timeout,
            ProbeError::Connect { .. } => FailureKind::Refused,
            ProbeError::Tls(_)
            | ProbeError::ServerName(_)
            | ProbeError::ClientCertificateRequired(_)
            | ProbeError::ClientCertificateRefused(_) => FailureKind::Tls,
            ProbeError::Http(_) | ProbeError::Request(_) | ProbeError::NotHttp2 { .. } | ProbeError::Grpc(_) => {
                FailureKind::Protocol
            }
            ProbeError::Timeout(_) => FailureKind::Timeout,
        }
    }
}

/// What a failed probe got through before it failed: the phases reached and the address
/// count, so that `/diag` can show where it stopped.
#[derive(Debug)]
pub struct ProbeFailure {
    pub error: ProbeError,
    pub phases: Phases,
    pub addresses: Option<usize>,
    /// The presented certificate chain's expiry, read also when verification failed.
    pub cert_not_after: Option<SystemTime>,
}

#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub(crate) phases: Phases,
    pub(crate) addresses: Option<usize>,
    /// The address the connection was made to.
    pub(crate) answered: Option<SocketAddr>,
    /// The earliest `notAfter` of the chain the server presented (TLS only).
    pub(crate) cert_not_after: Option<SystemTime>,
    /// The one address to connect to, the name already resolved (`addresses = "all"`).
    pub(crate) at: Option<SocketAddr>,
    /// The local address to connect from; `None`: the system's choice.
    pub(crate) source: Option<IpAddr>,
    /// Whether the server asked for a client certificate during the handshake.
    pub(crate) client_cert: ClientCertAsked,
}

/// Whether a TLS server sent a CertificateRequest, and whether we presented one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum ClientCertAsked {
    #[default]
    No,
    Asked {
        presented: bool,
    },
}

impl Progress {
    /// What an attempt that ended in `error` got as far as, timed from `started`. A TLS or
    /// HTTP failure after the server asked for a client certificate says so: without one, the
    /// server wanted it (TLS 1.3 servers refuse after the client's side of the handshake ended,
    /// so the refusal comes as an alert on the first read); with ours, it refused ours when its
    /// alert says so.
    fn failure(self, error: ProbeError, started: Instant) -> ProbeFailure {
        let error = match (self.client_cert, &error) {
            // Our own check of the server's certificate failing (rustls asks for ours before it
            // checks theirs) is that, not the server wanting a certificate.
            (ClientCertAsked::Asked { presented: false }, ProbeError::Tls(_) | ProbeError::Http(_))
                if !verification_failed(&error) =>
            {
                ProbeError::ClientCertificateRequired(Box::new(error))
            }
            (ClientCertAsked::Asked { presented: true }, ProbeError::Tls(_) | ProbeError::Http(_))
                if refuses_certificate(&error) =>
            {
                ProbeError::ClientCertificateRefused(Box::new(error))
            }
            _ => error,
        };
        ProbeFailure {
            error,
            phases: Phases {
                total: started.elapsed(),
                ..self.phases
            },
            addresses: self.addresses,
            cert_not_after: self.cert_not_after,
        }
    }
}

/// Whether `error` is this side refusing the server's certificate (an unknown issuer, a wrong
/// name, expired).
fn verification_failed(error: &ProbeError) -> bool {
    let inner: &(dyn std::error::Error + 'static) = match error {
        ProbeError::Tls(io) => io,
        ProbeError::Http(http) => http,
        _ => return false,
    };
    matches!(rustls_error(inner), Some(rustls::Error::InvalidCertificate(_)))
}

/// Whether `error` carries a TLS alert by which a server refuses a client certificate.
fn refuses_certificate(error: &ProbeError) -> bool {
    use rustls::AlertDescription as A;
    let inner: &(dyn std::error::Error + 'static) = match error {
        ProbeError::Tls(io) => io,
        ProbeError::Http(http) => http,
        _ => return false,
    };
    matches!(
        rustls_error(inner),
        Some(rustls::Error::AlertReceived(
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::CertificateRequired
        ))
    )
}

/// The rustls error at the root of `error`, looking inside the `io::Error`s that wrap it
/// (whose `source()` skips the error they carry).
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        next = error.source();
    }
    None
}

/// One attempt of a probe, cut at `deadline` (a timeout names `configured`): `work` is given the
/// progress to note its phases in and the start, and a failure, cut or not, carries what it got
/// as far as. `at` is the one address to connect to, the name already resolved.
pub(crate) async fn cut_at<T>(
    at: Option<SocketAddr>,
    deadline: Duration,
    configured: Duration,
    work: impl AsyncFnOnce(&mut Progress, Instant) -> Result<T, ProbeError>,
) -> Result<T, ProbeFailure> {
    let started = Instant::now();
    let mut progress = Progress {
        at,
        ..Progress::default()
    };
    let error = match tokio::time::timeout(deadline, work(&mut progress, started)).await {
        Ok(Ok(done)) => return Ok(done),
        Ok(Err(error)) => error,
        Err(_) => ProbeError::Timeout(crate::core::fmt::duration(configured)),
    };
    Err(progress.failure(error, started))
}

/// The scheduler cuts a run at `timeout`; a probe stops a little earlier so that its own
/// reason (which names the request) wins the race.
pub(crate) fn inner_deadline(timeout: Duration) -> Duration {
    let margin = (timeout / 20).min(Duration::from_millis(50));
    timeout.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(alert: rustls::AlertDescription) -> ProbeError {
        ProbeError::Tls(std::io::Error::other(rustls::Error::AlertReceived(alert)))
    }

    fn after(asked: ClientCertAsked, error: ProbeError) -> String {
        let progress = Progress {
            client_cert: asked,
            ..Progress::default()
        };
        progress.failure(error, Instant::now()).error.to_string()
    }

    #[test]
    fn a_refusal_after_a_certificate_request_says_what_the_server_wanted() {
        use rustls::AlertDescription as A;
        let none = ClientCertAsked::Asked { presented: false };
        let ours = ClientCertAsked::Asked { presented: true };
        assert!(
            after(none, tls(A::CertificateRequired))
                .starts_with("the server wants a client certificate and none is configured"),
        );
        assert!(after(ours, tls(A::UnknownCA)).starts_with("the server refused our client certificate: "));
        assert!(
            after(ours, tls(A::HandshakeFailure)).starts_with("TLS handshake failed"),
            "an alert that does not name the certificate is not blamed on it"
        );
        assert!(after(ClientCertAsked::No, tls(A::CertificateRequired)).starts_with("TLS handshake failed"));
        let unknown_issuer = ProbeError::Tls(std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )));
        assert!(
            after(none, unknown_issuer).starts_with("TLS handshake failed"),
            "our check of the server's certificate failing is not the server wanting ours"
        );
        assert_eq!(
            after(none, ProbeError::Refused),
            "connection refused",
            "not a TLS failure"
        );
        assert_eq!(
            ProbeError::ClientCertificateRequired(Box::new(ProbeError::Refused)).kind(),
            FailureKind::Tls
        );
    }
}
