//! One HTTP request over a fresh connection, with every phase timed: DNS, connect, TLS, first
//! byte, total.
//!
//! Each run opens its own connection on purpose: a kept-alive connection would hide a firewall
//! rule, a dead L4 balancer backend or a DNS change behind a socket opened minutes ago. The
//! phases are done by hand (`crate::dns`, `TcpStream::connect`, tokio-rustls,
//! `hyper::client::conn::http1` or `http2`) because a pooled client cannot tell them apart.
//!
//! HTTP/2 is spoken when a request asks for it (an upstream's `http_version`): by ALPN on TLS,
//! with prior knowledge (h2c) on plain http only when `"2"` is set; gRPC health checks
//! ([`HttpClient::grpc_health`], the codec in [`crate::checks::grpc`]) always go over HTTP/2.
//! hyper's HTTP/2 tasks are run inside the run ([`crate::checks::http2`]), never spawned.
//!
//! The one HTTP client of the agent: the upstream and gateway checks probe with it, and the jwt
//! check sends its validation requests and fetches the JWKS with it (a `Date` header in
//! [`ProbeResponse`] is for its clock-skew check). What is shared between checks is the
//! [`HttpClient`]: the rustls configuration (parsed roots, crypto provider), built once before any
//! runtime exists. The response body is read up to
//! [`BODY_LIMIT`] and then dropped with the connection, so a huge body costs at most 64 KiB of
//! reading and nothing of memory.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::checks::{cert, grpc, http2};
use crate::config::{HttpUrl, HttpVersion};
use crate::outcome::FailureKind;

/// How much of an upstream's response body a probe reads before it drops the connection.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How much of a gateway's `/metrics` a scrape reads: expositions with many histograms reach
/// a few hundred KiB; past this the scrape is refused rather than parsed half.
pub const SCRAPE_LIMIT: usize = 4 * 1024 * 1024;

/// The TLS side of the shared client. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
    /// The real verifier, built once; each connection wraps it in a [`cert::Recorder`].
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
}

/// A client that could not be built (an unreadable or empty CA file).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("ca_file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl HttpClient {
    /// The client with the built-in Mozilla roots (webpki-roots): the same trust everywhere,
    /// no dependence on the image's CA bundle (distroless and scratch images have none), and
    /// no file read at start. Private CAs come in through `ca_file`.
    pub fn new() -> Result<HttpClient, ClientError> {
        Self::with_roots(webpki_roots_store())
    }

    /// The built-in roots plus the certificates of a PEM file, read through the one file
    /// reader. Reads the file now (this runs before any runtime exists, so plain blocking I/O
    /// is right).
    pub fn with_ca_file(path: &Path) -> Result<HttpClient, ClientError> {
        let ca_error = |message: String| ClientError::CaFile {
            path: path.display().to_string(),
            message,
        };
        let mut roots = webpki_roots_store();
        for cert in crate::files::read_certificates(path).map_err(|e| ca_error(e.to_string()))? {
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
        Self::with_roots(roots)
    }

    /// A client that trusts the certificates of a PEM file and nothing else: the Kubernetes API
    /// server's certificate must chain to the cluster CA, never to a public root.
    pub fn with_only_ca_file(path: &Path) -> Result<HttpClient, ClientError> {
        let ca_error = |message: String| ClientError::CaFile {
            path: path.display().to_string(),
            message,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in crate::files::read_certificates(path).map_err(|e| ca_error(e.to_string()))? {
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
        Self::with_roots(roots)
    }

    fn with_roots(roots: rustls::RootCertStore) -> Result<HttpClient, ClientError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| ClientError::Tls(rustls::Error::General(e.to_string())))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = Vec::new();
        Ok(HttpClient {
            tls: Arc::new(config),
            verifier,
        })
    }

    /// The TLS configuration for one connection: the shared one, with a recorder of the
    /// presented chain's expiry in front of the verifier, offering `alpn` (none for `tls://`).
    fn recording(&self, alpn: Alpn) -> (Arc<rustls::ClientConfig>, Arc<std::sync::Mutex<Option<SystemTime>>>) {
        let (recorder, seen) = cert::Recorder::new(Arc::clone(&self.verifier));
        let mut config = (*self.tls).clone();
        config.dangerous().set_certificate_verifier(Arc::new(recorder));
        config.alpn_protocols = alpn.protocols().iter().map(|p| p.to_vec()).collect();
        (Arc::new(config), seen)
    }
}

