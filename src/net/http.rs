//! One HTTP request over a fresh connection, with every phase timed: DNS, connect, TLS, first
//! byte, total.
//!
//! Each run opens its own connection on purpose: a kept-alive connection would hide a firewall
//! rule, a dead L4 balancer backend or a DNS change behind a socket opened minutes ago. The
//! phases are done by hand (`net::dns`, `TcpStream::connect`, tokio-rustls,
//! `hyper::client::conn::http1` or `http2`) because a pooled client cannot tell them apart.
//!
//! HTTP/2 is spoken when a request asks for it (an upstream's `http_version`): by ALPN on TLS,
//! with prior knowledge (h2c) on plain http only when `"2"` is set; gRPC health checks
//! ([`HttpClient::grpc_health`], the codec in [`crate::net::grpc`]) always go over HTTP/2.
//! hyper's HTTP/2 tasks are run inside the run ([`crate::net::executor`]), never spawned.
//!
//! The one HTTP client of the agent: the upstream and gateway checks probe with it, and the jwt
//! check sends its validation requests and fetches the JWKS with it (a `Date` header in
//! [`ProbeResponse`] is for its clock-skew check). What is shared between checks is the
//! [`HttpClient`]: the rustls configuration (parsed roots, crypto provider), built once before any
//! runtime exists. The response body is read up to
//! [`BODY_LIMIT`] and then dropped with the connection, so a huge body costs at most 64 KiB of
//! reading and nothing of memory.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use super::attempt::{Phases, ProbeError, ProbeFailure, ProbeResponse, Progress, RetryAfter, cut_at};
use super::connect::connect;
use super::executor;

use super::tls::{Alpn, HttpClient, chose_h2, not_http2};
use crate::core::url::HttpUrl;

/// How much of an upstream's response body a probe reads before it drops the connection.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// How much of a gateway's `/metrics` a scrape reads: expositions with many histograms reach
/// a few hundred KiB; past this the scrape is refused rather than parsed half.
pub(crate) const SCRAPE_LIMIT: usize = 4 * 1024 * 1024;
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

impl HttpVersion {
    /// What a TLS connection for this version offers by ALPN.
    fn alpn(self) -> Alpn {
        match self {
            HttpVersion::Http1 => Alpn::Http1,
            HttpVersion::Http2 => Alpn::Http2,
            HttpVersion::Auto => Alpn::Either,
        }
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
    /// The local address to connect from; `None`: the system's choice.
    pub source: Option<IpAddr>,
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
            source: None,
        }
    }

    /// The same request in `version` (an upstream's `http_version`).
    pub fn with_version(self, version: HttpVersion) -> ProbeRequest {
        ProbeRequest { version, ..self }
    }

    /// The same request, sent from the local address `source` (`vigil drain` speaks from loopback,
    /// the only peer `/drain` answers, even to an agent listening on one non-loopback address).
    pub fn sent_from(self, source: IpAddr) -> ProbeRequest {
        ProbeRequest {
            source: Some(source),
            ..self
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
        progress.source = request.source;
        let (tcp, addresses) = connect(host, request.port(), progress).await?;
        if request.is_https() {
            let tls = self.handshake(host, tcp, request.version.alpn(), progress).await?;
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
}

/// The user agent of every request.
pub(crate) const USER_AGENT: &str = concat!("vigil/", env!("CARGO_PKG_VERSION"));

/// A connection, plain or TLS, behind one type: hyper's clients are generic over the stream
/// and the body, and each combination is a copy of them in the binary. One stream type and one
/// body type ([`Full`], empty for a GET) keep it at one copy of each client.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

pub(crate) type BoxedStream = Box<dyn Stream>;

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
    let retry_after = answer
        .headers
        .get(http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(RetryAfter::parse);
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
        retry_after,
    })
}

/// A response as read by [`send`].
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    /// At most the caller's limit.
    pub(crate) body: Bytes,
    pub(crate) truncated: bool,
    /// The trailers, when the body ended within the limit and the server sent some.
    pub(crate) trailers: Option<HeaderMap>,
    /// From the request handed over to the response head read.
    pub(crate) first_byte: Duration,
}

/// The largest header block an HTTP/2 answer may have (hyper's default is 16 MiB).
const H2_HEADER_LIMIT: u32 = 64 * 1024;

/// Sends `outgoing` over `stream` in HTTP/1.1 or (`h2`) HTTP/2 and reads the answer: at most
/// `body_limit` bytes of its body, and its trailers when the body ends within that.
///
/// Either way the connection is driven here, beside the request, rather than spawned, so that
/// nothing outlives the run: HTTP/1.1's connection future is polled in a `select!`, HTTP/2's
/// tasks run in [`executor::in_run`]. When the connection ends first (the server closed), the
/// request side resolves right after with the data or the error.
pub(crate) async fn send(
    stream: BoxedStream,
    h2: bool,
    outgoing: Request<Full<Bytes>>,
    body_limit: usize,
) -> Result<Answer, ProbeError> {
    if h2 {
        return executor::in_run(|executor| async move {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    use crate::core::outcome::FailureKind;

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
    fn retry_after_is_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770);
        assert_eq!(RetryAfter::parse(" 30 "), Some(RetryAfter::Seconds(30)));
        assert_eq!(
            RetryAfter::parse("99999999999999999999999"),
            Some(RetryAfter::Seconds(u64::MAX))
        );
        let dated = RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(dated.wait(now), Duration::from_secs(7));
        assert_eq!(dated.seconds(now + Duration::from_millis(500)), 7, "rounded up");
        assert_eq!(dated.wait(now + Duration::from_secs(60)), Duration::ZERO, "a date past");
        for bad in ["", "-1", "1.5", "soon", "30s"] {
            assert_eq!(RetryAfter::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn header_values_never_show_in_debug_output() {
        let request = ProbeRequest::get(
            &url("http://gateway/"),
            [(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cr3t"))],
        );
        assert!(!format!("{request:?}").contains("s3cr3t"));
    }
}
