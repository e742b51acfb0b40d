//! What a certificate's expiry means for a check: the one rule for every check that speaks TLS
//! (upstream, gateway, jwt, postgres). The expiry itself is read during the handshake by the
//! network layer's recorder (`net::tls::Recorder`), also when verification fails.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::core::fmt;
use crate::core::outcome::{FailureKind, Finding};

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