/// What a TLS connection offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alpn {
    /// Nothing: a `tls://` upstream speaks no HTTP.
    None,
    Http1,
    Http2,
    /// `h2` and `http/1.1`, the server chooses.
    Either,
}

impl Alpn {
    fn protocols(self) -> &'static [&'static [u8]] {
        match self {
            Alpn::None => &[],
            Alpn::Http1 => &[b"http/1.1"],
            Alpn::Http2 => &[b"h2"],
            Alpn::Either => &[b"h2", b"http/1.1"],
        }
    }

    fn of(version: HttpVersion) -> Alpn {
        match version {
            HttpVersion::Http1 => Alpn::Http1,
            HttpVersion::Http2 => Alpn::Http2,
            HttpVersion::Auto => Alpn::Either,
        }
    }
}

fn webpki_roots_store() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// What to ask: built once per check from its configuration.
#[derive(Debug, Clone)]
pub struct ProbeRequest {
    pub method: Method,
    pub uri: Uri,
    /// Extra headers; values may be credentials and are never printed.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Which HTTP to speak: `1.1` unless the caller chose (upstreams: `http_version`).
    pub version: HttpVersion,
}

/// No longer produced: method, URL and headers are parsed when the configuration loads. Kept
/// only so that the jwt module's signatures, which name it, need no change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(String);

impl ProbeRequest {
    /// A request as the configuration parsed it. Every header value is marked sensitive.
    pub fn new(
        method: Method,
        url: &HttpUrl,
        headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
    ) -> ProbeRequest {
        let headers = headers
            .into_iter()
            .map(|(name, mut value)| {
                value.set_sensitive(true);
                (name, value)
            })
            .collect();
        ProbeRequest {
            method,
            uri: url.uri().clone(),
            headers,
            version: HttpVersion::Http1,
        }
    }

    /// The same request in `version` (an upstream's `http_version`).
    pub fn with_version(self, version: HttpVersion) -> ProbeRequest {
        ProbeRequest { version, ..self }
    }

    /// `GET url` (the gateway's and the jwt check's requests).
    pub fn get(url: &HttpUrl, headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> ProbeRequest {
        ProbeRequest::new(Method::GET, url, headers)
    }

    /// `GET http://host/path`: the prefix of every reason about this request.
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.uri)
    }

    pub fn host(&self) -> &str {
        let host = self.uri.host().unwrap_or_default();
        host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
    }

    fn is_https(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }

    pub fn port(&self) -> u16 {
        self.uri.port_u16().unwrap_or(if self.is_https() { 443 } else { 80 })
    }
}

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
            ProbeError::Tls(_) | ProbeError::ServerName(_) => FailureKind::Tls,
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

impl HttpClient {
    /// Sends `request` once over a fresh connection and reads at most `body_limit` bytes of
    /// the answer. Cut at `deadline` with [`ProbeError::Timeout`] naming `configured`; the caller
    /// picks a deadline a little inside the scheduler's so that the reason can name the URL.
    /// Cancel-safe: dropping the future drops the connection.
    pub async fn probe(
        &self,
        request: &ProbeRequest,
        deadline: Duration,
        configured: Duration,
        body_limit: usize,
    ) -> Result<ProbeResponse, ProbeFailure> {
        self.probe_at(request, None, deadline, configured, body_limit).await
    }

    /// [`HttpClient::probe`], connecting to `at` (one of the name's addresses, for
    /// `addresses = "all"`) instead of resolving the name; TLS still checks the name.
    pub async fn probe_at(
        &self,
        request: &ProbeRequest,
        at: Option<SocketAddr>,
        deadline: Duration,
        configured: Duration,
        body_limit: usize,
    ) -> Result<ProbeResponse, ProbeFailure> {
        cut_at(at, deadline, configured, async |progress, started| {
            self.exchange(request, started, body_limit, progress).await
        })
        .await
    }

