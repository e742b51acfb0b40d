//! `postgres.url` parsed once, at load: libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
//! taken out (vigil handles TLS itself, see `checks::postgres::tls`) and the rest parsed into the
//! [`tokio_postgres::Config`] the check connects with. No message quotes the password.

use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};
use tokio_postgres::config::SslMode as PgSslMode;

use crate::config::Invalid;
use crate::config::limits::read_secret_file;
use crate::core::secret::Secret;

/// The server the postgres check watches, as parsed from `postgres.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PostgresTarget {
    /// Hosts, ports, user, password, database and the other libpq keys tokio-postgres knows,
    /// with its `ssl_mode` already set from [`PostgresTarget::sslmode`]. Its `Debug` hides the
    /// password.
    pub config: tokio_postgres::Config,
    /// libpq's `sslmode`, as the operator wrote it. Default `prefer`.
    pub sslmode: SslMode,
    /// libpq's `sslrootcert`: the CA file `verify-full` checks the server against (the
    /// Mozilla roots without it). Read when the check is built.
    pub root_cert: Option<PathBuf>,
    /// libpq's `sslcert` and `sslkey` (both or neither): the client certificate chain and its
    /// private key (PEM), presented when the server asks for one (`clientcert=verify-full`,
    /// the `cert` method). Read when the check is built and again when the files change.
    pub client_cert: Option<ClientCertFiles>,
}

/// The client certificate's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientCertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a postgres URL was refused. No variant holds the password: the messages are redacted
/// before they are stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PostgresUrlError {
    #[error("must be a postgres:// or postgresql:// URL (or key=value connection string)")]
    Scheme,
    /// A bad `sslmode`.
    #[error("{0}")]
    SslMode(String),
    /// `sslcert` without `sslkey` or the other way round.
    #[error("sslcert and sslkey go together: set both (the client certificate and its key) or neither")]
    ClientCertPair,
    /// What tokio-postgres said about the rest.
    #[error("cannot be parsed: {0}")]
    Parse(String),
}

impl PostgresTarget {
    /// The target of a section's `url` or `url_file` (exactly one; `required` says what to set
    /// when neither is), read and parsed; a refusal names the key that was set.
    pub(crate) fn from_keys(
        table: &str,
        url: Option<Secret<String>>,
        url_file: Option<&Path>,
        required: &str,
    ) -> Result<PostgresTarget, Invalid> {
        let url_key = format!("{table}.url");
        let (key, url) = match (url, url_file) {
            (Some(_), Some(_)) => return Err(Invalid::new(url_key, "set either url or url_file, not both")),
            (None, None) => return Err(Invalid::new(url_key, required)),
            (None, Some(path)) => {
                let key = format!("{table}.url_file");
                let url = read_secret_file(&key, path)?;
                (key, url)
            }
            (Some(url), None) => (url_key, url),
        };
        PostgresTarget::parse(url.expose()).map_err(|message| Invalid::new(key, message))
    }

