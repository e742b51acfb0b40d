//! One HTTP request over a fresh connection, with every phase timed: DNS, connect, TLS, first
//! byte, total.
//!
//! Each run opens its own connection on purpose: a kept-alive connection would hide a firewall
//! rule, a dead L4 balancer backend or a DNS change behind a socket opened minutes ago. The
//! phases are done by hand (`lookup_host`, `TcpStream::connect`, tokio-rustls,
//! `hyper::client::conn::http1`) because a pooled client cannot tell them apart.
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
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::checks::cert;
use crate::config::HttpUrl;
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
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HttpClient {
            tls: Arc::new(config),
            verifier,
        })
    }

    /// The TLS configuration for one connection: the shared one, with a recorder of the
    /// presented chain's expiry in front of the verifier.
    fn recording(&self) -> (Arc<rustls::ClientConfig>, Arc<std::sync::Mutex<Option<SystemTime>>>) {
        let (recorder, seen) = cert::Recorder::new(Arc::clone(&self.verifier));
        let mut config = (*self.tls).clone();
        config.dangerous().set_certificate_verifier(Arc::new(recorder));
        (Arc::new(config), seen)
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
        }
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
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
    #[error("timed out after {0}")]
    Timeout(String),
}

impl ProbeError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ProbeError::Dns { .. } | ProbeError::NoAddresses { .. } => FailureKind::Dns,
            ProbeError::Refused => FailureKind::Refused,
            ProbeError::Connect { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => FailureKind::Timeout,
            ProbeError::Connect { .. } => FailureKind::Refused,
            ProbeError::Tls(_) | ProbeError::ServerName(_) => FailureKind::Tls,
            ProbeError::Http(_) | ProbeError::Request(_) => FailureKind::Protocol,
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
        let started = Instant::now();
        let mut progress = Progress {
            at,
            ..Progress::default()
        };
        let attempt = self.exchange(request, started, body_limit, &mut progress);
        match tokio::time::timeout(deadline, attempt).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(progress.failure(error, started)),
            Err(_) => Err(progress.failure(ProbeError::Timeout(crate::fmt::duration(configured)), started)),
        }
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
            let tls = self.handshake(host, tcp, progress).await?;
            http_exchange(tls, request, started, addresses, body_limit, progress).await
        } else {
            http_exchange(tcp, request, started, addresses, body_limit, progress).await
        }
    }

    /// A TLS handshake over `tcp` for `host`, the presented chain's expiry noted in `progress`
    /// whether or not it verifies.
    async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
        progress: &mut Progress,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProbeError> {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| ProbeError::ServerName(host.to_owned()))?;
        let handshake = Instant::now();
        let (config, seen) = self.recording();
        let connected = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await;
        progress.cert_not_after = *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tls = connected.map_err(ProbeError::Tls)?;
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
        self.handshake(host, tcp, &mut progress).await
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
        let started = Instant::now();
        let mut progress = Progress {
            at,
            ..Progress::default()
        };
        let attempt = async {
            let (tcp, addresses) = connect(host, port, &mut progress).await?;
            if tls {
                drop(self.handshake(host, tcp, &mut progress).await?);
            }
            Ok::<_, ProbeError>(addresses)
        };
        let error = match tokio::time::timeout(deadline, attempt).await {
            Ok(Ok(addresses)) => {
                return Ok(ProbeResponse {
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
                });
            }
            Ok(Err(error)) => error,
            Err(_) => ProbeError::Timeout(crate::fmt::duration(configured)),
        };
        Err(progress.failure(error, started))
    }
}

/// The addresses of `host` (itself when it is an address).
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ProbeError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| ProbeError::Dns {
            host: host.to_owned(),
            source,
        })?
        .collect();
    Ok(found)
}

/// The name resolved (timed, unless it is an address) and connected to, Happy Eyeballs style
/// ([`connect_any`]); the addresses it resolved to are counted.
async fn connect(host: &str, port: u16, progress: &mut Progress) -> Result<(TcpStream, usize), ProbeError> {
    let addresses: Vec<SocketAddr> = match progress.at {
        Some(at) => vec![at],
        None => {
            let lookup = Instant::now();
            let found = resolve(host, port).await?;
            if host.parse::<std::net::IpAddr>().is_err() {
                progress.phases.dns = Some(lookup.elapsed());
            }
            found
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

async fn http_exchange<S>(
    stream: S,
    request: &ProbeRequest,
    started: Instant,
    addresses: usize,
    body_limit: usize,
    progress: &mut Progress,
) -> Result<ProbeResponse, ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let mut builder = Request::builder()
        .method(request.method.clone())
        .uri(request.uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::USER_AGENT, concat!("vigil/", env!("CARGO_PKG_VERSION")))
        // A fresh connection per run: say so, so that the server does not keep it waiting.
        .header(http::header::CONNECTION, "close");
    if let Some(authority) = request.uri.authority() {
        builder = builder.header(http::header::HOST, authority.as_str());
    }
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let outgoing = builder.body(Empty::<Bytes>::new())?;

    let sent = Instant::now();
    let work = async {
        let response = sender.send_request(outgoing).await?;
        let first_byte = sent.elapsed();
        let status = response.status().as_u16();
        let date = response
            .headers()
            .get(http::header::DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| httpdate::parse_http_date(text).ok());
        let mut body = response.into_body();
        let mut read = Vec::new();
        let mut truncated = false;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                let room = body_limit - read.len();
                if data.len() >= room {
                    read.extend_from_slice(&data[..room]);
                    truncated = data.len() > room;
                    break;
                }
                read.extend_from_slice(&data);
            }
        }
        if read.len() == body_limit && !truncated {
            // Exactly at the limit: whether more follows does not matter, stop here.
            truncated = !body.is_end_stream();
        }
        Ok::<_, ProbeError>((status, date, first_byte, Bytes::from(read), truncated))
    };
    let mut work = std::pin::pin!(work);
    let mut conn = std::pin::pin!(conn);
    // The connection must be polled for the request to make progress; it is driven here
    // rather than spawned so that nothing outlives the run. When it ends first (the server
    // closed), the request side resolves right after with the data or the error.
    let (status, date, first_byte, body, truncated) = tokio::select! {
        biased;
        result = &mut work => result?,
        _ = &mut conn => work.await?,
    };
    progress.phases.first_byte = Some(first_byte);
    Ok(ProbeResponse {
        status,
        phases: Phases {
            total: started.elapsed(),
            ..progress.phases
        },
        addresses,
        answered: progress.answered,
        cert_not_after: progress.cert_not_after,
        body,
        truncated,
        date,
    })
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
