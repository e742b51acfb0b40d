//! What a section's reader is given: deserializing a table with every error naming its exact key
//! (and the environment variable that set it), and refusals named the same way.

use std::collections::HashMap;
use std::fmt;

use serde::de::DeserializeOwned;

use super::error::{ConfigError, Invalid};

/// Reads tables into types, naming keys in every refusal.
#[derive(Default)]
pub struct Reader {
    /// `postgres.saturation_warn` → `VIGIL_POSTGRES__SATURATION_WARN`.
    pub(super) env_origin: HashMap<String, String>,
    /// Keys a table also accepts that its reader did not see (the cluster's keys of
    /// `[kubernetes]`), for the list an unknown key is answered with.
    pub(super) also_expected: HashMap<String, &'static [&'static str]>,
}

impl Reader {
    /// A refusal of `key`, naming the environment variable that set it, if one did.
    pub fn invalid(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        let key = match self.env_origin.get(key) {
            Some(var) => format!("{key} (from {var})"),
            None => key.to_owned(),
        };
        ConfigError::Invalid {
            key,
            message: message.to_string(),
        }
    }

    /// A section's refusal, with the environment variable that set the key if one did.
    pub fn refuse(&self, invalid: Invalid) -> ConfigError {
        self.invalid(&invalid.key, invalid.message)
    }

    /// Deserializes `table` (at `prefix`) into `T`, naming the exact key of any error.
    pub fn deserialize<T: DeserializeOwned>(&self, table: toml::Table, prefix: &str) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let inner = e.path().to_string();
            let message = e.into_inner().message().trim().to_owned();
            // serde's "unknown field `x`, expected one of …": the path already names `x`.
            let message = match message.starts_with("unknown field") {
                true => {
                    let mut expected = expected_part(&message);
                    if let Some(more) = self.also_expected.get(prefix) {
                        expected = format!("{expected}, {}", more.join(", "));
                    }
                    format!("unknown key; {expected}")
                }
                false => message,
            };
            let key = join(prefix, &inner);
            self.invalid(&key, message.trim_end_matches('.'))
        })
    }
}

fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty() || key == ".") {
        (_, true) => prefix.to_owned(),
        (true, false) => key.to_owned(),
        (false, false) if key.starts_with('[') => format!("{prefix}{key}"),
        (false, false) => format!("{prefix}.{key}"),
    }
}

fn expected_part(message: &str) -> String {
    match message.split_once(", ") {
        Some((_, expected)) => expected.replace('`', ""),
        None => "see the README for the keys of this section".to_owned(),
    }
}
