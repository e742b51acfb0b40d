//! Certificate expiry, read from the chain a server presents during the handshake, also when
//! verification then fails: an expired certificate still says when it expired (blackbox_exporter
//! drops the figure the moment verification fails, prometheus/blackbox_exporter#1119).
//!
//! [`Recorder`] wraps the real verifier: it notes the earliest `notAfter` of the presented chain,
//! then lets the real verifier decide. One recorder per connection (the verifier has no other
//! way to tell connections apart); the verifier it wraps is built once.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use x509_cert::der::Decode as _;

use crate::fmt;
use crate::outcome::{FailureKind, Finding};

/// The earliest `notAfter` of `chain`; `None` when no certificate in it parses.
pub fn earliest_not_after<'a>(chain: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> Option<SystemTime> {
    chain
        .into_iter()
        .filter_map(|der| x509_cert::Certificate::from_der(der.as_ref()).ok())
        .map(|cert| cert.tbs_certificate.validity.not_after.to_system_time())
        .min()
}

/// Notes the presented chain's expiry, then asks the real verifier.
#[derive(Debug)]
pub struct Recorder {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Arc<Mutex<Option<SystemTime>>>,
}

impl Recorder {
    /// A recorder for one connection, and where it leaves the expiry it saw.
    pub fn new(inner: Arc<dyn ServerCertVerifier>) -> (Recorder, Arc<Mutex<Option<SystemTime>>>) {
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
        let earliest = earliest_not_after(std::iter::once(end_entity).chain(intermediates));
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

/// One check's certificate expiry: its series of `vigil_tls_cert_expiry_timestamp_seconds` and
/// how close an expiry warns. Every check that speaks TLS judges what it saw through this.
#[derive(Clone)]
pub struct Expiry {
    check: String,
    gauge: prometheus::GaugeVec,
    warn: Duration,
}

impl Expiry {
    pub fn new(check: impl Into<String>, gauge: &prometheus::GaugeVec, warn: Duration) -> Expiry {
        Expiry {
            check: check.into(),
            gauge: gauge.clone(),
            warn,
        }
    }

    /// Exports the earliest `notAfter` seen (when a chain was seen at all) and judges it.
    pub fn judge(&self, not_after: Option<SystemTime>) -> Option<Finding> {
        let not_after = not_after?;
        let unix = not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.gauge.with_label_values(&[self.check.as_str()]).set(unix);
        judge(not_after, SystemTime::now(), self.warn)
    }

    /// Whether `not_after` is within the warning distance or past: the moment to look at the
    /// server's certificate afresh rather than trust a chain seen on an old connection.
    pub fn is_near(&self, not_after: SystemTime) -> bool {
        not_after
            .duration_since(SystemTime::now())
            .map_or(true, |left| left < self.warn)
    }
}

/// The earliest expiry noted by the several requests of one run (the jwt check's validate and
/// JWKS requests run side by side, so they note into a shared one).
#[derive(Debug, Default)]
pub struct Earliest(Mutex<Option<SystemTime>>);

impl Earliest {
    pub fn note(&self, not_after: Option<SystemTime>) {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *seen = match (*seen, not_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// What was noted since the last take.
    pub fn take(&self) -> Option<SystemTime> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

pub const CERT_HINT: &str = "renew the server's certificate (cert-manager: kubectl describe certificate -A; \
                             or the issuer's renewal job) before it expires";

/// What an expiry means for the check: expired fails, within `warn` warns, else nothing.
pub fn judge(not_after: SystemTime, now: SystemTime, warn: Duration) -> Option<Finding> {
    let stamp = fmt::timestamp_seconds(not_after);
    match not_after.duration_since(now) {
        Err(ago) => Some(
            Finding::fail(
                FailureKind::Tls,
                format!(
                    "certificate expired {} ago (notAfter {stamp})",
                    fmt::age(ago.duration())
                ),
            )
            .with_hint(CERT_HINT),
        ),
        Ok(left) if left < warn => Some(
            Finding::warn(
                FailureKind::Tls,
                format!("certificate expires in {} (notAfter {stamp})", fmt::age(left)),
            )
            .with_hint(CERT_HINT),
        ),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_fails_when_past_and_warns_when_near() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86_400);
        let warn = 14 * day;
        let expired = judge(now - 3 * day, now, warn).unwrap();
        assert_eq!(expired.status, crate::outcome::Status::Fail);
        assert!(
            expired
                .reason
                .starts_with("certificate expired 3d ago (notAfter 2027-01-"),
            "{}",
            expired.reason
        );
        let near = judge(now + 2 * day + Duration::from_secs(3600), now, warn).unwrap();
        assert_eq!(near.status, crate::outcome::Status::Warn);
        assert!(
            near.reason.starts_with("certificate expires in 2d (notAfter"),
            "{}",
            near.reason
        );
        assert!(judge(now + 30 * day, now, warn).is_none());
    }
}
