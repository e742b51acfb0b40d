//! TLS for every connection vigil makes: the trust (the built-in Mozilla roots, plus a CA file's
//! certificates, or a CA file's alone for the Kubernetes API), parsed once per trust and shared by
//! every connection that uses it, and the certificate recorder.
//!
//! Certificate expiry is read from the chain a server presents during the handshake, also when
//! verification then fails: an expired certificate still says when it expired (blackbox_exporter
//! drops the figure the moment verification fails, prometheus/blackbox_exporter#1119).
//! [`Recorder`] wraps the real verifier: it notes the earliest `notAfter` of the presented chain,
//! then lets the real verifier decide. One recorder per connection (the verifier has no other
//! way to tell connections apart); the verifier it wraps is built once. Our own client
//! certificate, when a check has one, is presented the same way, per connection
//! ([`super::client_cert`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use super::attempt::{ClientCertAsked, ProbeError, Progress};
use super::client_cert::{ClientIdentity, Presenter};
use super::connect::connect;

/// The TLS side of the shared client. Cheap to clone (a few `Arc`s).
#[derive(Clone)]
pub struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
    /// The real verifier, built once; each connection wraps it in a [`Recorder`].
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    /// Our client certificate (mutual TLS), presented to a server that asks for one.
    identity: Option<Arc<ClientIdentity>>,
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
        for cert in crate::core::files::read_certificates(path).map_err(|e| ca_error(e.to_string()))? {
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
        for cert in crate::core::files::read_certificates(path).map_err(|e| ca_error(e.to_string()))? {
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
            identity: None,
        })
    }

    /// The same client presenting `identity` to servers that ask for a client certificate.
    pub(crate) fn with_identity(self, identity: Arc<ClientIdentity>) -> HttpClient {
        HttpClient {
            identity: Some(identity),
            ..self
        }
    }

    /// Our client certificate, when this client has one.
    pub(crate) fn identity(&self) -> Option<&Arc<ClientIdentity>> {
        self.identity.as_ref()
    }

    /// The TLS configuration for one connection: the shared one, with a recorder of the
    /// presented chain's expiry in front of the verifier and a presenter of our client
    /// certificate that notes whether the server asked for one, offering `alpn` (none for
    /// `tls://`).
    fn recording(&self, alpn: Alpn) -> (Arc<rustls::ClientConfig>, Seen) {
        let (recorder, not_after) = Recorder::new(Arc::clone(&self.verifier));
        let (presenter, asked) = Presenter::new(self.identity.clone());
        let mut config = (*self.tls).clone();
        config.dangerous().set_certificate_verifier(Arc::new(recorder));
        config.client_auth_cert_resolver = Arc::new(presenter);
        config.alpn_protocols = alpn.protocols().iter().map(|p| p.to_vec()).collect();
        (Arc::new(config), Seen { not_after, asked })
    }
}

/// What one handshake noted: the presented chain's expiry, whether the server asked for a
/// client certificate.
struct Seen {
    not_after: Arc<Mutex<Option<SystemTime>>>,
    asked: Arc<AtomicBool>,
}

/// What a TLS connection offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// Nothing: a `tls://` upstream speaks no HTTP.
    None,
    Http1,
    Http2,
    /// `h2` and `http/1.1`, the server chooses.
    Either,
}

impl Alpn {
    pub(crate) fn protocols(self) -> &'static [&'static [u8]] {
        match self {
            Alpn::None => &[],
            Alpn::Http1 => &[b"http/1.1"],
            Alpn::Http2 => &[b"h2"],
            Alpn::Either => &[b"h2", b"http/1.1"],
        }
    }
}

fn webpki_roots_store() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

impl HttpClient {
    /// A TLS handshake over `tcp` for `host`, the presented chain's expiry noted in `progress`
    /// whether or not it verifies.
    pub(crate) async fn handshake(
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
        progress.cert_not_after = *seen.not_after.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.asked.load(Ordering::Acquire) {
            progress.client_cert = ClientCertAsked::Asked {
                presented: self.identity.is_some(),
            };
        }
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
}

/// A TLS stream to a server.
pub(crate) type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Whether the server chose h2 by ALPN.
pub(crate) fn chose_h2(tls: &TlsStream) -> bool {
    tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice())
}

/// The refusal of a server that did not choose h2 where it had to.
pub(crate) fn not_http2(tls: &TlsStream) -> ProbeError {
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

/// Notes the presented chain's expiry, then asks the real verifier.
#[derive(Debug)]
pub(crate) struct Recorder {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Arc<Mutex<Option<SystemTime>>>,
}

impl Recorder {
    /// A recorder for one connection, and where it leaves the expiry it saw.
    pub(crate) fn new(inner: Arc<dyn ServerCertVerifier>) -> (Recorder, Arc<Mutex<Option<SystemTime>>>) {
        let seen = Arc::new(Mutex::new(None));
        let recorder = Recorder {
            inner,
            seen: Arc::clone(&seen),
        };
        (recorder, seen)
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let earliest = super::cert_time::earliest_not_after(std::iter::once(end_entity).chain(intermediates));
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = earliest;
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