    async fn exchange(
        &self,
        request: &ProbeRequest,
        started: Instant,
        body_limit: usize,
        progress: &mut Progress,
    ) -> Result<ProbeResponse, ProbeError> {
        let host = request.host();
        let (tcp, addresses) = connect(host, request.port(), progress).await?;
        if request.is_https() {
            let tls = self.handshake(host, tcp, Alpn::of(request.version), progress).await?;
            let h2 = chose_h2(&tls);
            if request.version == HttpVersion::Http2 && !h2 {
                return Err(not_http2(&tls));
            }
            http_exchange(Box::new(tls), h2, request, started, addresses, body_limit, progress).await
        } else {
            // h2c only when asked for by name: it is never guessed (prior knowledge or nothing).
            let h2 = request.version == HttpVersion::Http2;
            http_exchange(Box::new(tcp), h2, request, started, addresses, body_limit, progress).await
        }
    }

    /// A TLS handshake over `tcp` for `host`, the presented chain's expiry noted in `progress`
    /// whether or not it verifies.
    async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
        alpn: Alpn,
        progress: &mut Progress,
    ) -> Result<TlsStream, ProbeError> {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| ProbeError::ServerName(host.to_owned()))?;
        let handshake = Instant::now();
        let (config, seen) = self.recording(alpn);
        let connected = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await;
        progress.cert_not_after = *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tls = connected.map_err(|error| match refused_alpn(&error) {
            true if alpn == Alpn::Http2 => ProbeError::NotHttp2 {
                how: "it refused h2 by ALPN (alert NoApplicationProtocol)".to_owned(),
            },
            _ => ProbeError::Tls(error),
        })?;
        progress.phases.tls = Some(handshake.elapsed());
        Ok(tls)
    }

    /// A verified TLS connection to `host:port` (resolved and connected as a probe does), for a
    /// caller that speaks HTTP over it itself: the Kubernetes API client, whose watches stream.
    pub async fn connect_tls(
        &self,
        host: &str,
        port: u16,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProbeError> {
        let mut progress = Progress::default();
        let (tcp, _) = connect(host, port, &mut progress).await?;
        self.handshake(host, tcp, Alpn::Http1, &mut progress).await
    }

    /// A `tcp://` or `tls://` upstream: a connection (and with `tls` a handshake), then closed.
    /// Phases as for HTTP (no first byte); cut at `deadline` naming `configured`.
    pub async fn connect_only(
        &self,
        (host, port): (&str, u16),
        at: Option<SocketAddr>,
        tls: bool,
        deadline: Duration,
        configured: Duration,
    ) -> Result<ProbeResponse, ProbeFailure> {
        cut_at(at, deadline, configured, async |progress, started| {
            let (tcp, addresses) = connect(host, port, progress).await?;
            if tls {
                drop(self.handshake(host, tcp, Alpn::None, progress).await?);
            }
            Ok(ProbeResponse {
                status: 0,
                phases: Phases {
                    total: started.elapsed(),
                    ..progress.phases
                },
                addresses,
                answered: progress.answered,
                cert_not_after: progress.cert_not_after,
                body: Bytes::new(),
                truncated: false,
                date: None,
                version: None,
                grpc: None,
            })
        })
        .await
    }
}

/// The addresses of `host` (itself when it is an address), through the one resolver.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ProbeError> {
    Ok(lookup(host, port).await?.addresses)
}

async fn lookup(host: &str, port: u16) -> Result<crate::dns::Found, ProbeError> {
    crate::dns::lookup(host, port).await.map_err(|source| ProbeError::Dns {
        host: host.to_owned(),
        source,
    })
}

