//! An HTTP/1.1 connection kept open for one request after another, for a caller that talks to
//! one server all the time (the Kubernetes API client). Probes do not use it: each of their
//! runs opens a fresh connection on purpose (`net::http`).
//!
//! The connection is driven inside the caller's future while a request is in flight, never
//! spawned, so dropping a request (a run cut at its timeout, a watch task aborted) drops the
//! connection with it. Between requests nothing drives it; before it is used again
//! [`KeptConnection::is_open`] looks whether the server closed it meanwhile. TCP keepalive is
//! on, so that a peer gone silently (a half-open socket behind a load balancer) is noticed by the
//! kernel rather than waited on forever.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::attempt::{ProbeError, Progress};
use super::connect::connect;
use super::tls::{Alpn, HttpClient};

/// Idle time before the kernel sends the first keepalive probe, and the time between probes.
const KEEPALIVE: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(10));

/// A kept HTTP/1.1 connection over TLS.
pub(crate) struct KeptConnection {
    sender: http1::SendRequest<Full<Bytes>>,
    /// hyper's connection future; `None` once it ended.
    driver: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// Why an exchange on a kept connection failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    #[error("the connection failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("an answer over {0} bytes")]
    TooLarge(usize),
}

impl KeptConnection {
    /// A verified TLS connection to `host:port` (resolved and connected as a probe does, the
    /// client's trust the only one), speaking HTTP/1.1.
    pub(crate) async fn open(client: &HttpClient, host: &str, port: u16) -> Result<KeptConnection, ProbeError> {
        let mut progress = Progress::default();
        let (tcp, _) = connect(host, port, &mut progress).await?;
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE.0)
            .with_interval(KEEPALIVE.1);
        // Best effort: a socket that refuses the option still works.
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let tls = client.handshake(host, tcp, Alpn::Http1, &mut progress).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(tls)).await?;
        Ok(KeptConnection {
            sender,
            driver: Some(Box::pin(connection.map(|_| ()))),
        })
    }

    /// Whether the connection can carry another request: the server has not closed it while it
    /// sat idle (its driver, polled once now, has not ended) and hyper holds it ready.
    pub(crate) fn is_open(&mut self) -> bool {
        if let Some(driver) = &mut self.driver
            && driver.as_mut().now_or_never().is_some()
        {
            self.driver = None;
        }
        self.driver.is_some() && self.sender.is_ready()
    }

    /// Sends `request` and reads the answer's head; the body is read through the [`Exchange`].
    pub(crate) async fn send(mut self, request: Request<Full<Bytes>>) -> Result<Exchange, ExchangeError> {
        let send = self.sender.send_request(request);
        tokio::pin!(send);
        let response = loop {
            match &mut self.driver {
                Some(driver) => tokio::select! {
                    biased;
                    response = &mut send => break response?,
                    () = driver.as_mut() => self.driver = None,
                },
                None => break send.await?,
            }
        };
        let (head, body) = response.into_parts();
        Ok(Exchange {
            status: head.status.as_u16(),
            headers: head.headers,
            body,
            connection: self,
        })
    }
}

/// An answer being read, its connection driven beside it.
pub(crate) struct Exchange {
    pub(crate) status: u16,
    /// The answer's headers (the Kubernetes client reads `Retry-After`).
    pub(crate) headers: http::HeaderMap,
    body: Incoming,
    connection: KeptConnection,
}

impl Exchange {
    /// The next data of the body; `None` at its end.
    async fn data(&mut self) -> Option<Result<Bytes, hyper::Error>> {
        loop {
            let Some(driver) = &mut self.connection.driver else {
                return next_data(&mut self.body).await;
            };
            tokio::select! {
                biased;
                data = next_data(&mut self.body) => return data,
                () = driver.as_mut() => self.connection.driver = None,
            }
        }
    }

    /// The whole body, refused past `limit` bytes, and the connection when it can carry the
    /// next request (the body ended where the server said it would).
    pub(crate) async fn read_all(mut self, limit: usize) -> Result<(Vec<u8>, KeptConnection), ExchangeError> {
        let mut read = Vec::new();
        while let Some(data) = self.data().await {
            let data = data?;
            if read.len() + data.len() > limit {
                return Err(ExchangeError::TooLarge(limit));
            }
            read.extend_from_slice(&data);
        }
        Ok((read, self.connection))
    }

    /// The body as newline-separated lines (a watch stream), none longer than `line_limit`.
    pub(crate) fn lines(self, line_limit: usize) -> Lines {
        Lines {
            exchange: self,
            buffer: Vec::new(),
            scanned: 0,
            line_limit,
        }
    }
}

async fn next_data(body: &mut Incoming) -> Option<Result<Bytes, hyper::Error>> {
    loop {
        match body.frame().await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(error) => return Some(Err(error)),
        }
    }
}

/// A stream of lines, one at a time.
pub(crate) struct Lines {
    exchange: Exchange,
    buffer: Vec<u8>,
    /// How much of `buffer` holds no newline.
    scanned: usize,
    line_limit: usize,
}

impl Lines {
    /// The next non-empty line, without its newline; `None` when the server ended the stream.
    /// A line longer than the limit is an error (the stream is then of no further use).
    pub(crate) async fn next_line(&mut self) -> Result<Option<Vec<u8>>, ExchangeError> {
        loop {
            if let Some(at) = self.buffer[self.scanned..].iter().position(|b| *b == b'\n') {
                let end = self.scanned + at;
                let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                self.scanned = 0;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            self.scanned = self.buffer.len();
            if self.buffer.len() > self.line_limit {
                return Err(ExchangeError::TooLarge(self.line_limit));
            }
            match self.exchange.data().await {
                Some(data) => self.buffer.extend_from_slice(&data?),
                None if self.buffer.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                None => {
                    self.scanned = 0;
                    return Ok(Some(std::mem::take(&mut self.buffer)));
                }
            }
        }
    }

    /// The connection, for the next request, once the stream has ended.
    pub(crate) fn into_connection(self) -> KeptConnection {
        self.exchange.connection
    }
}
