//! Real HTTP servers on 127.0.0.1 for fake upstreams, gateways and auth services.
//!
//! [`FakeServer::start`] runs a hyper 1.x HTTP/1.1 server on its own single-threaded tokio runtime in a
//! background thread, so tests can be plain synchronous `#[test]`s. The handler is a plain closure
//! `Fn(Request) -> Response`; it can be replaced while the server runs ([`FakeServer::set_handler`]),
//! which is how tests make a dependency flap. [`FakeServer::hanging`] accepts connections and never
//! answers, for timeout tests. Dropping a server stops it and closes every connection.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

/// A request as the fake server received it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `HEAD`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string without `?`, if the request had one.
    pub query: Option<String>,
    /// Headers in the order received, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The whole request body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The bearer token of the `Authorization` header, if any.
    pub fn bearer_token(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// The body as UTF-8 (lossily).
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the fake server answers. Build with [`Response::new`], [`Response::text`], [`Response::json`].
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (`Content-Length` is added by the server).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Wait this long before sending anything (the connection stays open meanwhile).
    pub delay: Option<Duration>,
    /// Close the connection without answering (after `delay`).
    pub abort: bool,
}

impl Response {
    /// An empty answer with `status`.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: None,
            abort: false,
        }
    }

    /// A `text/plain` answer.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into().into_bytes())
    }

    /// An `application/json` answer.
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response::new(status)
            .with_header("content-type", "application/json")
            .with_body(body.to_string().into_bytes())
    }

    /// A Prometheus text exposition answer (e.g. a fake gateway's `/metrics`).
    pub fn prometheus(body: impl Into<String>) -> Response {
        Response::new(200)
            .with_header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .with_body(body.into().into_bytes())
    }

    /// Closes the connection without any answer (the client sees an empty reply / reset).
    pub fn abort() -> Response {
        Response {
            abort: true,
            ..Response::new(500)
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// Answers only after `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Response {
        self.delay = Some(delay);
        self
    }
}

type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync + 'static>;

struct Shared {
    handler: RwLock<Handler>,
    requests: AtomicUsize,
    connections: AtomicUsize,
    received: Mutex<Vec<Request>>,
}

enum Stop {
    Tokio(tokio::sync::oneshot::Sender<()>),
    Flag(Arc<AtomicBool>),
}

/// A real server on 127.0.0.1:<ephemeral port>; stopped on drop.
pub struct FakeServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Starts an HTTP/1.1 server whose every answer is `handler(request)`.
    ///
    /// A panic in the handler becomes a 500 answer whose body carries the panic message.
    pub fn start(handler: impl Fn(Request) -> Response + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("fake server: bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("fake server: set_nonblocking");
        let addr = listener.local_addr().expect("fake server: local_addr");
        let shared = Arc::new(Shared {
            handler: RwLock::new(Arc::new(handler)),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fake-http-{}", addr.port()))
            .spawn(move || serve(listener, thread_shared, stop_rx))
            .expect("fake server: spawn thread");
        FakeServer {
            addr,
            shared,
            stop: Some(Stop::Tokio(stop_tx)),
            thread: Some(thread),
        }
    }

    /// Starts a server that answers every request with a clone of `response`.
    pub fn fixed(response: Response) -> FakeServer {
        FakeServer::start(move |_| response.clone())
    }

    /// Starts a TCP listener that accepts connections, holds them open and never sends a byte.
    ///
    /// [`FakeServer::connections`] counts the accepted connections; [`FakeServer::requests`] stays 0.
    pub fn hanging() -> FakeServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("hanging server: bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("hanging server: set_nonblocking");
        let addr = listener.local_addr().expect("hanging server: local_addr");
        let shared = Arc::new(Shared {
            handler: RwLock::new(Arc::new(|_| Response::abort())),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_shared, thread_stop) = (Arc::clone(&shared), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name(format!("fake-hang-{}", addr.port()))
            .spawn(move || {
                let mut held: Vec<TcpStream> = Vec::new();
                while !thread_stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            thread_shared.connections.fetch_add(1, Ordering::SeqCst);
                            held.push(stream);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                drop(held);
            })
            .expect("hanging server: spawn thread");
        FakeServer {
            addr,
            shared,
            stop: Some(Stop::Flag(stop)),
            thread: Some(thread),
        }
    }

    /// Replaces the handler; requests received from now on use the new one.
    pub fn set_handler(&self, handler: impl Fn(Request) -> Response + Send + Sync + 'static) {
        *self.shared.handler.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(handler);
    }

    /// From now on answers every request with a clone of `response`.
    pub fn set_response(&self, response: Response) {
        self.set_handler(move |_| response.clone());
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') || path.is_empty() {
            format!("http://{}{}", self.addr, path)
        } else {
            format!("http://{}/{}", self.addr, path)
        }
    }

    /// Number of HTTP requests received so far (counted on arrival, before any delay).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Number of TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Request> {
        self.shared.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The latest request received, if any.
    pub fn last_request(&self) -> Option<Request> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last()
            .cloned()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        match self.stop.take() {
            Some(Stop::Tokio(tx)) => {
                let _ = tx.send(());
            }
            Some(Stop::Flag(flag)) => flag.store(true, Ordering::SeqCst),
            None => {}
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("fake server: build tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("fake server: tokio listener");
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(Arc::clone(&shared), req));
                        let _ = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
    });
    // Dropping the runtime cancels the connection tasks, which closes their sockets.
    drop(runtime);
}

async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let request = Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    shared.requests.fetch_add(1, Ordering::SeqCst);
    shared
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(request.clone());

    let handler = Arc::clone(&shared.handler.read().unwrap_or_else(|e| e.into_inner()));
    let response = match catch_unwind(AssertUnwindSafe(|| handler(request))) {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".to_string());
            Response::text(500, format!("fake server handler panicked: {message}"))
        }
    };
    if let Some(delay) = response.delay {
        tokio::time::sleep(delay).await;
    }
    if response.abort {
        return Err(std::io::Error::other("fake server: connection aborted on purpose"));
    }
    let mut builder = hyper::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    match builder.body(Full::new(Bytes::from(response.body))) {
        Ok(answer) => Ok(answer),
        Err(e) => {
            let mut answer = hyper::Response::new(Full::new(Bytes::from(format!("fake server: bad response: {e}"))));
            *answer.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            Ok(answer)
        }
    }
}
