//! The agent's own sections: `listen`, `[shutdown]`, `[diag]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de::duration;
use super::error::Invalid;
use super::limits::read_secret_file;
use crate::core::secret::Secret;

/// The port vigil listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9476";

/// `[shutdown]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    /// After SIGTERM/SIGINT, `/readyz` answers 503 while everything else still serves this
    /// long. Default `5s`; at most 10m.
    #[serde(with = "duration")]
    pub drain: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            drain: Duration::from_secs(5),
        }
    }
}

impl Shutdown {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.drain > Duration::from_secs(600) {
            return Err(Invalid::new(
                "shutdown.drain",
                format!("must be at most 10m, got {}", crate::core::fmt::duration(self.drain)),
            ));
        }
        Ok(())
    }
}

/// `[diag]`: who may read `/diag` and the reasons in `/readyz` from outside the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Diag {
    /// The bearer token that lets non-loopback peers read `/diag` and the `/readyz` reasons.
    /// Default none (loopback only); not empty; not together with `token_file`. Printed
    /// `<redacted>`; after loading it holds the contents of `token_file` when that is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret<String>>,
    /// A file holding `token` (surrounding whitespace trimmed, at most 64 KiB, not empty): read
    /// at start-up, then again every 5 s so that a rotated Secret takes effect. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl Diag {
    /// Checks the keys and reads `token_file` into `token`.
    pub fn resolve(&mut self) -> Result<(), Invalid> {
        if self.token.is_some() && self.token_file.is_some() {
            return Err(Invalid::new("diag.token", "set either token or token_file, not both"));
        }
        if let Some(path) = &self.token_file {
            self.token = Some(read_secret_file("diag.token_file", path)?);
        }
        if self.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            return Err(Invalid::new("diag.token", "must not be empty"));
        }
        Ok(())
    }
}