/// The name resolved (timed, unless it is an address) and connected to, Happy Eyeballs style
/// ([`connect_any`]); the addresses it resolved to are counted.
async fn connect(host: &str, port: u16, progress: &mut Progress) -> Result<(TcpStream, usize), ProbeError> {
    let addresses: Vec<SocketAddr> = match progress.at {
        Some(at) => vec![at],
        None => {
            let found = lookup(host, port).await?;
            if host.parse::<std::net::IpAddr>().is_err() {
                // The resolver's own time: a wait for a free lookup slot is not DNS time.
                progress.phases.dns = Some(found.took);
            }
            found.addresses
        }
    };
    progress.addresses = Some(addresses.len());
    if addresses.is_empty() {
        return Err(ProbeError::NoAddresses { host: host.to_owned() });
    }
    let connect = Instant::now();
    let (tcp, addr) = connect_any(&addresses).await?;
    progress.answered = Some(addr);
    progress.phases.connect = Some(connect.elapsed());
    // Small requests: do not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    Ok((tcp, addresses.len()))
}

#[derive(Debug, Default)]
struct Progress {
    phases: Phases,
    addresses: Option<usize>,
    /// The address the connection was made to.
    answered: Option<SocketAddr>,
    /// The earliest `notAfter` of the chain the server presented (TLS only).
    cert_not_after: Option<SystemTime>,
    /// The one address to connect to, the name already resolved (`addresses = "all"`).
    at: Option<SocketAddr>,
}

impl Progress {
    /// What an attempt that ended in `error` got as far as, timed from `started`.
    fn failure(self, error: ProbeError, started: Instant) -> ProbeFailure {
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

/// How long an attempt to connect has before the next address is tried beside it (RFC 8305's
/// "Connection Attempt Delay").
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Connects to the first of `addresses` that answers, Happy Eyeballs style (RFC 8305): they are
/// tried in the resolver's order, the next one as soon as the previous has failed or has not
/// connected within [`ATTEMPT_DELAY`], the attempts racing; the first connection wins and the
/// others are dropped. A dual-stack name whose AAAA record leads nowhere then still connects
/// over IPv4 well within the timeout, where trying the first address alone would read "down".
/// With every attempt failed, the error is a refusal when any was refused, else the last one.
async fn connect_any(addresses: &[SocketAddr]) -> Result<(TcpStream, SocketAddr), ProbeError> {
    async fn attempt(addr: SocketAddr) -> (SocketAddr, std::io::Result<TcpStream>) {
        (addr, TcpStream::connect(addr).await)
    }
    let mut pending = FuturesUnordered::new();
    let mut waiting = addresses.iter().copied();
    let mut refused = false;
    let mut last = None;
    if let Some(first) = waiting.next() {
        pending.push(attempt(first));
    }
    loop {
        let more = waiting.len() > 0;
        tokio::select! {
            finished = pending.next(), if !pending.is_empty() => match finished {
                Some((addr, Ok(tcp))) => return Ok((tcp, addr)),
                Some((addr, Err(source))) => {
                    refused |= source.kind() == std::io::ErrorKind::ConnectionRefused;
                    last = Some(ProbeError::Connect { addr, source });
                    if let Some(next) = waiting.next() {
                        pending.push(attempt(next));
                    }
                }
                None => {}
            },
            () = tokio::time::sleep(ATTEMPT_DELAY), if more => {
                if let Some(next) = waiting.next() {
                    pending.push(attempt(next));
                }
            }
        }
        if pending.is_empty() && waiting.len() == 0 {
            break;
        }
    }
    Err(match (refused, last) {
        (true, _) => ProbeError::Refused,
        (false, Some(error)) => error,
        (false, None) => ProbeError::Refused,
    })
}

/// A TLS stream to a server.
type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Whether the server chose h2 by ALPN.
fn chose_h2(tls: &TlsStream) -> bool {
    tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice())
}

/// The refusal of a server that did not choose h2 where it had to.
fn not_http2(tls: &TlsStream) -> ProbeError {
    let how = match tls.get_ref().1.alpn_protocol() {
        Some(protocol) => format!("by ALPN it chose {}, not h2", String::from_utf8_lossy(protocol)),
        None => "it chose no protocol by ALPN, so not h2".to_owned(),
    };
    ProbeError::NotHttp2 { how }
}

/// Whether a handshake failed because the server shares none of the ALPN protocols offered.
fn refused_alpn(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
            )
        })
}

