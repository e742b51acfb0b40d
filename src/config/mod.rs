//! The configuration: built-in defaults < TOML file < `VIGIL_<SECTION>__<KEY>` environment
//! (and the aliases kinds declare, such as `DATABASE_URL` for `postgres.url`), loaded, parsed
//! and validated once at start-up into the types the code uses. Everything after start-up reads
//! [`Config`] and never re-checks or re-parses it.
//!
//! This module is the machinery and the agent's own sections (`listen`, `[defaults]`,
//! `[shutdown]`, `[diag]`, `[fleet]`, `[kubernetes]`'s cluster keys); each check's section is a
//! type of the check's own folder, read through the kind's row of the registry
//! ([`SectionKind`]). Every error names the key it is about (`postgres.saturation_warn: must be
//! between 0 and 1, got 1.5`), and where an environment variable set the key, that variable too.

pub(crate) mod de;
mod error;
mod fleet;
mod kubernetes;
pub(crate) mod limits;
mod loader;
mod reader;
mod section;
mod service;
mod settings;
mod sources;

use std::net::SocketAddr;

pub use self::error::{ConfigError, Invalid};
pub use self::fleet::{Fleet, PEERS_LISTED_MAX, PeerTarget, Peers};
pub use self::kubernetes::{KUBERNETES_ENV, Kubernetes, SERVICE_ACCOUNT_CA, SERVICE_ACCOUNT_TOKEN};
pub use self::loader::load;
pub use self::reader::Reader;
pub use self::section::{CheckSection, EnvAlias, Keys, SectionKind, Shape};
pub use self::service::{DEFAULT_LISTEN, Diag, Shutdown};
pub use self::settings::{CheckSettings, Defaults, Scope};
pub use self::sources::{POD_IP, Sources};

/// The check kinds the loader reads sections for, in the order their checks are listed.
pub type Kinds<'a> = &'a [&'a dyn SectionKind];

/// The effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The one address for probes, metrics and diag. Default `0.0.0.0:9476`; an
    /// `address:port` (`VIGIL_LISTEN` sets it too). A change needs a restart.
    pub listen: SocketAddr,
    /// `[defaults]`: the timing every check section inherits.
    pub defaults: Defaults,
    /// `[shutdown]`: what happens after SIGTERM.
    pub shutdown: Shutdown,
    /// `[diag]`: who may read `/diag` from outside the pod.
    pub diag: Diag,
    /// Every configured check's section, in the order the checks are listed (`/readyz`); a
    /// turned-off one (`[system] enabled = false`) is here but does not run.
    pub checks: Vec<CheckSection>,
    /// `[fleet]`; absent: every replica decides alone (no peer is ever asked).
    pub fleet: Option<Fleet>,
    /// `[kubernetes]`'s cluster keys; absent: vigil never calls the Kubernetes API and there is
    /// no `pod` check.
    pub kubernetes: Option<Kubernetes>,
}

impl Config {
    /// The checks that run, in order.
    pub fn enabled_checks(&self) -> impl Iterator<Item = &CheckSection> {
        self.checks.iter().filter(|c| c.enabled())
    }

    /// The section of the check named `name`.
    pub fn check(&self, name: &str) -> Option<&CheckSection> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The configuration as printed: a JSON object in the file's layout (each check's table,
    /// lists as arrays of tables), every secret `<redacted>`.
    pub fn shown(&self) -> serde_json::Value {
        use serde_json::{Map, Value};
        let mut out = Map::new();
        out.insert("listen".to_owned(), Value::String(self.listen.to_string()));
        let mut own = |key: &str, value: serde_json::Result<Value>| {
            out.insert(key.to_owned(), value.unwrap_or_default());
        };
        own("defaults", serde_json::to_value(self.defaults));
        own("shutdown", serde_json::to_value(self.shutdown));
        own("diag", serde_json::to_value(&self.diag));
        for check in &self.checks {
            let shown = check.shown();
            match (check.shape, out.get_mut(check.table)) {
                (Shape::List, Some(Value::Array(entries))) => entries.push(shown),
                (Shape::List, _) => {
                    out.insert(check.table.to_owned(), Value::Array(vec![shown]));
                }
                _ => {
                    out.insert(check.table.to_owned(), shown);
                }
            }
        }
        if let Some(fleet) = &self.fleet {
            out.insert("fleet".to_owned(), serde_json::to_value(fleet).unwrap_or_default());
        }
        if let Some(kubernetes) = &self.kubernetes {
            let cluster = serde_json::to_value(kubernetes).unwrap_or_default();
            match (out.get_mut("kubernetes"), cluster) {
                (Some(Value::Object(table)), Value::Object(keys)) => table.extend(keys),
                (_, cluster) => {
                    out.insert("kubernetes".to_owned(), cluster);
                }
            }
        }
        Value::Object(out)
    }

    /// The effective configuration as TOML, every secret printed as `<redacted>`. With the
    /// secrets put back, it loads again to the same configuration.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(&self.shown()).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}
