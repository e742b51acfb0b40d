//! What a certificate's expiry means for a check: the one rule for every check that speaks TLS
//! (upstream, gateway, jwt, postgres), for the server's certificate and for our own client
//! certificate ([`ClientCertificate`]). The expiry itself is read during the handshake by the
//! network layer's recorder (`net::tls::Recorder`), also when verification fails.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::core::fmt;
use crate::core::outcome::{FailureKind, Finding};
use crate::net::client_cert::ClientIdentity;
use crate::net::tls::HttpClient;

/// One check's certificate expiry: its series of `vigil_tls_cert_expiry_timestamp_seconds` and
/// how close an expiry warns. Every check that speaks TLS judges what it saw through this.
#[derive(Clone)]
pub(crate) struct Expiry {
    check: String,
    gauge: prometheus::GaugeVec,
    warn: Duration,
}

impl Expiry {
    pub(crate) fn new(check: impl Into<String>, gauge: &prometheus::GaugeVec, warn: Duration) -> Expiry {
        Expiry {
            check: check.into(),
            gauge: gauge.clone(),
            warn,
        }
    }

    /// Exports the earliest `notAfter` seen (when a chain was seen at all) and judges it.
    pub(crate) fn judge(&self, not_after: Option<SystemTime>) -> Option<Finding> {
        let not_after = not_after?;
        // Negative before 1970: a certificate that expired in 1960 reads as such.
        let unix = match not_after.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => after.as_secs_f64(),
            Err(before) => -before.duration().as_secs_f64(),
        };
        self.gauge.with_label_values(&[self.check.as_str()]).set(unix);
        judge(not_after, SystemTime::now(), self.warn)
    }

    /// Whether `not_after` is within the warning distance or past: the moment to look at the
    /// server's certificate afresh rather than trust a chain seen on an old connection.
    pub(crate) fn is_near(&self, not_after: SystemTime) -> bool {
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

/// Our own client certificate (mutual TLS) for one check: reads its files again each run, exports
/// its expiry as `vigil_tls_client_cert_expiry_timestamp_seconds{check}` and judges it against
/// the check's `cert_warn`, as a server's is judged.
pub(crate) struct ClientCertificate {
    identity: Arc<ClientIdentity>,
    check: String,
    gauge: prometheus::GaugeVec,
    warn: Duration,
}

impl ClientCertificate {
    /// For `client`'s identity; `None` when it presents no client certificate.
    pub(crate) fn of(
        client: &HttpClient,
        check: impl Into<String>,
        gauge: &prometheus::GaugeVec,
        warn: Duration,
    ) -> Option<ClientCertificate> {
        Some(ClientCertificate {
            identity: Arc::clone(client.identity()?),
            check: check.into(),
            gauge: gauge.clone(),
            warn,
        })
    }

    /// Reads the files again (a renewal is presented from this run on), exports the expiry of
    /// the certificate presented now and judges it. Files that no longer load warn, naming
    /// them: the previous certificate stays in use.
    pub(crate) async fn refresh(&self) -> Vec<Finding> {
        let mut findings = Vec::new();
        if let Err(error) = self.identity.refresh().await {
            findings.push(
                Finding::warn(
                    FailureKind::Tls,
                    format!("our client certificate was not reloaded: {error}; the previous one stays in use"),
                )
                .with_hint(CLIENT_CERT_HINT),
            );
        }
        if let Some(not_after) = self.identity.not_after() {
            let unix = not_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.gauge.with_label_values(&[self.check.as_str()]).set(unix);
            let judged = judge(not_after, SystemTime::now(), self.warn).map(|finding| Finding {
                reason: format!("our client {}", finding.reason),
                hint: Some(CLIENT_CERT_HINT.to_owned()),
                ..finding
            });
            findings.extend(judged);
        }
        findings
    }

    /// `client_cert_file`, as `/diag` names it.
    pub(crate) fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.identity.cert_file().display().to_string(),
            "not_after": self.identity.not_after().map(fmt::timestamp_seconds),
        })
    }
}

pub(crate) const CLIENT_CERT_HINT: &str = "renew vigil's client certificate (cert-manager: kubectl describe certificate -n \
                                           api-gateway); vigil reads client_cert_file and client_key_file again when they \
                                           change, no restart needed";

pub(crate) const CERT_HINT: &str = "renew the server's certificate (cert-manager: kubectl describe certificate -A; \
                             or the issuer's renewal job) before it expires";

/// What an expiry means for the check: expired fails, within `warn` warns, else nothing.
pub(crate) fn judge(not_after: SystemTime, now: SystemTime, warn: Duration) -> Option<Finding> {
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
        assert_eq!(expired.status, crate::core::outcome::Status::Fail);
        assert!(
            expired
                .reason
                .starts_with("certificate expired 3d ago (notAfter 2027-01-"),
            "{}",
            expired.reason
        );
        let near = judge(now + 2 * day + Duration::from_secs(3600), now, warn).unwrap();
        assert_eq!(near.status, crate::core::outcome::Status::Warn);
        assert!(
            near.reason.starts_with("certificate expires in 2d (notAfter"),
            "{}",
            near.reason
        );
        assert!(judge(now + 30 * day, now, warn).is_none());
    }
}