/// The user agent of every request.
const USER_AGENT: &str = concat!("vigil/", env!("CARGO_PKG_VERSION"));

/// A connection, plain or TLS, behind one type: hyper's clients are generic over the stream
/// and the body, and each combination is a copy of them in the binary. One stream type and one
/// body type ([`Full`], empty for a GET) keep it at one copy of each client.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

type BoxedStream = Box<dyn Stream>;

async fn http_exchange(
    stream: BoxedStream,
    h2: bool,
    request: &ProbeRequest,
    started: Instant,
    addresses: usize,
    body_limit: usize,
    progress: &mut Progress,
) -> Result<ProbeResponse, ProbeError> {
    let mut builder = Request::builder()
        .method(request.method.clone())
        .header(http::header::USER_AGENT, USER_AGENT);
    builder = if h2 {
        // HTTP/2 carries the authority in its own pseudo-header and has no Connection header.
        builder.uri(request.uri.clone())
    } else {
        let mut builder = builder
            .uri(request.uri.path_and_query().map_or("/", |p| p.as_str()))
            // A fresh connection per run: say so, so that the server does not keep it waiting.
            .header(http::header::CONNECTION, "close");
        if let Some(authority) = request.uri.authority() {
            builder = builder.header(http::header::HOST, authority.as_str());
        }
        builder
    };
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    // An empty `Full` is at its end from the start: sent as no body at all, as `Empty` would be.
    let outgoing = builder.body(Full::new(Bytes::new()))?;
    let answer = send(stream, h2, outgoing, body_limit).await?;
    progress.phases.first_byte = Some(answer.first_byte);
    let date = answer
        .headers
        .get(http::header::DATE)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| httpdate::parse_http_date(text).ok());
    Ok(ProbeResponse {
        status: answer.status,
        phases: Phases {
            total: started.elapsed(),
            ..progress.phases
        },
        addresses,
        answered: progress.answered,
        cert_not_after: progress.cert_not_after,
        body: answer.body,
        truncated: answer.truncated,
        date,
        version: Some(answer.version),
        grpc: None,
    })
}

/// A response as read by [`send`].
struct Answer {
    status: u16,
    version: Version,
    headers: HeaderMap,
    /// At most the caller's limit.
    body: Bytes,
    truncated: bool,
    /// The trailers, when the body ended within the limit and the server sent some.
    trailers: Option<HeaderMap>,
    /// From the request handed over to the response head read.
    first_byte: Duration,
}

/// The largest header block an HTTP/2 answer may have (hyper's default is 16 MiB).
const H2_HEADER_LIMIT: u32 = 64 * 1024;

/// Sends `outgoing` over `stream` in HTTP/1.1 or (`h2`) HTTP/2 and reads the answer: at most
/// `body_limit` bytes of its body, and its trailers when the body ends within that.
///
/// Either way the connection is driven here, beside the request, rather than spawned, so that
/// nothing outlives the run: HTTP/1.1's connection future is polled in a `select!`, HTTP/2's
/// tasks run in [`http2::in_run`]. When the connection ends first (the server closed), the
/// request side resolves right after with the data or the error.
async fn send(
    stream: BoxedStream,
    h2: bool,
    outgoing: Request<Full<Bytes>>,
    body_limit: usize,
) -> Result<Answer, ProbeError> {
    if h2 {
        return http2::in_run(|executor| async move {
            // Flow-control windows the size of what is read: a server cannot make a probe
            // buffer more than that (hyper's defaults are megabytes).
            let window = u32::try_from(body_limit.max(65_535)).unwrap_or(u32::MAX);
            let (mut sender, conn) = hyper::client::conn::http2::Builder::new(executor.clone())
                .max_header_list_size(H2_HEADER_LIMIT)
                .initial_stream_window_size(window)
                .initial_connection_window_size(window)
                .handshake(TokioIo::new(stream))
                .await?;
            hyper::rt::Executor::execute(&executor, async move {
                let _ = conn.await;
            });
            let sent = Instant::now();
            let response = sender.send_request(outgoing).await?;
            read_answer(response, sent.elapsed(), body_limit).await
        })
        .await;
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let work = async {
        let sent = Instant::now();
        let response = sender.send_request(outgoing).await?;
        read_answer(response, sent.elapsed(), body_limit).await
    };
    let mut work = std::pin::pin!(work);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        biased;
        result = &mut work => result,
        _ = &mut conn => work.await,
    }
}

