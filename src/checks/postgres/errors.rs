//! Turns what tokio-postgres and the pool report into one of vigil's failure classes, a
//! reason that names the class and the target, and a runbook hint.
//!
//! Reasons are written here from parts vigil knows (host, port, user, database) and from the
//! server's own message; never from the URL, so the password cannot reach a reason.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::error::SqlState;

use super::bounded::Oversized;
use super::why::SATURATION_HINT;
use crate::core::fmt;
use crate::core::outcome::{FailureKind, Finding};

pub(crate) const NETSTAT_HINT: &str = "kubectl exec -it <api-gateway-pod> -- netstat -an | grep :5432";
pub(super) const LONG_QUERY_HINT: &str = "SELECT pid, now() - query_start AS running, state, usename, left(query, 100) \
     FROM pg_stat_activity WHERE state <> 'idle' ORDER BY 2 DESC; cancel one with SELECT pg_cancel_backend(<pid>)";

/// What vigil tried to reach, for reasons and for telling DNS failures apart.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `host:port` (or the socket directory) as shown in reasons.
    pub display: String,
    /// The host as written, when it is a name that needs DNS.
    pub dns_name: Option<String>,
    pub user: String,
    pub dbname: String,
}

/// A classified failure: a fail finding with its hint.
fn failure(kind: FailureKind, reason: String, hint: impl Into<String>) -> Finding {
    Finding::fail(kind, reason).with_hint(hint)
}

/// Nothing came back within `after`.
pub(crate) fn timeout(target: &Target, what: &str, after: Duration) -> Finding {
    failure(
        FailureKind::Timeout,
        format!("timed out {what} {} after {}", target.display, fmt::duration(after)),
        format!(
            "the server or the network does not answer: check NetworkPolicies and firewalls to {}, the \
                 server's load and logs; {NETSTAT_HINT}",
            target.display
        ),
    )
}

/// The server answered something vigil cannot use.
pub(crate) fn protocol(target: &Target, what: &str) -> Finding {
    failure(
        FailureKind::Protocol,
        format!("{}: {what}", target.display),
        "see the server's log, and any proxy (PgBouncer) between vigil and the server",
    )
}

/// Classifies an error of connecting or querying.
pub(crate) fn classify(error: &tokio_postgres::Error, target: &Target, budget: Duration) -> Finding {
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        let message = db.message();
        return if *code == SqlState::TOO_MANY_CONNECTIONS {
            failure(
                FailureKind::TooManyClients,
                format!("too many clients: the server refused a new connection ({message})"),
                SATURATION_HINT,
            )
        } else if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            // PgBouncer says "SASL authentication failed" / "password authentication failed" with 08P01.
            || (*code == SqlState::PROTOCOL_VIOLATION && message.contains("authentication failed"))
        {
            failure(
                FailureKind::Auth,
                format!("authentication failed for user \"{}\" ({message})", target.user),
                "check the user and password in the Secret behind DATABASE_URL / postgres.url_file (or the \
                 client certificate, sslcert and sslkey, where the server requires one), and pg_hba.conf on the \
                 server (its log says which rule rejected the client)",
            )
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            failure(
                FailureKind::Misconfigured,
                format!("database \"{}\" does not exist", target.dbname),
                "check the database name in the URL; `psql -l` lists the server's databases",
            )
        } else if *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
        {
            failure(
                FailureKind::Refused,
                format!("server not accepting connections: {message}"),
                "the server is starting, shutting down or recovering from a crash: check its log and \
                 kubectl get pods for restarts",
            )
        } else {
            failure(
                FailureKind::Protocol,
                format!("server error {}: {message}", code.code()),
                "see the server's log for this error",
            )
        };
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return classify_io(io, target, budget);
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return tls_failure(&tls.to_string(), target);
        }
        source = cause.source();
    }
    let text = error.to_string();
    if text.contains("TLS") {
        return tls_failure(&text, target);
    }
    if text.contains("timeout") {
        return timeout(target, "connecting to", budget);
    }
    if error.is_closed() {
        return failure(
            FailureKind::Refused,
            format!("connection to {} closed by the server", target.display),
            format!("the server ended the session: check its log for restarts or terminated backends; {NETSTAT_HINT}"),
        );
    }
    failure(
        FailureKind::Protocol,
        format!("{} ({})", text, target.display),
        "see the server's log",
    )
}

fn tls_failure(detail: &str, target: &Target) -> Finding {
    failure(
        FailureKind::Tls,
        format!("TLS handshake failed with {}: {detail}", target.display),
        "check sslmode in the URL against the server's ssl setting, and for verify-full the certificate's \
         host name and sslrootcert",
    )
}

