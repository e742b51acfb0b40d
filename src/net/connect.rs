//! Resolving a name through the one resolver and connecting to it, Happy Eyeballs style.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::net::{TcpSocket, TcpStream};

use super::attempt::{ProbeError, Progress};

/// The addresses of `host` (itself when it is an address), through the one resolver.
pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ProbeError> {
    Ok(lookup(host, port).await?.addresses)
}

async fn lookup(host: &str, port: u16) -> Result<super::dns::Found, ProbeError> {
    super::dns::lookup(host, port).await.map_err(|source| ProbeError::Dns {
        host: host.to_owned(),
        source,
    })
}

/// The name resolved (timed, unless it is an address) and connected to, Happy Eyeballs style
/// ([`connect_any`]); the addresses it resolved to are counted.
pub(crate) async fn connect(host: &str, port: u16, progress: &mut Progress) -> Result<(TcpStream, usize), ProbeError> {
    let addresses: Vec<SocketAddr> = match progress.at {
        Some(at) => vec![at],
        None => {
            let found = lookup(host, port).await?;
            if host.parse::<std::net::IpAddr>().is_err() {
                // The resolver's own time: a wait for a free lookup slot is not DNS time.
                progress.phases.dns = Some(found.took);
            }
            found.addresses
        }
    };
    progress.addresses = Some(addresses.len());
    if addresses.is_empty() {
        return Err(ProbeError::NoAddresses { host: host.to_owned() });
    }
    let connect = Instant::now();
    let (tcp, addr) = connect_any(&addresses, progress.source).await?;
    progress.answered = Some(addr);
    progress.phases.connect = Some(connect.elapsed());
    // Small requests: do not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    Ok((tcp, addresses.len()))
}

/// How long an attempt to connect has before the next address is tried beside it (RFC 8305's
/// "Connection Attempt Delay").
pub(crate) const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Connects to the first of `addresses` that answers, Happy Eyeballs style (RFC 8305): they are
/// tried in the resolver's order, the next one as soon as the previous has failed or has not
/// connected within [`ATTEMPT_DELAY`], the attempts racing; the first connection wins and the
/// others are dropped. A dual-stack name whose AAAA record leads nowhere then still connects
/// over IPv4 well within the timeout, where trying the first address alone would read "down".
/// With every attempt failed, the error is a refusal when any was refused, else the last one.
/// Each attempt is made from `source` when given (an address of the other family cannot be).
async fn connect_any(addresses: &[SocketAddr], source: Option<IpAddr>) -> Result<(TcpStream, SocketAddr), ProbeError> {
    async fn from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(addr).await
    }
    let attempt = async |addr: SocketAddr| match source {
        Some(source) => (addr, from(source, addr).await),
        None => (addr, TcpStream::connect(addr).await),
    };
    let mut pending = FuturesUnordered::new();
    let mut waiting = addresses.iter().copied();
    let mut refused = false;
    let mut last = None;
    if let Some(first) = waiting.next() {
        pending.push(attempt(first));
    }
    loop {
        let more = waiting.len() > 0;
        tokio::select! {
            finished = pending.next(), if !pending.is_empty() => match finished {
                Some((addr, Ok(tcp))) => return Ok((tcp, addr)),
                Some((addr, Err(source))) => {
                    refused |= source.kind() == std::io::ErrorKind::ConnectionRefused;
                    last = Some(ProbeError::Connect { addr, source });
                    if let Some(next) = waiting.next() {
                        pending.push(attempt(next));
                    }
                }
                None => {}
            },
            () = tokio::time::sleep(ATTEMPT_DELAY), if more => {
                if let Some(next) = waiting.next() {
                    pending.push(attempt(next));
                }
            }
        }
        if pending.is_empty() && waiting.len() == 0 {
            break;
        }
    }
    Err(match (refused, last) {
        (true, _) => ProbeError::Refused,
        (false, Some(error)) => error,
        (false, None) => ProbeError::Refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback address whose SYNs go unanswered: a listener with a backlog of one, filled.
    async fn hanging_addr() -> (tokio::net::TcpListener, Vec<TcpStream>, SocketAddr) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        // Fill the accept queue; the next connection attempt waits for a SYN-ACK that never comes.
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => held.push(stream),
                _ => break,
            }
        }
        (listener, held, addr)
    }

    #[tokio::test]
    async fn the_next_address_is_tried_when_the_first_refuses_or_hangs() {
        let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = up.local_addr().unwrap();
        let refused = refused_addr();
        let (_hang_listener, _held, hanging) = hanging_addr().await;

        let (_, answered) = connect_any(&[refused, good], None).await.unwrap();
        assert_eq!(answered, good, "a refusal moves on at once");

        let started = Instant::now();
        let (_, answered) = connect_any(&[hanging, good], None).await.unwrap();
        assert_eq!(answered, good, "a hanging first address does not hold the second back");
        let took = started.elapsed();
        assert!(took >= ATTEMPT_DELAY && took < Duration::from_secs(2), "{took:?}");

        let error = connect_any(&[refused, refused], None).await.unwrap_err();
        assert!(matches!(error, ProbeError::Refused), "{error}");
    }

    fn refused_addr() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        addr
    }
}