/// The head of `response`, at most `body_limit` bytes of its body and its trailers.
async fn read_answer(
    response: http::Response<hyper::body::Incoming>,
    first_byte: Duration,
    body_limit: usize,
) -> Result<Answer, ProbeError> {
    let (head, mut body) = response.into_parts();
    let mut read = Vec::new();
    let mut truncated = false;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame?.into_data() {
            Ok(data) => {
                let room = body_limit - read.len();
                if data.len() >= room {
                    read.extend_from_slice(&data[..room]);
                    truncated = data.len() > room;
                    break;
                }
                read.extend_from_slice(&data);
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(map) = frame.into_trailers() {
            trailers = Some(map);
        }
    }
    if read.len() == body_limit && !truncated {
        // Exactly at the limit: whether more follows does not matter, stop here.
        truncated = !body.is_end_stream();
    }
    Ok(Answer {
        status: head.status.as_u16(),
        version: head.version,
        headers: head.headers,
        body: Bytes::from(read),
        truncated,
        trailers,
        first_byte,
    })
}

impl HttpClient {
    /// One `grpc.health.v1.Health/Check` of `service` at `host:port` (or at `at`, one of its
    /// addresses) over a fresh HTTP/2 connection: h2c, or with `tls` TLS offering only h2 by
    /// ALPN (a server that does not choose it fails). Phases as for HTTP; the answer in
    /// [`ProbeResponse::grpc`], its HTTP status in `status`. A response that is no health
    /// answer fails with [`ProbeError::Grpc`]. Cut at `deadline` naming `configured`; the server
    /// is told the deadline too (`grpc-timeout`).
    pub async fn grpc_health(
        &self,
        (host, port): (&str, u16),
        at: Option<SocketAddr>,
        tls: bool,
        service: &str,
        deadline: Duration,
        configured: Duration,
    ) -> Result<ProbeResponse, ProbeFailure> {
        cut_at(at, deadline, configured, async |progress, started| {
            let authority = match host.contains(':') {
                true => format!("[{host}]:{port}"),
                false => format!("{host}:{port}"),
            };
            let scheme = if tls { "https" } else { "http" };
            let outgoing = Request::builder()
                .method(Method::POST)
                .uri(format!("{scheme}://{authority}{}", grpc::HEALTH_CHECK_PATH))
                .header(http::header::USER_AGENT, USER_AGENT)
                .header(http::header::CONTENT_TYPE, "application/grpc")
                .header(http::header::TE, "trailers")
                .header(
                    "grpc-timeout",
                    format!("{}m", deadline.as_millis().clamp(1, 99_999_999)),
                )
                .body(Full::new(grpc::encode_request(service)))?;
            let (tcp, addresses) = connect(host, port, progress).await?;
            let answer = if tls {
                let stream = self.handshake(host, tcp, Alpn::Http2, progress).await?;
                if !chose_h2(&stream) {
                    return Err(not_http2(&stream));
                }
                send(Box::new(stream), true, outgoing, BODY_LIMIT).await?
            } else {
                send(Box::new(tcp), true, outgoing, BODY_LIMIT).await?
            };
            progress.phases.first_byte = Some(answer.first_byte);
            let health = grpc::interpret(
                answer.status,
                &answer.headers,
                &answer.body,
                answer.truncated,
                answer.trailers.as_ref(),
                BODY_LIMIT,
            )?;
            Ok(ProbeResponse {
                status: answer.status,
                phases: Phases {
                    total: started.elapsed(),
                    ..progress.phases
                },
                addresses,
                answered: progress.answered,
                cert_not_after: progress.cert_not_after,
                body: Bytes::new(),
                truncated: answer.truncated,
                date: None,
                version: Some(answer.version),
                grpc: Some(health),
            })
        })
        .await
    }
}

/// One attempt of a probe, cut at `deadline` (a timeout names `configured`): `work` is given the
/// progress to note its phases in and the start, and a failure, cut or not, carries what it got
/// as far as. `at` is the one address to connect to, the name already resolved.
async fn cut_at<T>(
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
        Err(_) => ProbeError::Timeout(crate::fmt::duration(configured)),
    };
    Err(progress.failure(error, started))
}

