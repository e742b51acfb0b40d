//! The limits several sections share, each naming the key it refuses.

use std::path::Path;
use std::time::Duration;

use super::error::Invalid;
use crate::core::secret::Secret;

/// A share that must be above 0 and at most 1.
pub(crate) fn ratio(key: &str, value: f64) -> Result<(), Invalid> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(Invalid::new(key, format!("must be between 0 and 1, got {value}")))
    }
}

pub(crate) fn warn_below_fail(prefix: &str, warn: (&str, f64), fail: (&str, f64)) -> Result<(), Invalid> {
    ratio(&format!("{prefix}.{}", warn.0), warn.1)?;
    ratio(&format!("{prefix}.{}", fail.0), fail.1)?;
    if warn.1 >= fail.1 {
        return Err(Invalid::new(
            format!("{prefix}.{}", warn.0),
            format!("must be below {} ({}), got {}", fail.0, fail.1, warn.1),
        ));
    }
    Ok(())
}

pub(crate) fn metric_name(key: &str, name: &str) -> Result<(), Invalid> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(Invalid::new(key, format!("not a Prometheus metric name: {name:?}")))
    }
}

pub(crate) fn window(key: &str, window: Duration, interval: Duration) -> Result<(), Invalid> {
    if window < interval || window > Duration::from_secs(24 * 3600) {
        return Err(Invalid::new(
            key,
            format!(
                "must be between the interval ({}) and 24h, got {}",
                crate::core::fmt::duration(interval),
                crate::core::fmt::duration(window)
            ),
        ));
    }
    Ok(())
}

/// `cert_warn`: at most a year.
pub(crate) fn cert_warn(key: &str, value: Duration) -> Result<(), Invalid> {
    if value > Duration::from_secs(365 * 86_400) {
        return Err(Invalid::new(
            key,
            format!("must be at most 365d, got {}", crate::core::fmt::duration(value)),
        ));
    }
    Ok(())
}

/// `client_cert_file` and `client_key_file` (mutual TLS): both or none; the error names the
/// missing one.
pub(crate) fn client_cert_pair(
    prefix: &str,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<(), Invalid> {
    match (cert, key) {
        (Some(_), None) => Err(Invalid::new(
            format!("{prefix}.client_key_file"),
            "required with client_cert_file: set both (the certificate and its key, PEM) or neither",
        )),
        (None, Some(_)) => Err(Invalid::new(
            format!("{prefix}.client_cert_file"),
            "required with client_key_file: set both (the certificate and its key, PEM) or neither",
        )),
        _ => Ok(()),
    }
}

/// A Kubernetes object name: a DNS label (`a-z 0-9 -`, alphanumeric at both ends), or with
/// `dots` a DNS subdomain. Names go into URL paths and selectors, so nothing else may pass.
pub(crate) fn dns_name(key: &str, name: &str, max: usize, dots: bool) -> Result<(), Invalid> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty()
        || name.len() > max
        || !name.chars().all(allowed)
        || !ends(name.chars().next())
        || !ends(name.chars().last())
    {
        let what = if dots { "a DNS subdomain" } else { "a DNS label" };
        return Err(Invalid::new(
            key,
            format!(
                "must be {what} (1 to {max} of a-z, 0-9, '-'{}), got {name:?}",
                if dots { ", '.'" } else { "" }
            ),
        ));
    }
    Ok(())
}

pub(crate) fn read_secret_file(key: &str, path: &Path) -> Result<Secret<String>, Invalid> {
    crate::core::secret::read_file(path).map_err(|e| Invalid::new(key, e))
}

pub(crate) fn yes() -> bool {
    true
}
pub(crate) fn default_cert_warn() -> Duration {
    Duration::from_secs(14 * 86_400)
}
pub(crate) fn default_window() -> Duration {
    Duration::from_secs(300)
}
pub(crate) fn default_saturation_warn() -> f64 {
    0.80
}
pub(crate) fn default_saturation_fail() -> f64 {
    0.95
}
pub(crate) fn default_cpu_warn() -> f64 {
    0.80
}
pub(crate) fn default_memory_warn() -> f64 {
    0.90
}
