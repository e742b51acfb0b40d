//! A small typed client of the Kubernetes API, on the agent's one network engine: HTTP/1.1 over
//! kept-alive TLS connections (`net::kept`, the cluster CA the only trust), reused from one
//! request to the next (a watch's when it ends), each driven inside the caller's future, so that
//! dropping a request (a run cut at its timeout, a watch task aborted) drops its connection.
//!
//! Every request reads the service account token again from its file (on the blocking pool):
//! projected tokens rotate, and a cached token that expired would leave vigil blind. Every
//! answer is bounded: a whole answer is read to a cap ([`LIST_LIMIT`] for lists, [`SMALL_LIMIT`]
//! for the rest), a watch stream one line at a time to [`LINE_LIMIT`] a line, so that a broken
//! or hostile API server costs bounded memory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use http_body_util::Full;
use serde::de::DeserializeOwned;

use super::objects::Status;
use crate::core::outcome::{FailureKind, Finding};
use crate::core::secret::Secret;
use crate::core::url::HttpUrl;
use crate::net;
use crate::net::attempt::ProbeError;
use crate::net::kept::{Exchange, ExchangeError, KeptConnection};
use crate::net::tls::HttpClient;

/// The most one line of a watch stream may hold: the API server stores objects of at most
/// 1.5 MiB (etcd's request limit), plus the event's envelope.
pub(crate) const LINE_LIMIT: usize = 2 * 1024 * 1024;
/// The most a list may hold, all its pages together (vigil lists one pod and one Service's
/// slices).
pub(crate) const LIST_LIMIT: usize = 8 * 1024 * 1024;
/// The most any other answer may hold (PodMetrics, an Event written, an error's Status).
pub(crate) const SMALL_LIMIT: usize = 256 * 1024;

/// Where vigil's rights are granted, named by every 403's reason.
pub(crate) const RBAC_FILE: &str = "deploy/base/rbac.yaml";

/// Why a request got no usable answer. Never holds the token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    Token(String),
    #[error("cannot reach {url}: {error}")]
    Unreachable { url: String, error: ProbeError },
    #[error("timed out after {0}")]
    Timeout(String),
    #[error("status {code}{}", status_suffix(.status))]
    Status {
        code: u16,
        status: Box<Status>,
        /// The server's `Retry-After` (its header, else the Status's `retryAfterSeconds`).
        retry_after: Option<Duration>,
    },
    #[error("the connection failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
    #[error("an answer over {0} bytes")]
    TooLarge(usize),
    #[error("a list of more than {0} pages")]
    TooManyPages(usize),
    #[error("nothing received for {0}, not even a bookmark (a dead connection)")]
    Silent(String),
    #[error("an answer vigil cannot read: {0}")]
    Json(String),
}

impl From<ExchangeError> for ApiError {
    fn from(error: ExchangeError) -> ApiError {
        match error {
            ExchangeError::Http(error) => ApiError::Http(error),
            ExchangeError::TooLarge(limit) => ApiError::TooLarge(limit),
        }
    }
}

fn status_suffix(status: &Status) -> String {
    let mut text = String::new();
    if let Some(reason) = &status.reason {
        text.push(' ');
        text.push_str(&shorten(reason, 64));
    }
    if let Some(message) = &status.message {
        text.push_str(": ");
        text.push_str(&shorten(message, 200));
    }
    text
}

/// `text` as one printable line of at most `max` bytes (an API server's words are shown, never
/// trusted: `core::text`).
pub(crate) fn shorten(text: &str, max: usize) -> String {
    crate::core::text::one_line(text, max).into_owned()
}

