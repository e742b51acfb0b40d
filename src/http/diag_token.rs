//! The diag token that lets peers other than loopback read reasons and `/diag`.
//!
//! From `diag.token_file` it is read again every [`RELOAD_EVERY`], so that a rotated Kubernetes
//! Secret takes effect without a restart: the token is "the content of the file", not the
//! content it had when vigil started.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use crate::core::secret::{self, Secret, SecretFileError};

/// How often the token file is read again. The kubelet itself takes up to a minute or so to
/// update a Secret volume; a few microseconds every 5 s is nothing beside that.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// The token, and where it comes from.
#[derive(Debug, Default)]
pub struct DiagToken {
    file: Option<PathBuf>,
    current: RwLock<Option<Secret<String>>>,
}

impl DiagToken {
    /// `token` as configured (already read from `file` when that is set).
    pub fn new(token: Option<Secret<String>>, file: Option<PathBuf>) -> DiagToken {
        DiagToken {
            file,
            current: RwLock::new(token),
        }
    }

    /// Whether `candidate` is the token now; never, without one.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|token| token.matches(candidate))
    }

    /// Whether a token is configured (then `/drain` asks for it even from loopback).
    pub fn is_set(&self) -> bool {
        self.current.read().unwrap_or_else(PoisonError::into_inner).is_some()
    }

    /// The file to read again, if the token comes from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Reads the file again: `Ok(true)` when the token changed. On an error the token in use
    /// stays: a Secret volume swaps its files at once, so a missing or empty file is a mistake to
    /// report, not a reason to lock everyone out or let everyone in.
    pub fn reload(&self) -> Result<bool, SecretFileError> {
        let Some(path) = &self.file else { return Ok(false) };
        let fresh = secret::read_file(path)?;
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|token| token.matches(fresh.expose().as_bytes()))
        {
            return Ok(false);
        }
        *current = Some(fresh);
        Ok(true)
    }
}

/// Reads the token file again every [`RELOAD_EVERY`] for as long as the task runs. Logs a change
/// once, and an error once until it changes.
pub async fn keep_reloading(token: std::sync::Arc<DiagToken>) {
    let mut last_error: Option<String> = None;
    let mut ticks = tokio::time::interval(RELOAD_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let token = std::sync::Arc::clone(&token);
        let result = tokio::task::spawn_blocking(move || token.reload()).await;
        match result {
            Ok(Ok(changed)) => {
                if changed {
                    tracing::info!("Diag token reloaded: the token file changed");
                }
                last_error = None;
            }
            Ok(Err(error)) => {
                let error = error.to_string();
                if last_error.as_deref() != Some(error.as_str()) {
                    tracing::warn!(%error, "Cannot reload the diag token; the previous one stays in use");
                    last_error = Some(error);
                }
            }
            Err(join) => tracing::error!(error = %join, "Reloading the diag token failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_replaces_the_token_and_a_broken_one_keeps_it() {
        let (_dir, path) = crate::core::files::temp_file("token", "first-token\n");
        let token = DiagToken::new(Some(secret::read_file(&path).unwrap()), Some(path.clone()));
        assert!(token.matches(b"first-token"));
        assert!(!token.reload().unwrap(), "unchanged");

        std::fs::write(&path, "second-token\n").unwrap();
        assert!(token.reload().unwrap());
        assert!(token.matches(b"second-token") && !token.matches(b"first-token"));

        std::fs::write(&path, "  \n").unwrap();
        assert!(token.reload().unwrap_err().to_string().ends_with("is empty"));
        std::fs::remove_file(&path).unwrap();
        assert!(token.reload().unwrap_err().to_string().contains("cannot read"));
        assert!(token.matches(b"second-token"), "the last good token stays");
    }

    #[test]
    fn without_a_token_nothing_matches() {
        let token = DiagToken::default();
        assert!(!token.matches(b""));
        assert!(!token.reload().unwrap());
    }
}
