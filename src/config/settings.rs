//! The keys every check section accepts and what they inherit from `[defaults]`: when a check
//! runs, how long a run may take, how many runs turn its status, whether it counts for
//! readiness, and whether its dependency is the fleet's or this replica's.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de::{duration, opt_duration};
use super::error::Invalid;

/// `[defaults]`: what every check section inherits unless it says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Time between the starts of two runs of a check. Default `5s`; 100ms to 1h.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A run that takes longer fails with "timed out after …". Default `2s`; at least 10ms and
    /// at most the interval.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Consecutive failed runs before a check reports fail. Default 2; 1 to 100.
    pub failure_threshold: u32,
    /// Consecutive passing runs before a failed check recovers. Default 1; 1 to 100.
    pub success_threshold: u32,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            failure_threshold: 2,
            success_threshold: 1,
        }
    }
}

impl Defaults {
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_timing(
            "defaults",
            self.interval,
            self.timeout,
            self.failure_threshold,
            self.success_threshold,
        )
    }
}

/// The timing and weight of one check, after inheritance from `[defaults]`: the keys every
/// check section accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckSettings {
    /// As `defaults.interval` (its default): 100ms to 1h.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// As `defaults.timeout` (its default): at least 10ms, at most this check's interval.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// As `defaults.failure_threshold` (its default): 1 to 100.
    pub failure_threshold: u32,
    /// As `defaults.success_threshold` (its default): 1 to 100.
    pub success_threshold: u32,
    /// Whether a fail of this check fails `/readyz`. Default true for `postgres`, `gateway`
    /// and `jwt`, false for `system`, `upstream` and `pod` (`[kubernetes]`).
    pub critical: bool,
    /// Whether the dependency is the same for every replica (`shared`: with `[fleet]`, a
    /// fleet-wide failure of a critical shared check does not take this replica out of the
    /// Service) or this replica's own (`local`: never held). Default `shared` for `postgres`,
    /// `jwt` and `upstream`, `local` for `gateway`, `system` and `pod`.
    pub scope: Scope,
}

/// A check's `scope`: see [`CheckSettings::scope`] and `[fleet]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The same dependency for every replica (a database, a JWT secret, an upstream).
    Shared,
    /// This replica's own (its gateway container, its CPU and memory).
    #[default]
    Local,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Shared => "shared",
            Scope::Local => "local",
        }
    }
}

impl CheckSettings {
    /// The timing limits of the section at `prefix` (`postgres`, `upstream[2]`).
    pub fn validate(&self, prefix: &str) -> Result<(), Invalid> {
        validate_timing(
            prefix,
            self.interval,
            self.timeout,
            self.failure_threshold,
            self.success_threshold,
        )
    }
}

impl Default for CheckSettings {
    fn default() -> Self {
        let d = Defaults::default();
        CheckSettings {
            interval: d.interval,
            timeout: d.timeout,
            failure_threshold: d.failure_threshold,
            success_threshold: d.success_threshold,
            critical: false,
            scope: Scope::Local,
        }
    }
}

fn validate_timing(
    prefix: &str,
    interval: Duration,
    timeout: Duration,
    failure_threshold: u32,
    success_threshold: u32,
) -> Result<(), Invalid> {
    let key = |name: &str| format!("{prefix}.{name}");
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&interval) {
        return Err(Invalid::new(
            key("interval"),
            format!(
                "must be between 100ms and 1h, got {}",
                crate::core::fmt::duration(interval)
            ),
        ));
    }
    if timeout < Duration::from_millis(10) {
        return Err(Invalid::new(
            key("timeout"),
            format!("must be at least 10ms, got {}", crate::core::fmt::duration(timeout)),
        ));
    }
    if timeout > interval {
        return Err(Invalid::new(
            key("timeout"),
            format!(
                "must not exceed the interval ({}), got {}",
                crate::core::fmt::duration(interval),
                crate::core::fmt::duration(timeout)
            ),
        ));
    }
    for (name, value) in [
        ("failure_threshold", failure_threshold),
        ("success_threshold", success_threshold),
    ] {
        if !(1..=100).contains(&value) {
            return Err(Invalid::new(
                key(name),
                format!("must be between 1 and 100, got {value}"),
            ));
        }
    }
    Ok(())
}

/// The per-check keys every section accepts; absent ones come from `[defaults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommonKeys {
    /// [`CheckSettings::interval`].
    #[serde(default, with = "opt_duration")]
    pub(crate) interval: Option<Duration>,
    /// [`CheckSettings::timeout`].
    #[serde(default, with = "opt_duration")]
    pub(crate) timeout: Option<Duration>,
    /// [`CheckSettings::failure_threshold`].
    pub(crate) failure_threshold: Option<u32>,
    /// [`CheckSettings::success_threshold`].
    pub(crate) success_threshold: Option<u32>,
    /// [`CheckSettings::critical`].
    pub(crate) critical: Option<bool>,
    /// [`CheckSettings::scope`].
    pub(crate) scope: Option<Scope>,
}

pub(crate) const COMMON_KEYS: [&str; 6] = [
    "interval",
    "timeout",
    "failure_threshold",
    "success_threshold",
    "critical",
    "scope",
];