impl ApiError {
    /// The HTTP status the API answered, if it answered one.
    pub(crate) fn code(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the server is behind the version asked for (504 "Too large resource version",
    /// apiserver storage/errors.go, from a lagging watch cache): watching from the same version
    /// again may never work, listing again does (client-go reflector.go relists on it).
    pub(crate) fn is_too_large_resource_version(&self) -> bool {
        match self {
            ApiError::Status { code: 504, status, .. } => status
                .message
                .as_deref()
                .is_some_and(|m| m.contains("Too large resource version")),
            _ => false,
        }
    }

    /// Whether waiting and asking again may be all it takes: the API server rolling (a cut, a
    /// refused or slow connection), overloaded (429, its `Retry-After`), failing for a moment
    /// (5xx, among them 504 "too large resource version" while its cache catches up), or an
    /// answer cut short. These are retried quietly; the rest (no token, 401, 403, another 4xx, an
    /// answer over its cap) wait for a person, and are shown at once.
    pub(crate) fn is_routine(&self) -> bool {
        match self {
            ApiError::Unreachable { .. }
            | ApiError::Timeout(_)
            | ApiError::Silent(_)
            | ApiError::Http(_)
            | ApiError::Json(_) => true,
            ApiError::Status { code, .. } => matches!(code, 408 | 410 | 429 | 500..=599),
            ApiError::Token(_) | ApiError::Request(_) | ApiError::TooLarge(_) | ApiError::TooManyPages(_) => false,
        }
    }

    /// How long the server asked to be left alone, if it did.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What failed, for a person: `kubernetes API: forbidden: cannot get pods/metrics in
    /// namespace api-gateway; grant it with deploy/base/rbac.yaml`, with a hint; a warn (an API
    /// server outage must not empty the Service).
    pub(crate) fn problem(&self, verb: &str, resource: &str, namespace: &str) -> Finding {
        let (kind, reason, hint) = match self {
            ApiError::Status { code: 401, .. } => (
                FailureKind::Auth,
                "unauthorized: the service account token was refused (expired, or its ServiceAccount is gone)".to_owned(),
                "projected tokens rotate and vigil reads the file again on every request: check that the token volume is mounted in the vigil container (deploy/base/deployment.yaml) and the ServiceAccount exists".to_owned(),
            ),
            ApiError::Status { code: 403, .. } => (
                FailureKind::Auth,
                format!("forbidden: cannot {verb} {resource} in namespace {namespace}; grant it with {RBAC_FILE}"),
                format!("kubectl apply -k deploy/base (the Role in {RBAC_FILE}), then kubectl auth can-i {verb} {resource} -n {namespace} --as=system:serviceaccount:{namespace}:<vigil's service account>"),
            ),
            ApiError::Token(message) => (
                FailureKind::Io,
                message.clone(),
                "mount the service account token in the vigil container (a projected volume, deploy/base/deployment.yaml) or set kubernetes.token_file".to_owned(),
            ),
            ApiError::Unreachable { error, .. } if error.kind() == FailureKind::Tls => (
                FailureKind::Tls,
                self.to_string(),
                "the API server's certificate must be signed by the CA in kubernetes.ca_file (the service account's ca.crt unless set): compare it with `kubectl config view --raw` or `openssl s_client -showcerts` against api_url; vigil keeps its last view of the pod meanwhile".to_owned(),
            ),
            ApiError::Unreachable { error, .. } => (
                error.kind(),
                self.to_string(),
                "the API server or the network to it: kubectl get --raw /readyz; vigil keeps its last view of the pod meanwhile".to_owned(),
            ),
            ApiError::Timeout(_) => (
                FailureKind::Timeout,
                format!("{verb} {resource} {self}"),
                "the API server is slow or overloaded: kubectl get --raw /readyz?verbose; vigil keeps its last view of the pod meanwhile".to_owned(),
            ),
            ApiError::Status { .. }
            | ApiError::Http(_)
            | ApiError::Request(_)
            | ApiError::TooLarge(_)
            | ApiError::TooManyPages(_)
            | ApiError::Silent(_)
            | ApiError::Json(_) => (
                match self {
                    ApiError::Status { .. } => FailureKind::HttpStatus,
                    ApiError::Silent(_) => FailureKind::Timeout,
                    _ => FailureKind::Protocol,
                },
                format!("{verb} {resource}: {self}"),
                "see the API server's health (kubectl get --raw /readyz?verbose) and vigil's log".to_owned(),
            ),
        };
        Finding::warn(kind, format!("kubernetes API: {reason}")).with_hint(hint)
    }
}

/// The most idle connections kept for the next requests: the two watches hold one each while
/// they stream, the metrics reads and the Event writes share the rest.
const IDLE_KEPT: usize = 2;

/// The API server and the credentials to ask it with, over kept-alive connections.
pub(crate) struct ApiClient {
    url: HttpUrl,
    host: String,
    port: u16,
    tls: HttpClient,
    token_file: PathBuf,
    /// Connections between requests, most recent last.
    idle: Arc<Mutex<Vec<KeptConnection>>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("url", &self.url.as_str())
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl ApiClient {
    pub(crate) fn new(url: &HttpUrl, tls: HttpClient, token_file: &Path) -> ApiClient {
        let uri = url.uri();
        let host = uri.host().unwrap_or_default();
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        ApiClient {
            url: url.clone(),
            host: host.to_owned(),
            port: uri.port_u16().unwrap_or(443),
            tls,
            token_file: token_file.to_owned(),
            idle: Arc::default(),
        }
    }

    /// `GET path`, the answer parsed as `T`, read to at most `limit` bytes.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, path: &str, limit: usize) -> Result<T, ApiError> {
        Ok(self.get_json_sized(path, limit).await?.0)
    }

    /// As [`ApiClient::get_json`], with the size of the answer (a list's pages share one cap).
    pub(crate) async fn get_json_sized<T: DeserializeOwned>(
        &self,
        path: &str,
        limit: usize,
    ) -> Result<(T, usize), ApiError> {
        let exchange = self.open(Method::GET, path, None).await?;
        let (body, connection) = exchange.read_all(limit).await?;
        give_back(&self.idle, connection);
        let parsed = serde_json::from_slice(&body).map_err(|e| ApiError::Json(e.to_string()))?;
        Ok((parsed, body.len()))
    }

    /// `method path` with a JSON body of `content_type`; any 2xx is success.
    pub(crate) async fn send_json(
        &self,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> Result<(), ApiError> {
        let exchange = self.open(method, path, Some((content_type, body))).await?;
        let (_, connection) = exchange.read_all(SMALL_LIMIT).await?;
        give_back(&self.idle, connection);
        Ok(())
    }

    /// `GET path` whose answer is a stream of JSON lines (a watch).
    pub(crate) async fn stream(&self, path: &str) -> Result<Lines, ApiError> {
        let exchange = self.open(Method::GET, path, None).await?;
        Ok(Lines {
            lines: Some(exchange.lines(LINE_LIMIT)),
            idle: Arc::clone(&self.idle),
        })
    }

    /// The token, read again now (off the runtime's threads).
    async fn token(&self) -> Result<Secret<String>, ApiError> {
        let path = self.token_file.clone();
        tokio::task::spawn_blocking(move || crate::core::secret::read_file(&path))
            .await
            .map_err(|e| ApiError::Token(format!("reading the service account token failed: {e}")))?
            .map_err(|e| ApiError::Token(format!("cannot read the service account token: {e}")))
    }

    /// An idle connection that is still open, or a new one.
    async fn connection(&self) -> Result<(KeptConnection, bool), ApiError> {
        while let Some(mut connection) = lock(&self.idle).pop() {
            if connection.is_open() {
                return Ok((connection, true));
            }
        }
        let connection = KeptConnection::open(&self.tls, &self.host, self.port)
            .await
            .map_err(|error| ApiError::Unreachable {
                url: self.url.as_str().to_owned(),
                error,
            })?;
        Ok((connection, false))
    }

    /// Sends the request and reads the answer's head; a status other than 2xx becomes
    /// [`ApiError::Status`] with the Status the server sent. A request that finds its reused
    /// connection closed by the server meanwhile is sent once more on a new one (see
    /// [`resend_on_a_new_connection`]).
    async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Exchange, ApiError> {
        let token = self.token().await?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
            ApiError::Token(format!(
                "the service account token in {} holds characters a header cannot carry",
                self.token_file.display()
            ))
        })?;
        authorization.set_sensitive(true);
        let authority = self.url.uri().authority().map_or(self.host.as_str(), |a| a.as_str());
        let request = |body: &Option<(&'static str, Vec<u8>)>| -> Result<Request<Full<Bytes>>, ApiError> {
            let mut builder = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(http::header::HOST, authority)
                .header(http::header::USER_AGENT, concat!("vigil/", env!("CARGO_PKG_VERSION")))
                .header(http::header::ACCEPT, "application/json")
                .header(http::header::AUTHORIZATION, authorization.clone());
            let body = match body {
                Some((content_type, bytes)) => {
                    builder = builder.header(http::header::CONTENT_TYPE, *content_type);
                    Full::new(Bytes::from(bytes.clone()))
                }
                None => Full::new(Bytes::new()),
            };
            Ok(builder.body(body)?)
        };
        let (connection, reused) = self.connection().await?;
        let exchange = match connection.send(request(&body)?).await {
            Err(ExchangeError::Http(error)) if reused && resend_on_a_new_connection(&method, &error) => {
                let (connection, _) = self.connection().await?;
                connection.send(request(&body)?).await?
            }
            sent => sent?,
        };
        if !(200..300).contains(&exchange.status) {
            let code = exchange.status;
            let header = exchange
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let status = match exchange.read_all(SMALL_LIMIT).await {
                Ok((text, connection)) => {
                    give_back(&self.idle, connection);
                    serde_json::from_slice::<Status>(&text).unwrap_or_default()
                }
                Err(_) => Status::default(),
            };
            let retry_after = header.or_else(|| status.retry_after_seconds()).map(Duration::from_secs);
            return Err(ApiError::Status {
                code,
                status: Box::new(status),
                retry_after,
            });
        }
        Ok(exchange)
    }
}

/// Keeps `connection` for the next request, if it can carry one and there is room.
fn give_back(idle: &Mutex<Vec<KeptConnection>>, mut connection: KeptConnection) {
    if connection.is_open() {
        let mut idle = lock(idle);
        if idle.len() < IDLE_KEPT {
            idle.push(connection);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A watch stream, one line at a time; its connection goes back to the client's idle ones
/// when the server ends the stream.
pub(crate) struct Lines {
    lines: Option<net::kept::Lines>,
    idle: Arc<Mutex<Vec<KeptConnection>>>,
}

impl Lines {
    /// The next non-empty line, without its newline; `None` when the server ended the stream.
    /// A line longer than [`LINE_LIMIT`] is an error (the stream is then of no further use).
    pub(crate) async fn next_line(&mut self) -> Result<Option<Vec<u8>>, ApiError> {
        let Some(lines) = &mut self.lines else {
            return Ok(None);
        };
        let line = lines.next_line().await?;
        if line.is_none()
            && let Some(ended) = self.lines.take()
        {
            give_back(&self.idle, ended.into_connection());
        }
        Ok(line)
    }
}

/// A request cut at `after`, the error naming it.
pub(crate) async fn within<T>(
    after: Duration,
    request: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(after, request)
        .await
        .unwrap_or_else(|_| Err(ApiError::Timeout(crate::core::fmt::duration(after))))
}

/// Whether a request that failed on a reused connection goes out again on a new one: the
/// API server (and a load balancer before it) closes idle connections, and the close can cross
/// the request. hyper says `canceled` when the request never left (safe for any method), and
/// `incomplete message` or `closed` when the connection ended around it: only a GET is sent
/// again then, as the server may have acted on it.
fn resend_on_a_new_connection(method: &Method, error: &hyper::Error) -> bool {
    error.is_canceled() || (method == Method::GET && (error.is_closed() || error.is_incomplete_message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What hyper answers when the server closes a kept connection as a request goes out: the
    /// request is sent again when it is a GET (before, only `is_closed` was, which hyper's
    /// HTTP/1 client never reports for this).
    #[tokio::test]
    async fn a_get_crossed_by_the_servers_close_is_sent_again() {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            // Closed without an answer: the idle timeout firing as the request arrived.
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = Request::get("/api/v1/pods").body(Full::new(Bytes::new())).unwrap();
        let error = sender.send_request(request).await.unwrap_err();
        assert!(resend_on_a_new_connection(&Method::GET, &error), "{error:?}");
        assert!(!resend_on_a_new_connection(&Method::POST, &error), "{error:?}");
    }

    #[test]
    fn each_failure_names_what_failed() {
        let forbidden = ApiError::Status {
            code: 403,
            status: Box::default(),
            retry_after: None,
        };
        assert_eq!(
            forbidden.problem("get", "pods/metrics", "api-gateway").reason,
            "kubernetes API: forbidden: cannot get pods/metrics in namespace api-gateway; grant it with deploy/base/rbac.yaml"
        );
        let expired = ApiError::Status {
            code: 401,
            status: Box::default(),
            retry_after: None,
        };
        let problem = expired.problem("watch", "pods", "gw");
        assert_eq!(problem.kind, FailureKind::Auth);
        assert!(problem.reason.contains("token was refused"), "{}", problem.reason);
        let slow = ApiError::Timeout("2s".to_owned()).problem("get", "pods/metrics", "gw");
        assert_eq!(slow.reason, "kubernetes API: get pods/metrics timed out after 2s");
        let odd = ApiError::Status {
            code: 500,
            status: Box::new(Status {
                reason: Some("InternalError".to_owned()),
                message: Some("x".repeat(500)),
                ..Status::default()
            }),
            retry_after: None,
        };
        let reason = odd.problem("list", "pods", "gw").reason;
        assert!(
            reason.starts_with("kubernetes API: list pods: status 500 InternalError: xxx"),
            "{reason}"
        );
        assert!(reason.chars().count() < 300, "an API server's message is cut: {reason}");
        let untrusted = ApiError::Unreachable {
            url: "https://10.96.0.1:443".to_owned(),
            error: ProbeError::Tls(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "invalid peer certificate: UnknownIssuer",
            )),
        };
        let problem = untrusted.problem("list", "pods", "gw");
        assert_eq!(problem.kind, FailureKind::Tls);
        assert!(problem.reason.contains("UnknownIssuer"), "{}", problem.reason);
        assert!(
            problem
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("kubernetes.ca_file")),
            "a certificate the CA does not sign points at kubernetes.ca_file: {:?}",
            problem.hint
        );
    }

    #[test]
    fn routine_failures_are_the_ones_retrying_can_fix() {
        let status = |code| ApiError::Status {
            code,
            status: Box::default(),
            retry_after: None,
        };
        for code in [410, 429, 500, 503, 504] {
            assert!(status(code).is_routine(), "{code}");
        }
        for code in [400, 401, 403, 404, 422] {
            assert!(!status(code).is_routine(), "{code}");
        }
        assert!(ApiError::Timeout("10s".to_owned()).is_routine());
        assert!(!ApiError::Token("no token".to_owned()).is_routine());
        assert!(!ApiError::TooLarge(LIST_LIMIT).is_routine());
    }
}
