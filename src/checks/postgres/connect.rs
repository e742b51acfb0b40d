//! Opening a PostgreSQL connection: the socket through `net` (the one resolver, Happy Eyeballs),
//! its stream bounded ([`super::bounded`]), then handed to tokio-postgres (`connect_raw`) for
//! TLS, the startup and authentication. The kept connection, the pool (through
//! [`PoolConnect`]) and the `pgbouncer` check's console connection open theirs here.
//!
//! tokio-postgres' own `connect` opens its socket itself, out of reach: a stream wrapper cannot be
//! put under it. So this does what its `connect` does, for what a `postgres.url` can say: hosts
//! tried in order (shuffled with `load_balance_hosts=random`), `hostaddr`, ports, Unix sockets,
//! `connect_timeout` for the socket, TCP keepalives and `tcp_user_timeout`, and
//! `target_session_attrs` (`SHOW transaction_read_only` after the startup).

use socket2::{SockRef, TcpKeepalive};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, LoadBalanceHosts, SslMode, SslNegotiation, TargetSessionAttrs};
use tokio_postgres::tls::{MakeTlsConnect, NoTls, TlsConnect};
use tokio_postgres::{Client, Config, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::bounded::Bounded;
use crate::core::text;
use crate::net::attempt::{ProbeError, Progress};

/// A socket to the server, TCP or Unix, as one type.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Io for S {}

/// The stream tokio-postgres is handed: the socket, bounded.
pub(crate) type Socket = Bounded<Box<dyn Io>>;

/// The TLS stream over it, bounded again inside.
pub(crate) type TlsSocket = Bounded<<MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// A connection as the check drives it.
pub(crate) type Connection = tokio_postgres::Connection<Socket, TlsSocket>;

/// Opens a connection as `config` says, every stream bounded. The errors are tokio-postgres',
/// as its own `connect` would report them, so that one classification reads them all.
pub(crate) async fn connect(
    config: &Config,
    tls: &MakeRustlsConnect,
) -> Result<(Client, Connection), tokio_postgres::Error> {
    let hosts = config.get_hosts();
    let hostaddrs = config.get_hostaddrs();
    let ports = config.get_ports();
    let count = hosts.len().max(hostaddrs.len());
    let mut order: Vec<usize> = (0..count).collect();
    if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
        fastrand::shuffle(&mut order);
    }
    let mut last = None;
    for i in order {
        let port = ports.get(i).or_else(|| ports.first()).copied().unwrap_or(5432);
        match connect_host(config, tls, hosts.get(i), hostaddrs.get(i).copied(), port).await {
            Ok(pair) => return Ok(pair),
            Err(error) => last = Some(error),
        }
    }
    match last {
        Some(error) => Err(error),
        None => Err(as_driver_error(io::Error::new(io::ErrorKind::InvalidInput, "the URL names no host")).await),
    }
}

type Connected<'a> = Pin<Box<dyn Future<Output = Result<(Client, Connection), tokio_postgres::Error>> + Send + 'a>>;

