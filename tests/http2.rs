//! `http_version` against a real HTTP/2 server on 127.0.0.1 (hyper's, serving HTTP/1.1 and
//! HTTP/2 on one port, with and without TLS): `auto` negotiates h2 by ALPN and falls back to
//! HTTP/1.1 where the server offers only that; `"2"` speaks h2c with prior knowledge on plain
//! http and fails, saying why, against a TLS server that does not choose h2; plain http stays
//! HTTP/1.1 under `auto`. What is asserted is what a user sees: `/readyz?verbose`, `/diag` and
//! the server's own record of the protocol it was asked in.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use support::tls::Issued;
use support::{Vigil, poll_until};

/// A server answering `200 ok` in HTTP/1.1 or HTTP/2 (hyper-util's `auto`: it tells them apart
/// by the client's first bytes), over TLS offering `alpn` when given, and noting the version of
/// every request.
struct H2Server {
    addr: SocketAddr,
    tls: bool,
    seen: Arc<Mutex<Vec<http::Version>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl H2Server {
    fn plain() -> H2Server {
        H2Server::start(None)
    }

    fn tls(issued: &Issued, alpn: &[&[u8]]) -> H2Server {
        H2Server::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            issued.server_config(alpn),
        ))))
    }

    fn start(acceptor: Option<tokio_rustls::TlsAcceptor>) -> H2Server {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("h2: bind");
        listener.set_nonblocking(true).expect("h2: nonblocking");
        let addr = listener.local_addr().expect("h2: local_addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let tls = acceptor.is_some();
        let noted = Arc::clone(&seen);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("h2: runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("h2: listener");
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stop_rx => return,
                        accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    };
                    let acceptor = acceptor.clone();
                    let noted = Arc::clone(&noted);
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                                noted.lock().unwrap().push(request.version());
                                async {
                                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
                                }
                            });
                        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        match acceptor {
                            Some(acceptor) => {
                                let Ok(tls) = acceptor.accept(tcp).await else { return };
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                            None => {
                                let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                            }
                        }
                    });
                }
            });
        });
        H2Server {
            addr,
            tls,
            seen,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/healthz", self.addr)
    }

    /// The version of the last request the server was asked.
    fn last_version(&self) -> Option<http::Version> {
        self.seen.lock().unwrap().last().copied()
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An upstream `web` at `url` with `extra` keys, trusting `ca` when given.
fn config(url: &str, extra: &str, ca: Option<&std::path::Path>) -> String {
    let ca = ca
        .map(|path| format!("ca_file = \"{}\"\n", path.display()))
        .unwrap_or_default();
    format!(
        "[system]\nenabled = false\n\n[[upstream]]\nname = \"web\"\nurl = \"{url}\"\ninterval = \"500ms\"\ntimeout = \"500ms\"\nfailure_threshold = 1\n{ca}{extra}\n"
    )
}

/// Waits for `line` in `/readyz?verbose`.
#[track_caller]
fn wait_for_line(vigil: &Vigil, line: &str) -> String {
    let mut last = String::new();
    if !poll_until(Duration::from_secs(8), || {
        last = vigil.get("/readyz?verbose").body;
        last.contains(line)
    }) {
        panic!("no line {line:?} in /readyz?verbose:\n{last}\nlogs:\n{}", vigil.logs());
    }
    last
}

/// The protocol `/diag` says the last answer came in: the JSON details and the text report.
fn diag_protocol(vigil: &Vigil) -> (Value, String) {
    let json: Value = vigil.get("/diag?format=json").json();
    let details = json["vigil"]["checks"]["upstream:web"]["last_run"]["details"]["protocol"].clone();
    let text = vigil.get("/diag").body;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("protocol "))
        .map(|l| l.split_whitespace().last().unwrap_or_default().to_owned())
        .unwrap_or_default();
    (details, line)
}

fn write_ca(issued: &Issued, dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &issued.ca_pem).unwrap();
    path
}

