//! Why a configuration is refused: one line naming the key.

use std::fmt;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration file: {source}")]
    Read {
        path: String,
        source: crate::core::files::FileError,
    },
    #[error("{path}:{line}:{column}: invalid TOML: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

/// A value a section's `validate` refuses: the full key (`upstream[0].window`) and why. The
/// loader adds the environment variable that set the key, if one did, and makes it a
/// [`ConfigError::Invalid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Invalid {
    /// The full key, such as `upstream[0].window`.
    pub key: String,
    /// Why, without the key; never quotes a secret.
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl fmt::Display) -> Invalid {
        Invalid {
            key: key.into(),
            message: message.to_string(),
        }
    }
}