async fn connect_host(
    config: &Config,
    tls: &MakeRustlsConnect,
    host: Option<&Host>,
    hostaddr: Option<std::net::IpAddr>,
    port: u16,
) -> Result<(Client, Connection), tokio_postgres::Error> {
    // The host names the server for TLS; hostaddr, when given, is where to connect.
    let hostname = match host {
        Some(Host::Tcp(name)) => name.as_str(),
        _ => "",
    };
    let opened = match (hostaddr, host) {
        (Some(ip), _) => with_timeout(config, tcp(config, &ip.to_string(), port)).await,
        (None, Some(Host::Tcp(name))) => with_timeout(config, tcp(config, name, port)).await,
        #[cfg(unix)]
        (None, Some(Host::Unix(dir))) => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            let unix = async { Ok(Box::new(tokio::net::UnixStream::connect(path).await?) as Box<dyn Io>) };
            with_timeout(config, unix).await
        }
        (None, None) => Err(io::Error::new(io::ErrorKind::InvalidInput, "the URL names no host")),
    };
    let stream = match opened {
        Ok(stream) => stream,
        Err(error) => return Err(as_driver_error(error).await),
    };
    let socket = match (config.get_ssl_mode(), config.get_ssl_negotiation()) {
        (SslMode::Disable, _) => Bounded::messages(stream),
        (_, SslNegotiation::Direct) => Bounded::tls_below(stream),
        _ => Bounded::negotiating(stream),
    };
    let Ok(rustls) = MakeTlsConnect::<Socket>::make_tls_connect(&mut tls.clone(), hostname);
    // Boxed as `Send` here, where the types are known: through the generic connector the
    // compiler cannot prove the startup's future `Send` for every lifetime on its own.
    let raw: Connected<'_> = Box::pin(config.connect_raw(socket, BoundedTls(rustls)));
    let (client, mut connection) = raw.await?;
    if config.get_target_session_attrs() != TargetSessionAttrs::Any {
        check_session(config, &client, &mut connection).await?;
    }
    Ok((client, connection))
}

/// `connect_timeout` for opening the socket, as tokio-postgres applies it.
async fn with_timeout(config: &Config, open: impl Future<Output = io::Result<Box<dyn Io>>>) -> io::Result<Box<dyn Io>> {
    match config.get_connect_timeout() {
        Some(limit) => tokio::time::timeout(*limit, open)
            .await
            .unwrap_or_else(|_| Err(io::Error::from(io::ErrorKind::TimedOut))),
        None => open.await,
    }
}

/// A TCP socket through `net` (the one resolver, Happy Eyeballs), with the URL's keepalives and
/// user timeout.
async fn tcp(config: &Config, host: &str, port: u16) -> io::Result<Box<dyn Io>> {
    let mut progress = Progress::default();
    let (stream, _) = crate::net::connect::connect(host, port, &mut progress)
        .await
        .map_err(into_io)?;
    let socket = SockRef::from(&stream);
    if config.get_keepalives() {
        let mut keepalive = TcpKeepalive::new().with_time(config.get_keepalives_idle());
        if let Some(interval) = config.get_keepalives_interval() {
            keepalive = keepalive.with_interval(interval);
        }
        if let Some(retries) = config.get_keepalives_retries() {
            keepalive = keepalive.with_retries(retries);
        }
        socket.set_tcp_keepalive(&keepalive)?;
    }
    #[cfg(target_os = "linux")]
    if let Some(limit) = config.get_tcp_user_timeout() {
        socket.set_tcp_user_timeout(Some(*limit))?;
    }
    Ok(Box::new(stream))
}

/// A probe's error as the I/O error tokio-postgres would have met (the classification reads
/// its kind and, for DNS, its words).
fn into_io(error: ProbeError) -> io::Error {
    match error {
        ProbeError::Dns { source, .. } | ProbeError::Connect { source, .. } => source,
        ProbeError::Refused => io::Error::from(io::ErrorKind::ConnectionRefused),
        ProbeError::NoAddresses { host } => {
            io::Error::new(io::ErrorKind::NotFound, format!("{host} resolves to no addresses"))
        }
        ProbeError::Timeout(_) => io::Error::from(io::ErrorKind::TimedOut),
        other => io::Error::other(other.to_string()),
    }
}