/// The scheduler cuts a run at `timeout`; a probe stops a little earlier so that its own
/// reason (which names the request) wins the race.
pub fn inner_deadline(timeout: Duration) -> Duration {
    let margin = (timeout / 20).min(Duration::from_millis(50));
    timeout.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(2);

    fn url(text: &str) -> HttpUrl {
        HttpUrl::parse(text).unwrap()
    }

    /// A server that answers one connection with `answer`, whatever it is asked.
    async fn answering(answer: &'static [u8]) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0; 1024];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(answer).await;
        });
        port
    }

    #[tokio::test]
    async fn a_refused_connection_is_its_own_kind() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = HttpClient::new().unwrap();
        for scheme in ["http", "https"] {
            let request = ProbeRequest::get(&url(&format!("{scheme}://127.0.0.1:{port}/")), []);
            let failure = client.probe(&request, WAIT, WAIT, BODY_LIMIT).await.unwrap_err();
            assert_eq!(failure.error.to_string(), "connection refused");
            assert_eq!(failure.error.kind(), FailureKind::Refused);
        }
    }

    #[tokio::test]
    async fn a_plain_http_server_is_no_tls_server() {
        let port = answering(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        let request = ProbeRequest::get(&url(&format!("https://127.0.0.1:{port}/")), []);
        let failure = HttpClient::new()
            .unwrap()
            .probe(&request, WAIT, WAIT, BODY_LIMIT)
            .await
            .unwrap_err();
        assert_eq!(failure.error.kind(), FailureKind::Tls, "{}", failure.error);
    }

    #[tokio::test]
    async fn the_date_header_and_a_body_over_the_limit_are_reported() {
        let port = answering(
            b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 10\r\n\r\n0123456789",
        )
        .await;
        let request = ProbeRequest::get(&url(&format!("http://127.0.0.1:{port}/")), []);
        let response = HttpClient::new().unwrap().probe(&request, WAIT, WAIT, 4).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(
            response.date,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(&response.body[..], b"0123");
        assert!(response.truncated);
    }

    #[test]
    fn header_values_never_show_in_debug_output() {
        let request = ProbeRequest::get(
            &url("http://gateway/"),
            [(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cr3t"))],
        );
        assert!(!format!("{request:?}").contains("s3cr3t"));
    }

    /// A loopback address whose SYNs go unanswered: a listener with a backlog of one, filled.
    async fn hanging_addr() -> (tokio::net::TcpListener, Vec<TcpStream>, SocketAddr) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        // Fill the accept queue; the next connection attempt waits for a SYN-ACK that never comes.
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => held.push(stream),
                _ => break,
            }
        }
        (listener, held, addr)
    }

    #[tokio::test]
    async fn the_next_address_is_tried_when_the_first_refuses_or_hangs() {
        let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = up.local_addr().unwrap();
        let refused = crate::checks::http_probe::tests::refused_addr();
        let (_hang_listener, _held, hanging) = hanging_addr().await;

        let (_, answered) = connect_any(&[refused, good]).await.unwrap();
        assert_eq!(answered, good, "a refusal moves on at once");

        let started = Instant::now();
        let (_, answered) = connect_any(&[hanging, good]).await.unwrap();
        assert_eq!(answered, good, "a hanging first address does not hold the second back");
        let took = started.elapsed();
        assert!(took >= ATTEMPT_DELAY && took < Duration::from_secs(2), "{took:?}");

        let error = connect_any(&[refused, refused]).await.unwrap_err();
        assert!(matches!(error, ProbeError::Refused), "{error}");
    }

    fn refused_addr() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        addr
    }
}
