//! The only way vigil holds a secret (a database URL with its password, a JWT secret, the diag
//! token): every formatter, serializer and log field sees `<redacted>`.

use std::fmt;
use std::path::Path;

use serde::{Serialize, Serializer};

use crate::core::files::{self, FileError};
use subtle::ConstantTimeEq as _;

/// A value that must never be printed, logged, exported or returned.
///
/// Its `==` is constant-time (a derived one would stop at the first differing byte), so that
/// configurations holding secrets can be compared (a reload tells changed sections apart) and
/// a token compared with [`Secret::matches`] leaks nothing but its length.
#[derive(Clone)]
pub struct Secret<T>(T);

impl<T: AsRef<[u8]>> PartialEq for Secret<T> {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.as_ref().ct_eq(other.0.as_ref()))
    }
}

impl<T: AsRef<[u8]>> Eq for Secret<T> {}

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
        bool::from(self.0.as_bytes().ct_eq(candidate))
    }
}

/// A secret file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {path}: {source}")]
    File { path: String, source: FileError },
    #[error("{path} is empty")]
    Empty { path: String },
}

/// The bytes of a secret file, as stored, through the one file reader (regular files of at most
/// 64 KiB).
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, FileError> {
    files::read(path, files::SECRET_CAP)
}

/// Reads a secret from a file (the `*_file` keys, a Kubernetes Secret volume): UTF-8, surrounding
/// whitespace trimmed, never empty.
pub fn read_file(path: &Path) -> Result<Secret<String>, SecretFileError> {
    let text = files::read_text(path, files::SECRET_CAP).map_err(|source| SecretFileError::File {
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
    fn secret_files_must_be_regular_small_and_not_empty() {
        let (dir, path) = files::temp_file("token", " token-value\n");
        assert_eq!(read_file(&path).unwrap().expose(), "token-value");
        std::fs::write(&path, vec![b'a'; 64 * 1024 + 1]).unwrap();
        assert!(
            read_file(&path)
                .unwrap_err()
                .to_string()
                .contains("larger than 65536 bytes")
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(read_file(&path).unwrap_err().to_string().ends_with("is empty"));
        let error = read_file(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
    }

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
