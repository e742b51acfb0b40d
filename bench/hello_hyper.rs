//! The minimal hyper 1.x server that `bench/readyz.sh` measures vigil's `/readyz` against.
//!
//! Built like vigil's own server so that the comparison is fair: a tokio multi-thread runtime
//! with two workers, `http1::Builder` with the tokio timer and a 5 s header-read timeout,
//! `TCP_NODELAY` on every accepted connection, one task per connection. Every request, to any
//! path, is answered `200 ok\n` in `text/plain`.
//!
//! Usage: `cargo run --release --example hello_hyper -- [ADDR]` (default `127.0.0.1:9477`).
//! Stops on SIGINT or SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, body::Incoming, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

const DEFAULT_ADDR: &str = "127.0.0.1:9477";
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

async fn serve(listener: TcpListener) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                eprintln!("hello_hyper: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = builder.serve_connection(TokioIo::new(stream), service_fn(hello));
        tokio::spawn(async move {
            // Clients resetting their connections (wrk at the end of a run) are not news.
            let _ = connection.await;
        });
    }
}

fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or(DEFAULT_ADDR)
        .parse()
        .expect("usage: hello_hyper [ADDR], where ADDR is an IP:PORT such as 127.0.0.1:9477");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");

    runtime.block_on(async move {
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("hello_hyper: cannot listen on {addr}: {error}");
                std::process::exit(1);
            }
        };
        let (mut sigterm, mut sigint) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => (term, int),
            (Err(error), _) | (_, Err(error)) => {
                eprintln!("hello_hyper: cannot listen for signals: {error}");
                std::process::exit(1);
            }
        };
        eprintln!("hello_hyper: listening on http://{addr}");
        tokio::select! {
            () = serve(listener) => {}
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
    });
}