/// Classifies an I/O error below the driver.
pub(super) fn classify_io(io: &io::Error, target: &Target, budget: Duration) -> Finding {
    let text = io.to_string();
    if let Some(oversized) = io.get_ref().and_then(|e| e.downcast_ref::<Oversized>()) {
        return failure(
            FailureKind::Protocol,
            format!("{}: {oversized}", target.display),
            "see the server's log for the statement that answered this; a function or a proxy between vigil \
             and the server may be sending it",
        );
    }
    match io.kind() {
        io::ErrorKind::ConnectionRefused => failure(
            FailureKind::Refused,
            format!("connection refused ({})", target.display),
            format!(
                "nothing listens on {}: is PostgreSQL running (kubectl get pods; its log)? is the Service's \
                 port right? {NETSTAT_HINT}",
                target.display
            ),
        ),
        io::ErrorKind::TimedOut => timeout(target, "connecting to", budget),
        io::ErrorKind::InvalidData if text.contains("certificate") || text.contains("tls") => {
            tls_failure(&text, target)
        }
        _ if is_dns(&text) => {
            let name = target.dns_name.as_deref().unwrap_or(&target.display);
            failure(
                FailureKind::Dns,
                format!("DNS lookup of {name} failed"),
                format!(
                    "kubectl exec -it <api-gateway-pod> -- nslookup {name}; check the Service name and \
                     namespace in the URL and CoreDNS"
                ),
            )
        }
        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => failure(
            FailureKind::Refused,
            format!("connection to {} closed by the server ({text})", target.display),
            format!("the server ended the session: check its log for restarts or crashes; {NETSTAT_HINT}"),
        ),
        _ => failure(
            FailureKind::Protocol,
            format!("I/O error talking to {}: {text}", target.display),
            NETSTAT_HINT,
        ),
    }
}

fn is_dns(text: &str) -> bool {
    [
        "lookup address",
        "Name or service not known",
        "name resolution",
        "No address associated",
        "nodename nor servname",
        "resolves to no addresses",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Which limit a refusal with SQLSTATE 53300 names (the server's, the role's, the database's).
pub(super) fn refusal(error: &tokio_postgres::Error) -> Option<super::why::Scope> {
    let db = error
        .as_db_error()
        .filter(|db| *db.code() == SqlState::TOO_MANY_CONNECTIONS)?;
    Some(super::why::Scope::of_refusal(db.message()))
}

/// As [`refusal`], for an error of the agent's own pool.
pub(super) fn pool_refusal(error: &PoolError) -> Option<super::why::Scope> {
    match error {
        PoolError::Backend(e) => refusal(e),
        _ => None,
    }
}

/// Classifies an error of the agent's own pool.
pub(super) fn classify_pool(error: &PoolError, target: &Target, budget: Duration) -> Finding {
    match error {
        PoolError::Timeout(TimeoutType::Wait) => failure(
            FailureKind::Timeout,
            format!(
                "timed out after {} waiting for a connection of vigil's own pool",
                fmt::duration(budget)
            ),
            "vigil's pool is busy with queries that do not finish: see postgres:pool_in_use in /diag and the \
             server's load",
        ),
        PoolError::Timeout(_) => timeout(target, "connecting to", budget),
        PoolError::Backend(e) => classify(e, target, budget),
        other => failure(
            FailureKind::Protocol,
            format!("vigil's connection pool failed: {other}"),
            "a bug in vigil: report it with this reason",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            display: "db.example:5432".to_owned(),
            dns_name: Some("db.example".to_owned()),
            user: "gateway".to_owned(),
            dbname: "gw".to_owned(),
        }
    }

    #[test]
    fn io_errors_name_their_class() {
        let t = target();
        let b = Duration::from_secs(2);
        let refused = classify_io(&io::Error::from(io::ErrorKind::ConnectionRefused), &t, b);
        assert_eq!(refused.kind, FailureKind::Refused);
        assert_eq!(refused.reason, "connection refused (db.example:5432)");
        let timeout = classify_io(&io::Error::from(io::ErrorKind::TimedOut), &t, b);
        assert_eq!(timeout.kind, FailureKind::Timeout);
        assert_eq!(timeout.reason, "timed out connecting to db.example:5432 after 2s");
        let dns = classify_io(
            &io::Error::other("failed to lookup address information: Name or service not known"),
            &t,
            b,
        );
        assert_eq!(
            (dns.kind, dns.reason.as_str()),
            (FailureKind::Dns, "DNS lookup of db.example failed")
        );
        let reset = classify_io(&io::Error::from(io::ErrorKind::ConnectionReset), &t, b);
        assert_eq!(reset.kind, FailureKind::Refused);
    }

    #[test]
    fn pool_wait_timeout_is_a_timeout() {
        let f = classify_pool(
            &PoolError::Timeout(TimeoutType::Wait),
            &target(),
            Duration::from_secs(1),
        );
        assert_eq!(f.kind, FailureKind::Timeout);
        let f = classify_pool(
            &PoolError::Timeout(TimeoutType::Create),
            &target(),
            Duration::from_secs(1),
        );
        assert_eq!(f.reason, "timed out connecting to db.example:5432 after 1s");
    }
}
