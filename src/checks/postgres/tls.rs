//! `sslmode` (libpq's names) → a rustls connector. The URL is parsed, `sslmode` and
//! `sslrootcert` taken out of it, when the configuration loads ([`crate::config::PostgresTarget`]).
//!
//! tokio-postgres understands only `disable`, `prefer` and `require`, and never verifies a
//! certificate by itself: the connector decides. So vigil takes `sslmode` (and `sslrootcert`)
//! out of the URL, hands tokio-postgres the nearest mode, and builds the rustls configuration
//! that gives libpq's meaning: `prefer`/`require` encrypt without verifying (as libpq does
//! without a root certificate), `verify-ca`/`verify-full` verify the chain and the host name
//! against `sslrootcert` or the Mozilla roots. `verify-ca` is treated as `verify-full`
//! (stricter, never weaker). No OpenSSL: one aws-lc-rs crypto stack for the whole agent.
//!
//! `sslcert` / `sslkey` (libpq's client certificate, for servers that require one:
//! `clientcert=verify-full`, the `cert` method) are read when the check is built, so that a
//! missing or unreadable file refuses the configuration, and read again at a handshake whose
//! files changed since (cert-manager renews them in place), so a renewal needs no restart.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

pub(crate) use crate::checks::postgres::url::ClientCertFiles;
pub(crate) use crate::checks::postgres::url::SslMode;

/// Where the connector leaves the earliest `notAfter` of the chain the server presented on the
/// latest TLS connection (kept or pooled), read before verification decides.
pub(crate) type SeenExpiry = Arc<std::sync::Mutex<Option<std::time::SystemTime>>>;

/// The rustls connector for a mode, and where it notes the server's certificate expiry. Built
/// at start (no runtime needed).
pub(crate) fn connector(
    mode: SslMode,
    root_cert: Option<&Path>,
    client_cert: Option<&ClientCertFiles>,
) -> Result<(MakeRustlsConnect, SeenExpiry), String> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match root_cert {
                Some(path) => {
                    let shown = path.display();
                    let certs =
                        crate::core::files::read_certificates(path).map_err(|e| format!("sslrootcert {shown}: {e}"))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(format!("sslrootcert {shown}: no usable certificate"));
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| format!("TLS setup failed: {e}"))?
        }
        _ => Arc::new(EncryptOnly(Arc::clone(&provider))),
    };
    // One recorder for every connection of the check: the latest handshake's chain is what
    // the server presents now.
    let (recorder, seen) = crate::net::tls::Recorder::new(verifier);
    let builder = builder.dangerous().with_custom_certificate_verifier(Arc::new(recorder));
    let config = match client_cert {
        Some(files) => builder.with_client_cert_resolver(Arc::new(ClientCert::load(files.clone(), provider)?)),
        None => builder.with_no_client_auth(),
    };
    Ok((MakeRustlsConnect::new(config), seen))
}

/// The client certificate and key of `sslcert` / `sslkey`, read again at a handshake when
/// either file's modification time changed. A renewal that cannot be read (half written) keeps
/// the last good pair, logged once per change.
#[derive(Debug)]
struct ClientCert {
    files: ClientCertFiles,
    provider: Arc<CryptoProvider>,
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    /// The files' modification times when last read.
    stamps: (Option<SystemTime>, Option<SystemTime>),
    key: Arc<CertifiedKey>,
}

impl ClientCert {
    fn load(files: ClientCertFiles, provider: Arc<CryptoProvider>) -> Result<ClientCert, String> {
        let stamps = stamps(&files);
        let key = read_pair(&files, &provider)?;
        Ok(ClientCert {
            files,
            provider,
            loaded: Mutex::new(Loaded {
                stamps,
                key: Arc::new(key),
            }),
        })
    }
}

fn stamps(files: &ClientCertFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    (modified(&files.cert), modified(&files.key))
}

/// The chain and key of `files`, the key matching the certificate.
fn read_pair(files: &ClientCertFiles, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let cert_shown = files.cert.display();
    let key_shown = files.key.display();
    let chain = crate::core::files::read_certificates(&files.cert).map_err(|e| format!("sslcert {cert_shown}: {e}"))?;
    let pem = crate::core::files::read(&files.key, crate::core::files::SECRET_CAP)
        .map_err(|e| format!("sslkey {key_shown}: {e}"))?;
    // The key's text is never quoted: only what kind of problem it has.
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| format!("sslkey {key_shown}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| format!("sslkey {key_shown}: a key type rustls cannot sign with"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|_| format!("sslkey {key_shown} is not the key of sslcert {cert_shown}"))?;
    Ok(certified)
}

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let now = stamps(&self.files);
        if now != loaded.stamps {
            loaded.stamps = now;
            match read_pair(&self.files, &self.provider) {
                Ok(key) => {
                    tracing::info!(
                        check = "postgres",
                        "Client certificate (sslcert, sslkey) read again after a change"
                    );
                    loaded.key = Arc::new(key);
                }
                Err(error) => tracing::warn!(
                    check = "postgres",
                    error = %error,
                    "Client certificate changed but cannot be read; presenting the previous one"
                ),
            }
        }
        Some(Arc::clone(&loaded.key))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The earliest `notAfter` of the client certificate chain in `files`, for `/diag`.
pub(super) fn client_cert_not_after(files: &ClientCertFiles) -> Option<SystemTime> {
    let chain = crate::core::files::read_certificates(&files.cert).ok()?;
    crate::net::cert_time::earliest_not_after(&chain)
}

/// libpq's `prefer`/`require`: the channel is encrypted and the server's signature over the
/// handshake is checked, but its certificate is not verified against a root.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_builds_a_connector() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require, SslMode::VerifyFull] {
            assert!(connector(mode, None, None).is_ok(), "{mode:?}");
        }
        assert!(connector(SslMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem")), None).is_err());
        let missing = ClientCertFiles {
            cert: "/nonexistent/client.crt".into(),
            key: "/nonexistent/client.key".into(),
        };
        let error = connector(SslMode::Require, None, Some(&missing)).err().unwrap();
        assert!(error.starts_with("sslcert /nonexistent/client.crt: "), "{error}");
    }

    #[test]
    fn a_client_certificate_needs_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let key = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = ClientCertFiles {
            cert: write("client.crt", cert.pem()),
            key: write("client.key", key.serialize_pem()),
        };
        assert!(connector(SslMode::VerifyFull, None, Some(&files)).is_ok());
        let provider = aws_lc_rs::default_provider();
        assert!(read_pair(&files, &provider).is_ok());
        let wrong = ClientCertFiles {
            key: write("other.key", other.serialize_pem()),
            ..files.clone()
        };
        let error = read_pair(&wrong, &provider).err().unwrap();
        assert!(error.contains("is not the key of sslcert"), "{error}");
        let not_a_key = ClientCertFiles {
            key: write("secret.key", "hunter2-not-a-key".to_owned()),
            ..files
        };
        let error = read_pair(&not_a_key, &provider).err().unwrap();
        assert!(
            error.contains("holds no PEM private key") && !error.contains("hunter2"),
            "{error}"
        );
    }
}
