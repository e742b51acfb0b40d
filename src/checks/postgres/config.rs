//! `[postgres]`: the check named `postgres`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use super::url::PostgresTarget;
use crate::config::Invalid;
use crate::config::de::duration;
use crate::config::limits::{
    cert_warn, default_cert_warn, default_saturation_fail, default_saturation_warn, warn_below_fail,
};
use crate::core::secret::Secret;

/// `[postgres]`: the check named `postgres`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Postgres {
    /// The server to watch, parsed from `url` (or the contents of `url_file`, or
    /// `DATABASE_URL`): required, one of the three. A `postgres://` or `postgresql://` URL or a
    /// libpq `key=value` string; `sslmode` (`disable`, `allow`, `prefer` (default), `require`,
    /// `verify-ca`, `verify-full`) and `sslrootcert` are taken out and handled by vigil.
    /// Printed as `url = "<redacted>"` (it holds the password), or not at all when it came
    /// from `url_file`.
    pub target: PostgresTarget,
    /// A file holding the URL (a Secret volume), read at start-up, whitespace trimmed. Default
    /// none; not together with `url`.
    pub url_file: Option<PathBuf>,
    /// Server connections in use / usable `max_connections` at which the check warns.
    /// Default 0.80; above 0, at most 1, below `saturation_fail`.
    pub saturation_warn: f64,
    /// The same share at which the check fails. Default 0.95; above 0, at most 1.
    pub saturation_fail: f64,
    /// Queries running longer than this are counted and shown. Default `30s`; at least 1s.
    pub long_query: Duration,
    /// Connections in the agent's own pool (one more is kept open beside it). Default 2;
    /// 1 to 16.
    pub pool_size: u32,
    /// How close the earliest `notAfter` of the certificate chain the server presented (any
    /// `sslmode` but `disable`, when the server speaks TLS) may come before the check warns
    /// (expired fails). Default `14d`; at most 365d.
    pub cert_warn: Duration,
    /// A query waiting on a lock longer than this is "blocked": counted, and the root of its
    /// chain named (warn). Default `5s`; 100ms to 1h.
    pub lock_wait: Duration,
    /// A session idle inside a transaction longer than this warns, named. Default `1m`; 1s to 24h.
    pub idle_in_transaction_warn: Duration,
    /// `true`: a server in recovery (a standby) fails the check (the gateway's writes would
    /// fail). Default `false`: a standby passes, shown.
    pub require_primary: bool,
}

/// Prints the keys as written: `url` (redacted) or `url_file`, never both, so that the
/// printed configuration loads again.
impl Serialize for Postgres {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            url: Option<&'a PostgresTarget>,
            #[serde(skip_serializing_if = "Option::is_none")]
            url_file: Option<&'a PathBuf>,
            saturation_warn: f64,
            saturation_fail: f64,
            #[serde(with = "duration")]
            long_query: Duration,
            pool_size: u32,
            #[serde(with = "duration")]
            cert_warn: Duration,
            #[serde(with = "duration")]
            lock_wait: Duration,
            #[serde(with = "duration")]
            idle_in_transaction_warn: Duration,
            require_primary: bool,
        }
        Shown {
            url: self.url_file.is_none().then_some(&self.target),
            url_file: self.url_file.as_ref(),
            saturation_warn: self.saturation_warn,
            saturation_fail: self.saturation_fail,
            long_query: self.long_query,
            pool_size: self.pool_size,
            cert_warn: self.cert_warn,
            lock_wait: self.lock_wait,
            idle_in_transaction_warn: self.idle_in_transaction_warn,
            require_primary: self.require_primary,
        }
        .serialize(serializer)
    }
}

/// `[postgres]` as written: what [`Postgres`] is loaded from (see its fields for each key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresKeys {
    /// [`Postgres::target`] unparsed.
    #[serde(default)]
    url: Option<Secret<String>>,
    /// [`Postgres::url_file`].
    #[serde(default)]
    url_file: Option<PathBuf>,
    /// [`Postgres::saturation_warn`].
    #[serde(default = "default_saturation_warn")]
    saturation_warn: f64,
    /// [`Postgres::saturation_fail`].
    #[serde(default = "default_saturation_fail")]
    saturation_fail: f64,
    /// [`Postgres::long_query`].
    #[serde(default = "default_long_query", with = "duration")]
    long_query: Duration,
    /// [`Postgres::pool_size`].
    #[serde(default = "default_pool_size")]
    pool_size: u32,
    /// [`Postgres::cert_warn`].
    #[serde(default = "default_cert_warn", with = "duration")]
    cert_warn: Duration,
    /// [`Postgres::lock_wait`].
    #[serde(default = "default_lock_wait", with = "duration")]
    lock_wait: Duration,
    /// [`Postgres::idle_in_transaction_warn`].
    #[serde(default = "default_idle_in_transaction_warn", with = "duration")]
    idle_in_transaction_warn: Duration,
    /// [`Postgres::require_primary`].
    #[serde(default)]
    require_primary: bool,
}

impl PostgresKeys {
    /// Reads `url_file`, parses the URL and validates the section.
    pub(crate) fn resolve(self) -> Result<Postgres, Invalid> {
        let target = PostgresTarget::from_keys(
            "postgres",
            self.url,
            self.url_file.as_deref(),
            "required: set url, url_file or the DATABASE_URL environment variable",
        )?;
        let postgres = Postgres {
            target,
            url_file: self.url_file,
            saturation_warn: self.saturation_warn,
            saturation_fail: self.saturation_fail,
            long_query: self.long_query,
            pool_size: self.pool_size,
            cert_warn: self.cert_warn,
            lock_wait: self.lock_wait,
            idle_in_transaction_warn: self.idle_in_transaction_warn,
            require_primary: self.require_primary,
        };
        postgres.validate()?;
        Ok(postgres)
    }
}

impl Postgres {
    /// The limits of the keys besides the URL (parsed before).
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        cert_warn("postgres.cert_warn", self.cert_warn)?;
        warn_below_fail(
            "postgres",
            ("saturation_warn", self.saturation_warn),
            ("saturation_fail", self.saturation_fail),
        )?;
        if self.long_query < Duration::from_secs(1) {
            return Err(Invalid::new(
                "postgres.long_query",
                format!(
                    "must be at least 1s, got {}",
                    crate::core::fmt::duration(self.long_query)
                ),
            ));
        }
        within(
            "postgres.lock_wait",
            self.lock_wait,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )?;
        within(
            "postgres.idle_in_transaction_warn",
            self.idle_in_transaction_warn,
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        )?;
        if !(1..=16).contains(&self.pool_size) {
            return Err(Invalid::new(
                "postgres.pool_size",
                format!("must be between 1 and 16, got {}", self.pool_size),
            ));
        }
        Ok(())
    }
}

/// `key` between `low` and `high`, both included.
fn within(key: &str, value: Duration, low: Duration, high: Duration) -> Result<(), Invalid> {
    if (low..=high).contains(&value) {
        return Ok(());
    }
    let shown = crate::core::fmt::duration;
    Err(Invalid::new(
        key,
        format!(
            "must be between {} and {}, got {}",
            shown(low),
            shown(high),
            shown(value)
        ),
    ))
}

fn default_lock_wait() -> Duration {
    Duration::from_secs(5)
}

fn default_idle_in_transaction_warn() -> Duration {
    Duration::from_secs(60)
}

fn default_long_query() -> Duration {
    Duration::from_secs(30)
}

fn default_pool_size() -> u32 {
    2
}