/// `target_session_attrs`: a server that is (not) in read-only mode is not the one asked for.
async fn check_session(
    config: &Config,
    client: &Client,
    connection: &mut Connection,
) -> Result<(), tokio_postgres::Error> {
    let asked = client.simple_query("SHOW transaction_read_only");
    let answer = tokio::select! {
        answer = asked => answer?,
        ended = connection => {
            // The connection ended before the answer: the query's own error says how.
            ended?;
            return Err(as_driver_error(io::Error::from(io::ErrorKind::UnexpectedEof)).await);
        }
    };
    let read_only = answer.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "on"),
        _ => None,
    });
    let refused = match (config.get_target_session_attrs(), read_only) {
        (TargetSessionAttrs::ReadWrite, Some(true)) => Some("database does not allow writes"),
        (TargetSessionAttrs::ReadOnly, Some(false)) => Some("database is not read only"),
        _ => None,
    };
    match refused {
        Some(why) => Err(as_driver_error(io::Error::new(io::ErrorKind::PermissionDenied, why)).await),
        None => Ok(()),
    }
}

/// `error` as a [`tokio_postgres::Error`], whose constructors are the crate's own: the error
/// tokio-postgres reports when its stream fails with `error` on the first write, which is what it
/// is. No I/O happens.
async fn as_driver_error(error: io::Error) -> tokio_postgres::Error {
    let mut config = Config::new();
    config.user(super::APPLICATION_NAME).ssl_mode(SslMode::Disable);
    match config.connect_raw(Failed(Some(error)), NoTls).await {
        Err(error) => error,
        // Cannot happen: the stream fails every write.
        Ok(_) => tokio_postgres::Error::__private_api_timeout(),
    }
}

/// A stream that failed before it was opened.
struct Failed(Option<io::Error>);

impl AsyncRead for Failed {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.get_mut().take()))
    }
}

impl AsyncWrite for Failed {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(self.get_mut().take()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.get_mut().take()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Failed {
    fn take(&mut self) -> io::Error {
        self.0
            .take()
            .unwrap_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

/// rustls' connector for tokio-postgres, its TLS stream bounded inside.
struct BoundedTls<T>(T);

impl<S, T> TlsConnect<S> for BoundedTls<T>
where
    T: TlsConnect<S>,
    T::Future: Send + 'static,
    T::Stream: Send,
{
    type Stream = Bounded<T::Stream>;
    type Error = T::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Bounded<T::Stream>, T::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let handshake = self.0.connect(stream);
        Box::pin(async move { handshake.await.map(Bounded::messages) })
    }
}

/// The pool's connections, opened here (deadpool's `Connect`), each driven by a task of its own
/// that ends with the connection.
pub(super) struct PoolConnect {
    pub(super) tls: MakeRustlsConnect,
}

type Opened = Result<(Client, JoinHandle<()>), tokio_postgres::Error>;

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(&self, config: &Config) -> Pin<Box<dyn Future<Output = Opened> + Send + '_>> {
        let config = config.clone();
        Box::pin(async move {
            let (client, connection) = connect(&config, &self.tls).await?;
            let driver = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    let why = error.to_string();
                    tracing::debug!(
                        check = "postgres",
                        reason = %text::one_line(&why, text::REASON_MAX),
                        "A pooled PostgreSQL connection ended"
                    );
                }
            });
            Ok((client, driver))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// How long `connect` may take at most.
    const TEST_WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn socket_errors_read_as_the_driver_would_report_them() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let config: Config = format!("postgres://gw@127.0.0.1:{port}/db?sslmode=disable")
            .parse()
            .unwrap();
        let tls = super::super::tls::connector(super::super::url::SslMode::Disable, None, None)
            .unwrap()
            .0;
        let error = tokio::time::timeout(TEST_WAIT, connect(&config, &tls))
            .await
            .unwrap()
            .err()
            .unwrap();
        let io = std::error::Error::source(&error)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .expect("an I/O error below");
        assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused, "{error}");

        let config: Config = "postgres://gw@no-such-host.invalid/db?sslmode=disable".parse().unwrap();
        let error = tokio::time::timeout(TEST_WAIT, connect(&config, &tls))
            .await
            .unwrap()
            .err()
            .unwrap();
        let text = std::error::Error::source(&error).unwrap().to_string();
        assert!(
            text.contains("lookup address") || text.contains("resolves to no"),
            "{text}"
        );
    }
}
