//! Accept loop: HTTP/1 only, caps on concurrent connections (in all, per peer address, and for
//! remote peers together), a deadline for each request head against slow clients, and a
//! graceful close of open connections when the drain is over.
//!
//! A slowloris peer (many connections, each sending a byte now and then) gets at most
//! [`MAX_PER_REMOTE_PEER`] of them; the rest are answered 503 and closed at once, without the
//! accept loop waiting for capacity, so that a probe from any other address (the kubelet, from the
//! node) is accepted and answered at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io::{Read as _, Write as _};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use super::routes::{self, App};
use crate::fleet::instance;

/// Connections served at once, from every peer together. Probes and scrapes need a handful; the
/// cap keeps misbehaving clients from exhausting file descriptors.
pub(crate) const MAX_CONNECTIONS: usize = 512;

/// Connections one remote address (another pod, the node) may hold at once. The kubelet holds
/// one or two, Prometheus one, a fleet peer one.
pub(crate) const MAX_PER_REMOTE_PEER: usize = 32;

/// Connections one loopback address (a process in the pod: the gateway, `kubectl exec … curl`, a
/// benchmark) may hold at once: half of the cap, so that even a loopback peer gone wrong leaves
/// room for the kubelet.
pub(crate) const MAX_PER_LOOPBACK_PEER: usize = MAX_CONNECTIONS / 2;

/// Of [`MAX_CONNECTIONS`], kept for loopback peers: remote peers together never hold more than
/// the rest, so that a person on call can still read `/diag` from inside the pod.
pub(crate) const LOOPBACK_RESERVE: usize = 64;

/// A request head (request line and headers) must have arrived this long after the server
/// started reading it, however slowly it trickles in: hyper's `header_read_timeout` is a deadline
/// for the whole head, not reset by each byte. It also closes a keep-alive connection left idle
/// this long.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long open connections get to finish once serving stops.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// At most one log line about refused connections this often (an attack must not flood the log).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `stop` completes, then closes connections gracefully.
pub async fn serve(listener: TcpListener, app: Arc<App>, stop: impl Future<Output = ()>) {
    let limits = Arc::new(Limits::new(Policy::DEFAULT));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(stop);

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "Accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match limits.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                refuse(stream, refusal);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let service = service_fn(move |request| {
            let mut response = routes::handle(&app, &request, peer);
            // Every answer says which vigil gave it: the fleet counts only these, never its own.
            response.headers_mut().insert(instance::HEADER, instance::value());
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "Connection ended with an error");
            }
            drop(slot);
        });
    }

    drop(listener);
    if tokio::time::timeout(CLOSE_GRACE, graceful.shutdown()).await.is_err() {
        tracing::debug!(
            "Closing connections took longer than {:?}; leaving the rest",
            CLOSE_GRACE
        );
    }
}

/// Answers an over-limit connection with a canned 503, as far as its socket takes it without
/// waiting, and closes it. Never blocks: the socket is non-blocking, and what it does not take
/// at once is not sent.
fn refuse(stream: TcpStream, refusal: Refusal) {
    // Straight system calls: tokio's `try_*` would answer "would block" for a socket whose
    // readiness its driver has not seen yet, which is every socket just accepted.
    let Ok(mut stream) = stream.into_std() else {
        return;
    };
    // Read what the client has sent already, so that the close is a FIN rather than a reset that
    // could discard the answer before the client reads it.
    let mut sink = [0u8; 2048];
    let _ = stream.read(&mut sink);
    let body = refusal.message();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\ncache-control: no-store\r\nretry-after: 1\r\n{}: {}\r\nconnection: close\r\n\r\n{body}",
        body.len(),
        instance::HEADER,
        instance::id()
    );
    let _ = stream.write(answer.as_bytes());
}

/// The caps; [`Policy::DEFAULT`] in the server, smaller ones in tests.
#[derive(Debug, Clone, Copy)]
struct Policy {
    total: usize,
    per_remote_peer: usize,
    per_loopback_peer: usize,
    loopback_reserve: usize,
}

impl Policy {
    const DEFAULT: Policy = Policy {
        total: MAX_CONNECTIONS,
        per_remote_peer: MAX_PER_REMOTE_PEER,
        per_loopback_peer: MAX_PER_LOOPBACK_PEER,
        loopback_reserve: LOOPBACK_RESERVE,
    };
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The peer address holds its share already.
    Peer { ip: IpAddr, limit: usize },
    /// Remote peers together hold all but the loopback reserve.
    Remote { limit: usize },
    /// Every connection is taken.
    Total { limit: usize },
}

impl Refusal {
    /// The body of the 503.
    fn message(&self) -> String {
        match self {
            Refusal::Peer { ip, limit } => format!(
                "503 service unavailable: {ip} holds {limit} connections to vigil already, the most one address may; close some and retry\n"
            ),
            Refusal::Remote { limit } | Refusal::Total { limit } => format!(
                "503 service unavailable: vigil serves {limit} connections already, the most it takes; retry later\n"
            ),
        }
    }
}

/// Open connections, counted in all, for remote peers and per peer address.
#[derive(Debug)]
struct Limits {
    policy: Policy,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    remote: usize,
    per_peer: HashMap<IpAddr, usize>,
    /// Refusals since the last log line about them.
    refused: u64,
    last_logged: Option<Instant>,
}