#[test]
fn auto_negotiates_h2_by_alpn_and_falls_back_to_http_1_1() {
    let issued = Issued::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(&issued, &dir);

    // A server offering h2 and http/1.1: auto (the default) gets h2.
    let both = H2Server::tls(&issued, &[b"h2", b"http/1.1"]);
    let vigil = Vigil::start(&config(&both.url(), "", Some(&ca)));
    wait_for_line(&vigil, "[+]upstream:web ok");
    assert_eq!(diag_protocol(&vigil), (Value::from("HTTP/2"), "HTTP/2".to_owned()));
    assert_eq!(
        both.last_version(),
        Some(http::Version::HTTP_2),
        "the server was asked in HTTP/2"
    );
    drop(vigil);

    // "1.1" offers only http/1.1 to the same server.
    let vigil = Vigil::start(&config(&both.url(), "http_version = \"1.1\"", Some(&ca)));
    wait_for_line(&vigil, "[+]upstream:web ok");
    assert_eq!(diag_protocol(&vigil).0, "HTTP/1.1");
    assert_eq!(both.last_version(), Some(http::Version::HTTP_11));
    drop(vigil);

    // An HTTP/1.1-only server (ALPN http/1.1): auto falls back; "2" fails saying why.
    let old = H2Server::tls(&issued, &[b"http/1.1"]);
    let vigil = Vigil::start(&config(&old.url(), "http_version = \"auto\"", Some(&ca)));
    wait_for_line(&vigil, "[+]upstream:web ok");
    assert_eq!(diag_protocol(&vigil), (Value::from("HTTP/1.1"), "HTTP/1.1".to_owned()));
    assert_eq!(old.last_version(), Some(http::Version::HTTP_11));
    drop(vigil);
    let vigil = Vigil::start(&config(&old.url(), "http_version = \"2\"", Some(&ca)));
    wait_for_line(
        &vigil,
        &format!(
            "[-]upstream:web failed: GET {}: the server does not speak HTTP/2: it refused h2 by ALPN (alert NoApplicationProtocol)",
            old.url()
        ),
    );
    drop(vigil);

    // A TLS server without ALPN at all: "2" has nothing to go on and fails naming that.
    let silent = H2Server::tls(&issued, &[]);
    let vigil = Vigil::start(&config(&silent.url(), "http_version = \"2\"", Some(&ca)));
    wait_for_line(
        &vigil,
        &format!(
            "[-]upstream:web failed: GET {}: the server does not speak HTTP/2: it chose no protocol by ALPN, so not h2",
            silent.url()
        ),
    );
    assert!(
        silent.last_version().is_none(),
        "no request is sent in a protocol the server did not choose"
    );
    let text = vigil.get("/diag").body;
    assert!(
        text.contains("hint: the server (or a proxy in front of it) does not offer HTTP/2"),
        "{text}"
    );
}

#[test]
fn plain_http_stays_http_1_1_under_auto_and_speaks_h2c_with_2() {
    let server = H2Server::plain();
    let vigil = Vigil::start(&config(&server.url(), "", None));
    wait_for_line(&vigil, "[+]upstream:web ok");
    assert_eq!(diag_protocol(&vigil).0, "HTTP/1.1", "h2c is never guessed");
    assert_eq!(server.last_version(), Some(http::Version::HTTP_11));
    drop(vigil);

    let vigil = Vigil::start(&config(&server.url(), "http_version = \"2\"", None));
    wait_for_line(&vigil, "[+]upstream:web ok");
    assert_eq!(diag_protocol(&vigil), (Value::from("HTTP/2"), "HTTP/2".to_owned()));
    assert_eq!(
        server.last_version(),
        Some(http::Version::HTTP_2),
        "h2c with prior knowledge"
    );
    let metrics = vigil.get("/metrics").body;
    assert!(
        metrics.contains("vigil_upstream_status_code{upstream=\"web\"} 200"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_upstream_up{upstream=\"web\"} 1"), "{metrics}");
}

#[test]
fn http_version_belongs_to_http_upstreams_only() {
    let output = support::run_cli(
        &["validate"],
        Some("[[upstream]]\nname = \"c\"\nurl = \"tcp://127.0.0.1:6379\"\nhttp_version = \"2\"\n"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "upstream[0].http_version: applies only to http:// and https:// upstreams, not to tcp://127.0.0.1:6379"
        ),
        "{stderr}"
    );
    let output = support::run_cli(
        &["validate"],
        Some("[[upstream]]\nname = \"w\"\nurl = \"http://127.0.0.1/\"\nhttp_version = \"3\"\n"),
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("upstream[0].http_version"), "{stderr}");
}
