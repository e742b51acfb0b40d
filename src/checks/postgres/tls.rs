//! `sslmode` (libpq's names) → a rustls connector, and the URL without the options that
//! tokio-postgres does not know.
//!
//! tokio-postgres understands only `disable`, `prefer` and `require`, and never verifies a
//! certificate by itself: the connector decides. So vigil takes `sslmode` (and `sslrootcert`)
//! out of the URL, hands tokio-postgres the nearest mode, and builds the rustls configuration
//! that gives libpq's meaning: `prefer`/`require` encrypt without verifying (as libpq does
//! without a root certificate), `verify-ca`/`verify-full` verify the chain and the host name
//! against `sslrootcert` or the Mozilla roots. `verify-ca` is treated as `verify-full`
//! (stricter, never weaker). No OpenSSL: one aws-lc-rs crypto stack for the whole agent.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`, as the operator wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// libpq's default: TLS when the server offers it, plain otherwise.
    Prefer,
    Require,
    VerifyFull,
}

impl SslMode {
    pub fn parse(value: &str) -> Result<SslMode, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            // libpq's `allow` (plain first, TLS if required) is closest to prefer for a prober.
            "allow" | "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" | "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(format!(
                "sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got {other:?}"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The mode tokio-postgres negotiates with.
    pub fn for_driver(self) -> PgSslMode {
        match self {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => PgSslMode::Require,
        }
    }
}

/// A URL split into what tokio-postgres parses and the TLS options vigil handles itself.
#[derive(Debug, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: SslMode,
    pub root_cert: Option<String>,
    /// The URL (or key=value string) without `sslmode` and `sslrootcert`.
    pub rest: String,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query or a key=value string.
pub fn split_tls_options(url: &str) -> Result<TlsOptions, String> {
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => {
                mode = SslMode::parse(value)?;
                Ok(true)
            }
            "sslrootcert" => {
                root_cert = Some(value.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(key, value)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, value)? {
                kept.push(pair);
            }
        }
        kept.join(" ")
    };
    Ok(TlsOptions { mode, root_cert, rest })
}

/// The rustls connector for a mode. Built at start (no runtime needed).
pub fn connector(mode: SslMode, root_cert: Option<&str>) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let config = match mode {
        SslMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            match root_cert {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .map_err(|e| format!("sslrootcert {path}: {e}"))?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("sslrootcert {path}: {e}"))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(format!("sslrootcert {path}: no usable certificate"));
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
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
    fn sslmode_is_taken_out_of_the_url() {
        let o = split_tls_options("postgres://u:p@h:5432/db?sslmode=verify-full&connect_timeout=3").unwrap();
        assert_eq!(o.mode, SslMode::VerifyFull);
        assert_eq!(o.rest, "postgres://u:p@h:5432/db?connect_timeout=3");
        let o = split_tls_options("postgresql://h/db?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!((o.mode, o.root_cert.as_deref()), (SslMode::Require, Some("/ca.pem")));
        assert_eq!(o.rest, "postgresql://h/db");
        let o = split_tls_options("postgres://h/db").unwrap();
        assert_eq!(o.mode, SslMode::Prefer, "libpq's default");
        let o = split_tls_options("host=h user=u sslmode=disable dbname=d").unwrap();
        assert_eq!((o.mode, o.rest.as_str()), (SslMode::Disable, "host=h user=u dbname=d"));
        assert_eq!(SslMode::parse("verify-ca").unwrap(), SslMode::VerifyFull);
        assert!(
            split_tls_options("postgres://h/db?sslmode=bogus")
                .unwrap_err()
                .contains("bogus")
        );
    }

    #[test]
    fn every_mode_builds_a_connector() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require, SslMode::VerifyFull] {
            assert!(connector(mode, None).is_ok(), "{mode:?}");
        }
        assert!(connector(SslMode::VerifyFull, Some("/nonexistent/ca.pem")).is_err());
    }
}
