//! A small HTTPS server on 127.0.0.1 with a certificate from a throw-away CA generated per test
//! (rcgen), served with tokio-rustls. Answers every request `200 ok` and closes. [`TlsListener`] is
//! the server under it, for servers that answer otherwise or ask for client certificates.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTPS server whose certificate (for 127.0.0.1 and localhost) is signed by [`TlsServer::ca_pem`].
pub struct TlsServer {
    listener: TlsListener,
    ca_pem: String,
}

impl TlsServer {
    pub fn start() -> TlsServer {
        TlsServer::start_valid_for(None)
    }

    /// The same, with the leaf certificate's `notAfter` `seconds` from now (negative: already
    /// expired); `None` keeps rcgen's default (far in the future).
    pub fn start_valid_for(seconds: Option<i64>) -> TlsServer {
        TlsServer::serving(seconds, "ok")
    }

    /// [`TlsServer::start_valid_for`], answering every request `200` with `body`.
    pub fn serving(seconds: Option<i64>, body: &str) -> TlsServer {
        TlsServer::with(Issued::valid_for(seconds), body)
    }

    /// A server whose leaf certificate is valid from `not_before` to `not_after` (any year
    /// rcgen writes: 1950 on).
    pub fn valid_between(not_before: time::OffsetDateTime, not_after: time::OffsetDateTime) -> TlsServer {
        TlsServer::with(Issued::between(not_before, not_after), "ok")
    }

    fn with(issued: Issued, body: &str) -> TlsServer {
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        TlsServer {
            listener: TlsListener::start(issued.server_config(&[]), move |_, _| answer.clone()),
            ca_pem: issued.ca_pem,
        }
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        self.listener.url(path)
    }

    /// The PEM of the CA that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// What a [`TlsListener`] answers a request: given the connection (for the client's certificate)
/// and the request head, the bytes to write back before closing.
pub type Answer = dyn Fn(&rustls::ServerConnection, &str) -> Vec<u8> + Send + Sync;

/// A TLS server on 127.0.0.1 on a thread of its own, with `config` (its certificate, ALPN, and
/// whether it asks for client certificates): on each connection it reads the request head,
/// writes what `answer` makes of it and closes. Stopped on drop.
pub struct TlsListener {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsListener {
    pub fn start(
        config: rustls::ServerConfig,
        answer: impl Fn(&rustls::ServerConnection, &str) -> Vec<u8> + Send + Sync + 'static,
    ) -> TlsListener {
        let answer: Arc<Answer> = Arc::new(answer);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("tls: bind");
        listener.set_nonblocking(true).expect("tls: nonblocking");
        let addr = listener.local_addr().expect("tls: local_addr");
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tls: runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tls: listener");
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stop_rx => return,
                        accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    };
                    let acceptor = acceptor.clone();
                    let answer = Arc::clone(&answer);
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let reply = answer(tls.get_ref().1, &String::from_utf8_lossy(&head));
                        let _ = tls.write_all(&reply).await;
                        let _ = tls.shutdown().await;
                    });
                }
            });
        });
        TlsListener {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A throw-away CA and a leaf certificate it signed for 127.0.0.1 and localhost, as PEM (for
/// servers in other languages) and DER (for rustls).
pub struct Issued {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: rustls::pki_types::CertificateDer<'static>,
    pub key_der: PrivateKeyDer<'static>,
}

impl Issued {
    pub fn new() -> Issued {
        Issued::valid_for(None)
    }

    /// The same, the leaf valid from `not_before` to `not_after`.
    pub fn between(not_before: time::OffsetDateTime, not_after: time::OffsetDateTime) -> Issued {
        Issued::with_validity(Some((not_before, not_after)))
    }

    /// The same, the leaf's `notAfter` `seconds` from now (`None`: rcgen's default, far off).
    pub fn valid_for(seconds: Option<i64>) -> Issued {
        Issued::with_validity(seconds.map(|seconds| {
            let now = time::OffsetDateTime::now_utc();
            (now - time::Duration::days(30), now + time::Duration::seconds(seconds))
        }))
    }

    fn with_validity(validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>) -> Issued {
        let ca_key = KeyPair::generate().expect("tls: CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("tls: CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("tls: CA cert");
        let leaf_key = KeyPair::generate().expect("tls: leaf key");
        let mut leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("tls: leaf params");
        if let Some((not_before, not_after)) = validity {
            leaf_params.not_before = not_before;
            leaf_params.not_after = not_after;
        }
        let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("tls: leaf cert");
        Issued {
            ca_pem: ca.pem(),
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
            cert_der: leaf.der().clone(),
            key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        }
    }

    /// A rustls server configuration with this certificate, offering `alpn` (empty: no ALPN).
    pub fn server_config(&self, alpn: &[&[u8]]) -> rustls::ServerConfig {
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("tls: versions")
                .with_no_client_auth()
                .with_single_cert(vec![self.cert_der.clone()], self.key_der.clone_key())
                .expect("tls: server config");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}
