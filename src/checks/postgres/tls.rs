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

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

pub(super) use crate::checks::postgres::url::SslMode;

/// Where the connector leaves the earliest `notAfter` of the chain the server presented on the
/// latest TLS connection (kept or pooled), read before verification decides.
pub(super) type SeenExpiry = Arc<std::sync::Mutex<Option<std::time::SystemTime>>>;

/// The rustls connector for a mode, and where it notes the server's certificate expiry. Built
/// at start (no runtime needed).
pub(super) fn connector(mode: SslMode, root_cert: Option<&Path>) -> Result<(MakeRustlsConnect, SeenExpiry), String> {
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
        _ => Arc::new(EncryptOnly(provider)),
    };
    // One recorder for every connection of the check: the latest handshake's chain is what
    // the server presents now.
    let (recorder, seen) = crate::net::tls::Recorder::new(verifier);
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(recorder))
        .with_no_client_auth();
    Ok((MakeRustlsConnect::new(config), seen))
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
            assert!(connector(mode, None).is_ok(), "{mode:?}");
        }
        assert!(connector(SslMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem"))).is_err());
    }
}