    /// A `postgres://` / `postgresql://` URL or a `key=value` connection string. The error
    /// names no key (the caller's) and never shows the password.
    pub(crate) fn parse(url: &str) -> Result<PostgresTarget, PostgresUrlError> {
        // The URL holds the password: the message shows its scheme at most.
        let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let keyword_form = !url.contains("://") && url.contains('=');
        if !scheme_ok && !keyword_form {
            return Err(PostgresUrlError::Scheme);
        }
        let options = split_tls_options(url).map_err(PostgresUrlError::SslMode)?;
        let mut config: tokio_postgres::Config = options
            .rest
            .parse()
            .map_err(|e: tokio_postgres::Error| PostgresUrlError::Parse(describe_parse_error(&e, keyword_form)))?;
        // PostgreSQL offers no TLS on a Unix socket: libpq's `prefer` then means plain, and
        // asking for TLS there can never work.
        let only_sockets = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
        let driver_mode = match (options.mode, only_sockets) {
            (SslMode::Prefer, true) => PgSslMode::Disable,
            (SslMode::Require | SslMode::VerifyFull, true) => {
                return Err(PostgresUrlError::SslMode(format!(
                    "sslmode={} over a Unix socket: PostgreSQL offers no TLS there; use prefer or disable, or a TCP host",
                    options.mode.as_str()
                )));
            }
            (mode, _) => mode.for_driver(),
        };
        config.ssl_mode(driver_mode);
        let client_cert = match (options.client_cert, options.client_key) {
            (Some(cert), Some(key)) => Some(ClientCertFiles {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
            (None, None) => None,
            _ => return Err(PostgresUrlError::ClientCertPair),
        };
        Ok(PostgresTarget {
            config,
            sslmode: options.mode,
            root_cert: options.root_cert.map(PathBuf::from),
            client_cert,
        })
    }
}

/// Printed as `<redacted>`: the URL holds the password.
impl Serialize for PostgresTarget {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Secret::new(()).serialize(serializer)
    }
}

/// libpq's `sslmode`, as the operator wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// `disable`: plain text only.
    Disable,
    /// `prefer` (and `allow`), libpq's default: TLS when the server offers it, plain
    /// otherwise; the certificate is not verified.
    Prefer,
    /// `require`: TLS or no connection; the certificate is not verified.
    Require,
    /// `verify-full` (and `verify-ca`, treated as it): TLS with the chain and the host name
    /// verified against `sslrootcert` or the Mozilla roots.
    VerifyFull,
}

impl SslMode {
    pub(crate) fn parse(value: &str) -> Result<SslMode, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            // libpq's `allow` (plain first, TLS if required) is closest to prefer for a prober.
            "allow" | "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" | "verify-full" => Ok(SslMode::VerifyFull),
            // The value is not quoted: it stands in the URL beside the password, and a value of
            // letters only (a typo) is quoted, anything else is described.
            other if other.len() <= 16 && other.chars().all(|c| c.is_ascii_lowercase() || c == '-') => Err(format!(
                "sslmode must be disable, allow, prefer, require, verify-ca or verify-full, got {other:?}"
            )),
            _ => Err("sslmode must be disable, allow, prefer, require, verify-ca or verify-full".to_owned()),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The mode tokio-postgres negotiates with.
    pub(crate) fn for_driver(self) -> PgSslMode {
        match self {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => PgSslMode::Require,
        }
    }
}

/// A URL split into what tokio-postgres parses and the TLS options vigil handles itself.
#[derive(Debug, PartialEq, Eq)]
struct TlsOptions {
    /// `sslmode`; `prefer` without one.
    mode: SslMode,
    /// `sslrootcert`, if given.
    root_cert: Option<String>,
    /// `sslcert` and `sslkey`, if given.
    client_cert: Option<String>,
    client_key: Option<String>,
    /// The URL (or key=value string) without the options above.
    rest: String,
}

/// Takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of a `postgres://` URL's query or
/// a key=value string. A URL's values are percent-decoded (a path may hold `%20`).
fn split_tls_options(url: &str) -> Result<TlsOptions, String> {
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut client_cert = None;
    let mut client_key = None;
    let mut take = |key: &str, value: String| -> Result<bool, String> {
        match key {
            "sslmode" => {
                mode = SslMode::parse(&value)?;
                Ok(true)
            }
            "sslrootcert" => {
                root_cert = Some(value);
                Ok(true)
            }
            "sslcert" => {
                client_cert = Some(value);
                Ok(true)
            }
            "sslkey" => {
                client_key = Some(value);
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    let value = percent_encoding::percent_decode_str(value)
                        .decode_utf8_lossy()
                        .into_owned();
                    if !take(key, value)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut rest = String::with_capacity(url.len());
        let mut from = 0;
        for pair in keyword_pairs(url) {
            if take(&pair.key, pair.value.clone())? {
                rest.push_str(&url[from..pair.span.start]);
                let after = &url[pair.span.end..];
                from = pair.span.end + (after.len() - after.trim_start().len());
            }
        }
        rest.push_str(&url[from..]);
        rest.trim().to_owned()
    };
    Ok(TlsOptions {
        mode,
        root_cert,
        client_cert,
        client_key,
        rest,
    })
}

/// One `key = value` of a key=value connection string, with the span it takes in the text.
struct KeywordPair {
    key: String,
    value: String,
    span: std::ops::Range<usize>,
}

/// The pairs of a libpq key=value connection string, read as libpq reads them: spaces allowed
/// around `=`, values either single-quoted (`'a b'`) or bare, `\` escaping the next character
/// in both. A malformed tail ends the list: tokio-postgres then parses the whole string and
/// names what is wrong.
fn keyword_pairs(text: &str) -> Vec<KeywordPair> {
    let bytes = text.as_bytes();
    let skip_spaces = |mut at: usize| {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        at
    };
    let mut pairs = Vec::new();
    let mut at = skip_spaces(0);
    while at < bytes.len() {
        let start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() && bytes[at] != b'=' {
            at += 1;
        }
        let key = text[start..at].to_owned();
        at = skip_spaces(at);
        if key.is_empty() || bytes.get(at) != Some(&b'=') {
            break;
        }
        at = skip_spaces(at + 1);
        let mut value = String::new();
        let quoted = bytes.get(at) == Some(&b'\'');
        if quoted {
            at += 1;
        }
        let mut chars = text[at..].char_indices();
        let mut closed = !quoted;
        let mut end = text.len();
        while let Some((offset, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '\'' if quoted => {
                    closed = true;
                    end = at + offset + 1;
                    break;
                }
                c if !quoted && c.is_whitespace() => {
                    end = at + offset;
                    break;
                }
                c => value.push(c),
            }
        }
        if !closed {
            break;
        }
        pairs.push(KeywordPair {
            key,
            value,
            span: start..end,
        });
        at = skip_spaces(end);
    }
    pairs
}

/// tokio-postgres' complaint about a connection string, rebuilt from what is known to hold no
/// secret: the option names it cites (its own static names, or a keyword of letters and `_`).
/// Anything else it says may quote the string's text (a character, a value), so it becomes a
/// fixed description instead. A substring replace of the password would corrupt unrelated words
/// (`dis<redacted>ble` for a password `a`) and show where the password stands.
fn describe_parse_error(error: &tokio_postgres::Error, keyword_form: bool) -> String {
    // tokio-postgres' Display says only "invalid configuration"; the cause is its source.
    let text = std::error::Error::source(error).map_or_else(|| error.to_string(), ToString::to_string);
    let cited = |prefix: &str| {
        text.split_once(prefix)
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(name, _)| name)
            .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
            .map(str::to_owned)
    };
    if let Some(option) = cited("unknown option `") {
        format!("unknown option `{option}`")
    } else if let Some(option) = cited("invalid value for option `") {
        format!("invalid value for option `{option}`")
    } else if keyword_form {
        "not a valid key=value connection string (values with spaces need single quotes)".to_owned()
    } else {
        "not a valid postgres URL (percent-encode special characters in the user, password and database)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_taken_out_of_the_url() {
        let o = split_tls_options("postgres://u:p@h:5432/db?sslmode=verify-full&connect_timeout=3").unwrap();
        assert_eq!(o.mode, SslMode::VerifyFull);
        assert_eq!(o.rest, "postgres://u:p@h:5432/db?connect_timeout=3");
        let o = split_tls_options("postgresql://h/db?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!((o.mode, o.root_cert.as_deref()), (SslMode::Require, Some("/ca.pem")));
        assert_eq!(o.rest, "postgresql://h/db");
        let o = split_tls_options("postgres://h/db").unwrap();
        assert_eq!(o.mode, SslMode::Prefer, "libpq's default");
        let o = split_tls_options("host=h user=u sslmode=disable dbname=d").unwrap();
        assert_eq!((o.mode, o.rest.as_str()), (SslMode::Disable, "host=h user=u dbname=d"));
        assert_eq!(SslMode::parse("verify-ca").unwrap(), SslMode::VerifyFull);
        assert!(
            split_tls_options("postgres://h/db?sslmode=bogus")
                .unwrap_err()
                .contains("bogus")
        );
    }

    #[test]
    fn the_target_is_parsed_with_the_driver_mode_set() {
        let t = PostgresTarget::parse(
            "postgres://gw:s3cr3t-pw@db.example:6432/gateway?sslmode=verify-ca&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(t.sslmode, SslMode::VerifyFull);
        assert_eq!(t.root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(t.config.get_ssl_mode(), PgSslMode::Require);
        assert_eq!(t.config.get_ports(), [6432]);
        assert_eq!(t.config.get_dbname(), Some("gateway"));
        assert_eq!(t.config.get_password(), Some(&b"s3cr3t-pw"[..]));
        assert!(!format!("{t:?}").contains("s3cr3t"), "{t:?}");
        let t = PostgresTarget::parse("host=/run/postgresql user=gw").unwrap();
        assert_eq!((t.sslmode, t.config.get_user()), (SslMode::Prefer, Some("gw")));
    }

    #[test]
    fn errors_never_show_the_password() {
        for url in [
            "mysql://root:hunter2@db/x",
            "postgres://u:hunter2@h/db?sslmode=hunter2",
            "postgres://u:hunter2@h:notaport/db",
        ] {
            let message = PostgresTarget::parse(url).unwrap_err().to_string();
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn sslcert_and_sslkey_are_taken_out_together() {
        let t = PostgresTarget::parse(
            "postgres://gw@h/db?sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c/my%20client.crt&sslkey=/c/client.key",
        )
        .unwrap();
        assert_eq!(
            t.client_cert,
            Some(ClientCertFiles {
                cert: PathBuf::from("/c/my client.crt"),
                key: PathBuf::from("/c/client.key"),
            })
        );
        let t = PostgresTarget::parse("host=h user=gw sslcert='/c/a b.crt' sslkey=/c/k.pem dbname=db").unwrap();
        assert_eq!(t.client_cert.unwrap().cert, PathBuf::from("/c/a b.crt"));
        assert_eq!(t.config.get_dbname(), Some("db"));
        assert_eq!(
            PostgresTarget::parse("postgres://gw@h/db?sslcert=/c.crt").unwrap_err(),
            PostgresUrlError::ClientCertPair
        );
        assert!(PostgresTarget::parse("host=h sslkey=/k.pem").is_err());
    }

    #[test]
    fn key_value_strings_are_read_as_libpq_reads_them() {
        let t = PostgresTarget::parse("host=h user=u password='a  b' sslmode = require dbname=d").unwrap();
        assert_eq!(t.sslmode, SslMode::Require, "spaces around = are allowed");
        assert_eq!(
            t.config.get_password(),
            Some(&b"a  b"[..]),
            "a quoted value keeps its spaces"
        );
        let t = PostgresTarget::parse(r"host=h password='x sslmode=verify-full' user=u").unwrap();
        assert_eq!(
            t.sslmode,
            SslMode::Prefer,
            "sslmode= inside a quoted value is the value's text"
        );
        assert_eq!(t.config.get_password(), Some(&b"x sslmode=verify-full"[..]));
        let t = PostgresTarget::parse(r"host=h password=a\ b sslrootcert=/ca.pem sslmode=verify-full").unwrap();
        assert_eq!(t.config.get_password(), Some(&b"a b"[..]), "an escaped space");
        assert_eq!(t.root_cert.as_deref(), Some(std::path::Path::new("/ca.pem")));
    }

    #[test]
    fn parse_errors_name_options_never_the_password() {
        let error = |url: &str| PostgresTarget::parse(url).unwrap_err().to_string();
        // A one-letter password used to turn "disable" into "dis<redacted>ble".
        assert_eq!(
            error("postgres://u:a@h/db?sslmode=disable&frobnicate=1"),
            "cannot be parsed: unknown option `frobnicate`"
        );
        assert_eq!(
            error("postgres://u:s3cret@h:notaport/db"),
            "cannot be parsed: invalid value for option `port`"
        );
        let keyword = error("host=h user=u password='s3cret");
        assert!(!keyword.contains("s3cret"), "{keyword}");
        assert!(keyword.contains("key=value"), "{keyword}");
        let keyword = error("host=h password=s3cret port=x");
        assert_eq!(keyword, "cannot be parsed: invalid value for option `port`");
        assert!(matches!(
            PostgresTarget::parse("host=h user=u password=s3cret sslmode=verify-full").map(|t| t.sslmode),
            Ok(SslMode::VerifyFull)
        ));
    }
}
