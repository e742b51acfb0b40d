//! The jwt check's own small HTTP client: one GET per call over a fresh connection, the body
//! capped, the whole exchange under one deadline.
//!
//! Private to the jwt module on purpose: the upstream check grows a phase-timing client of its
//! own, and the two are to be unified later. A fresh connection per call tells the truth about
//! the path to the gateway and the auth service (a kept connection would hide a dead listener).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::checks::FailureKind;
use crate::config::{HttpUrl, show};
use crate::secret::Secret;

/// What a GET brought back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The server's `Date` header, when it sent a valid one.
    pub date: Option<SystemTime>,
    /// The body, at most the cap given; `None` when it was larger (or broke off) and the caller
    /// did not need it whole.
    pub body: Option<Bytes>,
}

/// Why a GET got no answer. Never carries the request's headers (they hold a token).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("not a usable URL")]
    Url,
    #[error("cannot resolve {host}: {source}")]
    Dns { host: String, source: io::Error },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("connection refused")]
    Refused,
    #[error("connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("invalid TLS server name {0}")]
    ServerName(String),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {0}")]
    Timeout(String),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the body: {0}")]
    Body(String),
}

impl HttpError {
    pub fn kind(&self) -> FailureKind {
        match self {
            HttpError::Url => FailureKind::Misconfigured,
            HttpError::Dns { .. } | HttpError::NoAddress { .. } => FailureKind::Dns,
            HttpError::Refused => FailureKind::Refused,
            HttpError::Connect { .. } | HttpError::Http(_) | HttpError::TooLarge(_) | HttpError::Body(_) => {
                FailureKind::Protocol
            }
            HttpError::ServerName(_) | HttpError::Tls(_) => FailureKind::Tls,
            HttpError::Timeout(_) => FailureKind::Timeout,
        }
    }
}

/// The TLS settings for https URLs: the webpki roots, on the same aws-lc-rs provider as the rest
/// of the agent. Built once per check, only when one of its URLs is https.
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `GET url`, with `Authorization: Bearer <token>` when a token is given. A body over `cap`
/// bytes is an error when `need_body`, else dropped (the status is all the caller wants).
pub async fn get(
    url: &HttpUrl,
    bearer: Option<&Secret<String>>,
    cap: usize,
    need_body: bool,
    tls: Option<&Arc<rustls::ClientConfig>>,
    deadline: Duration,
) -> Result<Answer, HttpError> {
    tokio::time::timeout(deadline, exchange(url, bearer, cap, need_body, tls))
        .await
        .unwrap_or_else(|_| {
            // Whole milliseconds: `360ms`, not `359ms 996us 274ns` of a deadline computed from a clock.
            let millis = u64::try_from(deadline.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
            Err(HttpError::Timeout(show(Duration::from_millis(millis))))
        })
}

async fn exchange(
    url: &HttpUrl,
    bearer: Option<&Secret<String>>,
    cap: usize,
    need_body: bool,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Answer, HttpError> {
    let uri: http::Uri = url.as_str().parse().map_err(|_| HttpError::Url)?;
    let https = uri.scheme_str() == Some("https");
    let authority = uri.host().ok_or(HttpError::Url)?;
    let host = authority.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    // Built from host and port, never from the authority, which may carry `user:password@`.
    let host_header = match uri.port_u16() {
        Some(port) => format!("{authority}:{port}"),
        None => authority.to_owned(),
    };
    let stream = connect(host, port).await?;

    let mut request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, host_header)
        .header(http::header::USER_AGENT, concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .header(http::header::ACCEPT, "application/json, */*")
        .body(Empty::<Bytes>::new())
        .map_err(|_| HttpError::Url)?;
    if let Some(token) = bearer {
        let mut value =
            http::HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| HttpError::Url)?;
        value.set_sensitive(true);
        request.headers_mut().insert(http::header::AUTHORIZATION, value);
    }

    let response = if https {
        let config = match tls {
            Some(config) => Arc::clone(config),
            None => tls_config().map_err(|e| HttpError::Tls(io::Error::other(e)))?,
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| HttpError::ServerName(host.to_owned()))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(HttpError::Tls)?;
        send(stream, request).await?
    } else {
        send(stream, request).await?
    };
    // Held until the body is read; dropping it (here or when the scheduler cuts the run) ends the
    // connection's task, so no connection outlives its request.
    let (response, _connection) = response;

    let status = response.status().as_u16();
    let date = response
        .headers()
        .get(http::header::DATE)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| httpdate::parse_http_date(text).ok());
    let body = match Limited::new(response.into_body(), cap).collect().await {
        Ok(collected) => Some(collected.to_bytes()),
        Err(_) if !need_body => None,
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return Err(HttpError::TooLarge(cap)),
        Err(error) => return Err(HttpError::Body(error.to_string())),
    };
    Ok(Answer { status, date, body })
}

/// Resolves `host` and connects to the first address that answers.
async fn connect(host: &str, port: u16) -> Result<TcpStream, HttpError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| HttpError::Dns {
            host: host.to_owned(),
            source,
        })?
        .collect();
    let mut last = HttpError::NoAddress { host: host.to_owned() };
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(source) if source.kind() == io::ErrorKind::ConnectionRefused => last = HttpError::Refused,
            Err(source) => last = HttpError::Connect { addr, source },
        }
    }
    Err(last)
}

/// Aborts the task that drives a connection when dropped.
struct ConnectionTask(tokio::task::JoinHandle<()>);

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request over an HTTP/1.1 connection on `stream`; the connection is driven by a task
/// that lives as long as the returned guard.
async fn send<S>(
    stream: S,
    request: http::Request<Empty<Bytes>>,
) -> Result<(http::Response<Incoming>, ConnectionTask), HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let task = ConnectionTask(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender.send_request(request).await?;
    Ok((response, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_settings_build_on_the_aws_lc_rs_provider() {
        assert!(tls_config().is_ok());
    }

    #[tokio::test]
    async fn a_refused_connection_is_its_own_kind() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        for scheme in ["http", "https"] {
            let url = HttpUrl::parse(&format!("{scheme}://127.0.0.1:{port}/")).unwrap();
            let error = get(&url, None, 1024, true, None, Duration::from_secs(2))
                .await
                .unwrap_err();
            assert_eq!(error.to_string(), "connection refused");
            assert_eq!(error.kind(), FailureKind::Refused);
        }
    }

    #[tokio::test]
    async fn a_plain_http_server_is_no_tls_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut stream, _) = listener.accept().await.unwrap();
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let url = HttpUrl::parse(&format!("https://127.0.0.1:{port}/")).unwrap();
        let error = get(&url, None, 1024, true, None, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), FailureKind::Tls, "{error}");
    }
}
