//! What the loader knows of a check's section without knowing the check: its table, its shape,
//! its defaults, and how to parse it. The rows of the registry (`checks::registry`) implement
//! [`SectionKind`]; the loader reads the file through them, so that a new check kind is learnt
//! from its row and nothing here names one.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use super::error::{ConfigError, Invalid};
use super::reader::Reader;
use super::settings::{CheckSettings, Scope};

/// How a kind's sections appear in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `[postgres]`: absent, the check is not configured.
    One,
    /// `[system]`: absent, the check runs with every default.
    OnByDefault,
    /// `[[upstream]]`: a list, one check per entry.
    List,
}

/// An environment variable that stands for one key of a section (`DATABASE_URL` for
/// `postgres.url`), unless the section sets one of `unless` itself.
#[derive(Debug)]
pub struct EnvAlias {
    pub var: &'static str,
    pub key: &'static str,
    pub unless: &'static [&'static str],
}

/// A check kind, as the loader sees it.
pub trait SectionKind: Sync {
    /// The table: `postgres`, `upstream` (`[[upstream]]`), `kubernetes`.
    fn table(&self) -> &'static str;
    fn shape(&self) -> Shape;
    /// `critical` and `scope` where the section does not set them.
    fn weight(&self) -> (bool, Scope);
    /// An environment variable that sets a key of the section.
    fn env_alias(&self) -> Option<&'static EnvAlias> {
        None
    }
    /// Keys whose values are secrets: set as given from the environment (never read as TOML,
    /// which could refuse a numeric token with a message quoting it).
    fn secret_keys(&self) -> &'static [&'static str] {
        &[]
    }
    /// One section (one entry of a list) at `at` (`postgres`, `upstream[2]`), its common keys
    /// already read into `settings`.
    fn parse(
        &self,
        table: toml::Table,
        at: &str,
        settings: CheckSettings,
        reader: &Reader,
    ) -> Result<CheckSection, ConfigError>;
    /// What must hold across the kind's sections (unique names in a list).
    fn validate_all(&self, _sections: &[&CheckSection]) -> Result<(), Invalid> {
        Ok(())
    }
}

/// One configured check: its name, its timing and weight, and its own keys, whose type is the
/// check's (opaque here; the check's build takes it back).
#[derive(Clone)]
pub struct CheckSection {
    /// The table it was read from, and how its sections appear there.
    pub table: &'static str,
    pub shape: Shape,
    /// The check's name: `postgres`, `upstream:orders`, `pod`.
    pub name: String,
    pub settings: CheckSettings,
    pub keys: Arc<dyn Keys>,
}

impl Debug for CheckSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckSection")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("keys", &self.keys)
            .finish()
    }
}

impl PartialEq for CheckSection {
    fn eq(&self, other: &Self) -> bool {
        self.table == other.table
            && self.name == other.name
            && self.settings == other.settings
            && self.keys.same(other.keys.as_ref())
    }
}

impl CheckSection {
    /// Whether the check runs (`[system] enabled = false` is configured but off).
    pub fn enabled(&self) -> bool {
        self.keys.enabled()
    }

    /// The section as printed: the common keys, then the kind's own.
    pub fn shown(&self) -> serde_json::Value {
        let mut shown = serde_json::to_value(self.settings).unwrap_or_default();
        if let (serde_json::Value::Object(out), serde_json::Value::Object(keys)) = (&mut shown, self.keys.shown()) {
            if !self.keys.enabled() {
                // A turned-off check prints its switch alone, so that the print loads again.
                out.clear();
            }
            out.extend(keys);
        }
        shown
    }

    /// The check's own keys as their type, for its build.
    pub fn keys<T: Keys>(&self) -> Option<&T> {
        self.keys.as_any().downcast_ref::<T>()
    }
}

/// A check's own keys, parsed and validated: the type lives in the check's folder.
pub trait Keys: Debug + Send + Sync + Any {
    /// Whether the check runs.
    fn enabled(&self) -> bool {
        true
    }
    /// As `vigil validate` and `/diag` print them: secrets redacted, loading again to the same.
    fn shown(&self) -> serde_json::Value;
    /// Whether `other` is the same section (a reload keeps the check as it runs).
    fn same(&self, other: &dyn Keys) -> bool;
    fn as_any(&self) -> &dyn Any;
    /// The TCP ports of the server the check connects to (its dependency's), for a section that
    /// defaults to them; none when it names no TCP server.
    fn remote_ports(&self) -> Vec<u16> {
        Vec::new()
    }
}