/// One admitted connection's place; given back when dropped.
#[derive(Debug)]
struct Slot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    fn new(policy: Policy) -> Self {
        Limits {
            policy,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked: every update is a single step.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a connection from `ip`, or why there is none (logged, at most once per
    /// [`REFUSAL_LOG_INTERVAL`]).
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let ip = ip.to_canonical();
        let loopback = ip.is_loopback();
        let policy = self.policy;
        let mut counts = self.counts();
        let held = counts.per_peer.get(&ip).copied().unwrap_or(0);
        let refusal = if loopback && held >= policy.per_loopback_peer {
            Some(Refusal::Peer {
                ip,
                limit: policy.per_loopback_peer,
            })
        } else if !loopback && held >= policy.per_remote_peer {
            Some(Refusal::Peer {
                ip,
                limit: policy.per_remote_peer,
            })
        } else if counts.total >= policy.total {
            Some(Refusal::Total { limit: policy.total })
        } else if !loopback && counts.remote >= policy.total.saturating_sub(policy.loopback_reserve) {
            Some(Refusal::Remote {
                limit: policy.total.saturating_sub(policy.loopback_reserve),
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            counts.refused += 1;
            let now = Instant::now();
            if counts
                .last_logged
                .is_none_or(|last| now.duration_since(last) >= REFUSAL_LOG_INTERVAL)
            {
                let refused = std::mem::take(&mut counts.refused);
                counts.last_logged = Some(now);
                drop(counts);
                log_refusal(refusal, refused);
            }
            return Err(refusal);
        }
        counts.total += 1;
        if !loopback {
            counts.remote += 1;
        }
        *counts.per_peer.entry(ip).or_insert(0) += 1;
        Ok(Slot {
            limits: Arc::clone(self),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self.counts();
        counts.total = counts.total.saturating_sub(1);
        if !ip.is_loopback() {
            counts.remote = counts.remote.saturating_sub(1);
        }
        if let Some(held) = counts.per_peer.get_mut(&ip) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.per_peer.remove(&ip);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.release(self.ip);
    }
}

fn log_refusal(refusal: Refusal, refused: u64) {
    let interval = crate::core::fmt::duration(REFUSAL_LOG_INTERVAL);
    match refusal {
        Refusal::Peer { ip, limit } => tracing::warn!(
            peer = %ip,
            limit,
            refused,
            "Refusing connections: {ip} holds {limit} already, the most one address may (503 and closed; {refused} refused since the last such line, at most one every {interval})"
        ),
        Refusal::Remote { limit } | Refusal::Total { limit } => tracing::warn!(
            limit,
            refused,
            "Refusing connections: {limit} open already, the most vigil takes (503 and closed; {refused} refused since the last such line, at most one every {interval})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Policy = Policy {
        total: 10,
        per_remote_peer: 3,
        per_loopback_peer: 5,
        loopback_reserve: 2,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_remote_peer_gets_its_share_and_no_more() {
        let limits = Arc::new(Limits::new(SMALL));
        let held: Vec<Slot> = (0..3).map(|_| limits.admit(ip("10.0.0.9")).unwrap()).collect();
        assert_eq!(
            limits.admit(ip("10.0.0.9")).unwrap_err(),
            Refusal::Peer {
                ip: ip("10.0.0.9"),
                limit: 3
            }
        );
        // IPv4-mapped IPv6 is the same peer.
        assert!(limits.admit(ip("::ffff:10.0.0.9")).is_err());
        // Another address (the kubelet, from the node) is served.
        let kubelet = limits.admit(ip("10.0.0.1")).unwrap();
        drop(kubelet);
        drop(held);
        let counts = limits.counts();
        assert_eq!((counts.total, counts.remote, counts.per_peer.len()), (0, 0, 0));
        assert_eq!(counts.refused, 1, "the first refusal was logged, the second counted");
    }

    #[test]
    fn remote_peers_together_leave_the_loopback_reserve() {
        let limits = Arc::new(Limits::new(SMALL));
        let mut held = Vec::new();
        for peer in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            for _ in 0..3 {
                if let Ok(slot) = limits.admit(ip(peer)) {
                    held.push(slot);
                }
            }
        }
        assert_eq!(held.len(), 8, "10 in all, 2 kept for loopback");
        assert_eq!(limits.admit(ip("10.0.0.4")).unwrap_err(), Refusal::Remote { limit: 8 });
        held.push(limits.admit(ip("127.0.0.1")).unwrap());
        held.push(limits.admit(ip("::1")).unwrap());
        assert_eq!(limits.admit(ip("127.0.0.1")).unwrap_err(), Refusal::Total { limit: 10 });
        held.remove(0);
        assert!(
            limits.admit(ip("10.0.0.4")).is_ok(),
            "a place given back is taken again"
        );
    }

    #[test]
    fn one_loopback_peer_takes_at_most_its_share() {
        let limits = Arc::new(Limits::new(SMALL));
        let held: Vec<Slot> = (0..5).map(|_| limits.admit(ip("127.0.0.1")).unwrap()).collect();
        assert!(matches!(
            limits.admit(ip("127.0.0.1")),
            Err(Refusal::Peer { limit: 5, .. })
        ));
        assert!(limits.admit(ip("10.0.0.1")).is_ok());
        drop(held);
    }

    #[test]
    fn refusals_name_the_limit() {
        let peer = Refusal::Peer {
            ip: ip("10.0.0.9"),
            limit: 32,
        };
        assert_eq!(
            peer.message(),
            "503 service unavailable: 10.0.0.9 holds 32 connections to vigil already, the most one address may; close some and retry\n"
        );
        assert!(
            Refusal::Total { limit: 512 }
                .message()
                .contains("512 connections already")
        );
    }
}
