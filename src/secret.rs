//! The only way vigil holds a secret (a database URL with its password, a JWT secret, the diag
//! token): every formatter, serializer and log field sees `<redacted>`.

use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::{Serialize, Serializer};

/// A value that must never be printed, logged, exported or returned.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

const REDACTED: &str = "<redacted>";

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself, for the one place that has to use it (a connection, a signature,
    /// a comparison). Never pass the result to a formatter.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl Secret<String> {
    /// Compares with `candidate` in time that depends only on the lengths, so a remote peer
    /// cannot find the token byte by byte.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        expected.len() == candidate.len()
            && expected.iter().zip(candidate).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
    }
}

/// The most a secret file may hold: a path pointing at something huge or endless must not
/// take the memory.
const FILE_CAP: u64 = 64 * 1024;

/// A secret file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is empty")]
    Empty { path: String },
}

/// Reads a secret from a file (the `*_file` keys, a Kubernetes Secret volume): surrounding
/// whitespace trimmed, at most 64 KiB read, never empty.
pub fn read_file(path: &Path) -> Result<Secret<String>, SecretFileError> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(FILE_CAP).read_to_string(&mut text))
        .map_err(|source| SecretFileError::Io {
            path: path.display().to_string(),
            source,
        })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(SecretFileError::Empty {
            path: path.display().to_string(),
        });
    }
    Ok(Secret::new(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_formatter_prints_redacted() {
        let secret = Secret::new("hunter2-password".to_owned());
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(<redacted>)");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"<redacted>\"");
    }

    #[test]
    fn matches_only_the_exact_value() {
        let secret = Secret::new("token-123".to_owned());
        assert!(secret.matches(b"token-123"));
        assert!(!secret.matches(b"token-124"));
        assert!(!secret.matches(b"token-12"));
        assert!(!secret.matches(b""));
    }
}
