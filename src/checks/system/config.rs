//! `[system]`: the check named `system`, on unless turned off.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Invalid;
use crate::config::limits::{default_cpu_warn, default_memory_warn, ratio, yes};

/// `[system]`: the check named `system`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct System {
    /// `false` turns the check off. Default true (it runs without a `[system]` section).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Share of the container's CPU limit (of the host's cores without one) that warns.
    /// Default 0.80; above 0, at most 1.
    #[serde(default = "default_cpu_warn")]
    pub cpu_warn: f64,
    /// Share of the container's memory limit that warns. Default 0.90; above 0, at most 1.
    #[serde(default = "default_memory_warn")]
    pub memory_warn: f64,
    /// Where the cgroup filesystem is mounted. Default `/sys/fs/cgroup`.
    #[serde(default = "default_cgroup_root")]
    pub cgroup_root: PathBuf,
}

impl System {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        ratio("system.cpu_warn", self.cpu_warn)?;
        ratio("system.memory_warn", self.memory_warn)
    }
}

fn default_cgroup_root() -> PathBuf {
    PathBuf::from("/sys/fs/cgroup")
}
