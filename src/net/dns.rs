//! The one way vigil looks up a name: the system's resolver (`getaddrinfo`, so `/etc/hosts`,
//! `nsswitch.conf` and resolv.conf's `search` and `ndots` work as a pod configures them), each
//! lookup on a thread of its own, at most [`MAX_LOOKUPS`] at a time.
//!
//! Why not the runtime's blocking pool (`tokio::net::lookup_host`): `getaddrinfo` cannot be
//! cancelled, so a run cut at its timeout leaves its lookup running for as long as the resolver's
//! own timeouts say (resolv.conf's `timeout` × `attempts`, 10 s by default, and more with search
//! domains). On the blocking pool, which vigil keeps small, a few such lookups would hold every
//! thread and starve what else needs it (cgroup reads, scrape parsing, file reads); and a lookup
//! that waited for a thread had its waiting counted as DNS time. Here a lookup that outlives its
//! run keeps its slot until the system gives up, so hanging lookups cost at most
//! [`MAX_LOOKUPS`] small threads and never anything else; the DNS time is measured on the lookup's
//! own thread, from when it starts; and nothing waits for a left-over lookup at exit.
//! Why not an async DNS client (hickory-resolver): about 1 MiB more binary, and its own reading
//! of resolv.conf and hosts in place of the system's.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Lookups in flight at once, including those whose run was cut and that still wait for the
/// system's answer. More wait for a slot, and their waiting is not DNS time.
pub(crate) const MAX_LOOKUPS: usize = 64;

/// A lookup's thread does little but wait in `getaddrinfo` (and its NSS modules).
const LOOKUP_STACK: usize = 256 * 1024;

static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(MAX_LOOKUPS)));

/// What a lookup found, and how long the system's resolver took (not counting any wait for a
/// slot).
#[derive(Debug)]
pub(crate) struct Found {
    pub addresses: Vec<SocketAddr>,
    pub took: Duration,
}

/// The addresses of `host` (itself, at once, when it is an address). Cancel-safe: dropping the
/// future leaves the lookup to finish on its thread, holding its slot until it does.
/// An error is the system resolver's (no such name, no answer from the servers), or the
/// machine's when no thread can be started.
pub(crate) async fn lookup(host: &str, port: u16) -> std::io::Result<Found> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Found {
            addresses: vec![SocketAddr::new(ip, port)],
            took: Duration::ZERO,
        });
    }
    let slot = Arc::clone(&SLOTS)
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("the lookup slots are closed"))?;
    let (send, receive) = oneshot::channel();
    let name = host.to_owned();
    spawn(slot, name, port, send)?;
    match receive.await {
        Ok(result) => result,
        // The thread ended without answering: only if it panicked.
        Err(_) => Err(std::io::Error::other("the lookup thread stopped")),
    }
}

fn spawn(
    slot: OwnedSemaphorePermit,
    name: String,
    port: u16,
    send: oneshot::Sender<std::io::Result<Found>>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("vigil-dns".to_owned())
        .stack_size(LOOKUP_STACK)
        .spawn(move || {
            let started = Instant::now();
            let result = (name.as_str(), port).to_socket_addrs();
            let took = started.elapsed();
            // Free the slot before answering: the answer may start the next lookup.
            drop(slot);
            let _ = send.send(result.map(|found| Found {
                addresses: found.collect(),
                took,
            }));
        })
        .map(drop)
        .map_err(|e| std::io::Error::other(format!("cannot start a lookup thread: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_is_itself_and_localhost_comes_from_the_hosts_file() {
        let found = lookup("127.0.0.1", 80).await.unwrap();
        assert_eq!(found.addresses, vec!["127.0.0.1:80".parse().unwrap()]);
        let found = lookup("localhost", 8080).await.unwrap();
        assert!(
            found.addresses.iter().all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{found:?}"
        );
        assert!(!found.addresses.is_empty());
    }

    #[tokio::test]
    async fn a_name_that_does_not_exist_is_an_error() {
        assert!(lookup("no-such-host.invalid", 80).await.is_err());
    }
}
