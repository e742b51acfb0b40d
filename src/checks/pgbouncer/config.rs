//! `[pgbouncer]`: the check named `pgbouncer`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::checks::postgres::url::PostgresTarget;
use crate::config::Invalid;
use crate::config::de::duration;
use crate::config::limits::{cert_warn, default_cert_warn};
use crate::core::fmt;
use crate::core::secret::Secret;

/// The most databases `databases` may list (and the most pools' series exported without it).
pub(crate) const MAX_DATABASES: usize = 100;

/// `[pgbouncer]`: the check named `pgbouncer`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pgbouncer {
    /// PgBouncer's admin console, parsed from `url` (or the contents of `url_file`): required,
    /// one of the two. A `postgres://` URL or a libpq `key=value` string naming the console's
    /// database (`pgbouncer`) and a user of `stats_users` (or `admin_users`); `sslmode`,
    /// `sslrootcert`, `sslcert` and `sslkey` as for `postgres.url`. Printed as
    /// `url = "<redacted>"` (it holds the password), or not at all when it came from `url_file`.
    pub target: PostgresTarget,
    /// A file holding the URL (a Secret volume), read at start-up, whitespace trimmed. Default
    /// none; not together with `url`.
    pub url_file: Option<PathBuf>,
    /// The pools judged and exported, by database name (summed over their users). Default:
    /// every pool of a server (the console's own left out). At most 100 names, each 1 to 63
    /// characters.
    pub databases: Vec<String>,
    /// A client waiting longer than this for a server connection (`maxwait`) warns. Default
    /// `1s`; 100ms to 1h, below `wait_fail`.
    pub wait_warn: Duration,
    /// The same wait that fails. Default `5s`; at most 1h.
    pub wait_fail: Duration,
    /// How close the earliest `notAfter` of the chain PgBouncer presents (with TLS) may come
    /// before the check warns (expired fails). Default `14d`; at most 365d.
    pub cert_warn: Duration,
}

/// Prints the keys as written: `url` (redacted) or `url_file`, never both.
impl Serialize for Pgbouncer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            url: Option<&'a PostgresTarget>,
            #[serde(skip_serializing_if = "Option::is_none")]
            url_file: Option<&'a PathBuf>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            databases: &'a Vec<String>,
            #[serde(with = "duration")]
            wait_warn: Duration,
            #[serde(with = "duration")]
            wait_fail: Duration,
            #[serde(with = "duration")]
            cert_warn: Duration,
        }
        Shown {
            url: self.url_file.is_none().then_some(&self.target),
            url_file: self.url_file.as_ref(),
            databases: &self.databases,
            wait_warn: self.wait_warn,
            wait_fail: self.wait_fail,
            cert_warn: self.cert_warn,
        }
        .serialize(serializer)
    }
}

/// `[pgbouncer]` as written (see [`Pgbouncer`]'s fields for each key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PgbouncerKeys {
    #[serde(default)]
    url: Option<Secret<String>>,
    #[serde(default)]
    url_file: Option<PathBuf>,
    #[serde(default)]
    databases: Vec<String>,
    #[serde(default = "default_wait_warn", with = "duration")]
    wait_warn: Duration,
    #[serde(default = "default_wait_fail", with = "duration")]
    wait_fail: Duration,
    #[serde(default = "default_cert_warn", with = "duration")]
    cert_warn: Duration,
}

impl PgbouncerKeys {
    /// Reads `url_file`, parses the URL and validates the section.
    pub(crate) fn resolve(self) -> Result<Pgbouncer, Invalid> {
        let target = PostgresTarget::from_keys(
            "pgbouncer",
            self.url,
            self.url_file.as_deref(),
            "required: set url or url_file (the admin console, database pgbouncer)",
        )?;
        let section = Pgbouncer {
            target,
            url_file: self.url_file,
            databases: self.databases,
            wait_warn: self.wait_warn,
            wait_fail: self.wait_fail,
            cert_warn: self.cert_warn,
        };
        section.validate()?;
        Ok(section)
    }
}

impl Pgbouncer {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        cert_warn("pgbouncer.cert_warn", self.cert_warn)?;
        let (low, high) = (Duration::from_millis(100), Duration::from_secs(3600));
        for (key, value) in [
            ("pgbouncer.wait_warn", self.wait_warn),
            ("pgbouncer.wait_fail", self.wait_fail),
        ] {
            if !(low..=high).contains(&value) {
                return Err(Invalid::new(
                    key,
                    format!("must be between 100ms and 1h, got {}", fmt::duration(value)),
                ));
            }
        }
        if self.wait_warn >= self.wait_fail {
            return Err(Invalid::new(
                "pgbouncer.wait_warn",
                format!(
                    "must be below wait_fail ({}), got {}",
                    fmt::duration(self.wait_fail),
                    fmt::duration(self.wait_warn)
                ),
            ));
        }
        if self.databases.len() > MAX_DATABASES {
            return Err(Invalid::new(
                "pgbouncer.databases",
                format!("at most {MAX_DATABASES} names, got {}", self.databases.len()),
            ));
        }
        for (i, name) in self.databases.iter().enumerate() {
            if name.is_empty() || name.chars().count() > 63 || name.chars().any(char::is_control) {
                return Err(Invalid::new(
                    format!("pgbouncer.databases[{i}]"),
                    "must be a database name of 1 to 63 printable characters",
                ));
            }
            if self.databases[..i].contains(name) {
                return Err(Invalid::new(
                    format!("pgbouncer.databases[{i}]"),
                    format!("{name:?} is listed twice"),
                ));
            }
        }
        Ok(())
    }
}

fn default_wait_warn() -> Duration {
    Duration::from_secs(1)
}

fn default_wait_fail() -> Duration {
    Duration::from_secs(5)
}
