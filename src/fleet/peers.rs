//! The other replicas: what `fleet.peers` resolves to (this replica left out), and asking one of
//! them about a check.
//!
//! The names are looked up concurrently, the whole resolution cut at its deadline: twenty names
//! behind a DNS server that does not answer cost one deadline, not twenty. A lookup the system
//! has not answered yet is shared by the next resolution instead of started again beside it
//! ([`Lookups`]), so a silent DNS server holds one lookup slot per name, never more, and the
//! other checks' lookups keep theirs. A name whose lookup timed out keeps the addresses it had.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use http::header::{CONNECTION, HOST, RETRY_AFTER, USER_AGENT};
use http_body_util::Full;

use super::decide::Answer;
use super::instance;
use crate::config::Fleet as FleetConfig;
use crate::core::{fmt, text};
use crate::net::attempt::cut_at;
use crate::net::connect::connect;
use crate::net::http as net_http;

/// How much of a peer's answer is read: `/readyz/NAME` is one line.
const ANSWER_LIMIT: usize = 1024;

/// What the peers resolved to last.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub at: Option<SystemTime>,
    pub peers: Vec<SocketAddr>,
    /// Entries that did not resolve, and why.
    pub errors: Vec<String>,
    /// Addresses left out as this replica's own (its own address, and those that answered with
    /// its own `Vigil-Instance`).
    pub own_left_out: usize,
    /// What each name resolved to, for the next resolution to fall back on when its lookup
    /// times out.
    named: HashMap<String, Vec<SocketAddr>>,
}

impl Resolution {
    /// Why there is no peer to ask, when there is none.
    pub fn problem(&self) -> Option<String> {
        if !self.peers.is_empty() {
            return None;
        }
        Some(if self.at.is_none() {
            "not resolved yet".to_owned()
        } else if !self.errors.is_empty() {
            format!("no peer to ask: {}", self.errors.join("; "))
        } else if self.own_left_out > 0 {
            "no peer to ask: the peers resolve only to this replica".to_owned()
        } else {
            "no peer to ask: the peers resolve to no address".to_owned()
        })
    }

    /// Leaves `addresses` out (they answered with this replica's own id).
    pub(super) fn leave_out(&mut self, addresses: &HashSet<SocketAddr>) {
        let before = self.peers.len();
        self.peers.retain(|addr| !addresses.contains(addr));
        self.own_left_out += before - self.peers.len();
    }
}

/// This replica's own address as peers see it: the own IP at vigil's port.
pub(super) fn own_address(config: &FleetConfig) -> Option<SocketAddr> {
    config.own_ip.map(|ip| SocketAddr::new(ip, config.default_port))
}

type Looked = Result<Vec<SocketAddr>, String>;

/// One name's lookup, which several resolutions may wait on.
type Lookup = Shared<BoxFuture<'static, Looked>>;

/// Lookups of peer names, shared while the system has not answered them (see the module docs).
#[derive(Default)]
pub(super) struct Lookups(Mutex<HashMap<(String, u16), Lookup>>);

impl Lookups {
    /// The lookup of `host`: the one in flight, or a new one.
    fn of(&self, host: &str, port: u16) -> Lookup {
        let mut lookups = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (host.to_owned(), port);
        if let Some(pending) = lookups.get(&key)
            && pending.peek().is_none()
        {
            return pending.clone();
        }
        let name = host.to_owned();
        let lookup = async move {
            crate::net::dns::lookup(&name, port)
                .await
                .map(|found| found.addresses)
                .map_err(|error| format!("DNS lookup of {name} failed: {error}"))
        }
        .boxed()
        .shared();
        lookups.insert(key, lookup.clone());
        lookup
    }
}

/// Resolves every entry of `fleet.peers` concurrently within `deadline`, this replica (its own
/// address, and `itself`: addresses that answered with its id) left out. A name whose lookup
/// times out keeps what it resolved to in `previous`.
pub(super) async fn resolve(
    config: &FleetConfig,
    deadline: Duration,
    lookups: &Lookups,
    previous: &Resolution,
    itself: &HashSet<SocketAddr>,
) -> Resolution {
    let looked = futures_util::future::join_all(config.peers.targets().iter().map(|target| async move {
        let found = match target.host.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, target.port)]),
            Err(_) => match tokio::time::timeout(deadline, lookups.of(&target.host, target.port)).await {
                Ok(found) => found.map_err(|e| (e, false)),
                Err(_) => Err((
                    format!(
                        "DNS lookup of {} timed out after {}",
                        target.host,
                        fmt::duration(deadline)
                    ),
                    true,
                )),
            },
        };
        (target, found)
    }))
    .await;
    let mut found: Vec<SocketAddr> = Vec::new();
    let mut errors = Vec::new();
    let mut named = HashMap::new();
    for (target, result) in looked {
        match result {
            Ok(addresses) if addresses.is_empty() => errors.push(format!("{} resolves to no address", target.host)),
            Ok(addresses) => {
                found.extend(&addresses);
                named.insert(target.text.clone(), addresses);
            }
            Err((error, timed_out)) => match previous.named.get(&target.text).filter(|_| timed_out) {
                Some(kept) => {
                    errors.push(format!("{error}; asking the {} address(es) it had", kept.len()));
                    found.extend(kept);
                    named.insert(target.text.clone(), kept.clone());
                }
                None => errors.push(error),
            },
        }
    }
    found.sort();
    found.dedup();
    let before = found.len();
    let own = own_address(config);
    found.retain(|addr| Some(*addr) != own && !itself.contains(addr));
    Resolution {
        at: Some(SystemTime::now()),
        own_left_out: before - found.len(),
        peers: found,
        errors: errors
            .iter()
            .map(|e| text::one_line(e, text::REASON_MAX).into_owned())
            .collect(),
        named,
    }
}

/// Asks `peer` about `check` (`GET /readyz/<check>`) within `deadline` (a timeout names
/// `configured`, the check's timeout): with vigil's `Vigil-Instance`, 200 passes there and 503
/// fails there; this process's own id is this replica itself; anything else is unknown. With
/// the `Vigil-Instance` that answered, so that a replica reached by two addresses (a
/// dual-stack name) counts once.
pub(super) async fn ask(
    peer: SocketAddr,
    check: &str,
    deadline: Duration,
    configured: Duration,
) -> (Answer, Option<Vec<u8>>) {
    let path: String = percent_encoding::utf8_percent_encode(check, percent_encoding::NON_ALPHANUMERIC).collect();
    let answer = get(
        peer,
        &format!("/readyz/{path}"),
        None,
        (deadline, configured),
        ANSWER_LIMIT,
    )
    .await;
    match answer {
        Ok(answer) => (
            judge(answer.status, &answer.headers),
            answer.headers.get(instance::HEADER).map(|id| id.as_bytes().to_vec()),
        ),
        Err(failure) => (
            Answer::Unknown(text::one_line(&failure.error.to_string(), text::REASON_MAX).into_owned()),
            None,
        ),
    }
}

/// `GET path` of a replica over one plain HTTP/1.1 connection, closed after the answer: the
/// fleet's consultations and `vigil fleet` ask the same way. `within`: the deadline, and the
/// timeout a failure names; the body is read up to `body_limit`.
pub(super) async fn get(
    peer: SocketAddr,
    path: &str,
    authorization: Option<&http::HeaderValue>,
    (deadline, configured): (Duration, Duration),
    body_limit: usize,
) -> Result<net_http::Answer, crate::net::attempt::ProbeFailure> {
    cut_at(Some(peer), deadline, configured, async |progress, _| {
        let (tcp, _) = connect(&peer.ip().to_string(), peer.port(), progress).await?;
        let mut request = http::Request::get(path)
            .header(HOST, peer.to_string())
            .header(USER_AGENT, net_http::USER_AGENT)
            .header(CONNECTION, "close");
        if let Some(value) = authorization {
            request = request.header(http::header::AUTHORIZATION, value);
        }
        net_http::send(Box::new(tcp), false, request.body(Full::new(Bytes::new()))?, body_limit).await
    })
    .await
}

/// Why an answer with `status` but no `Vigil-Instance` does not count (SPEC: only vigil's own
/// answers count), for the consultation and `vigil fleet` alike.
pub(super) fn not_vigil(status: u16) -> String {
    format!(
        "answered {status} without Vigil-Instance: not vigil (a proxy or a mesh sidecar in front of a peer that is down?)"
    )
}

/// What an answer with `status` and `headers` says about the check there.
fn judge(status: u16, headers: &http::HeaderMap) -> Answer {
    let Some(id) = headers.get(instance::HEADER) else {
        return Answer::Unknown(not_vigil(status));
    };
    if id.as_bytes() == instance::id().as_bytes() {
        return Answer::Itself;
    }
    match status {
        200 => Answer::Passes,
        // vigil's refusal of a connection over its caps: busy, not failing.
        503 if headers.contains_key(RETRY_AFTER) => {
            Answer::Unknown("answered 503 with Retry-After: it refuses connections (over its caps)".to_owned())
        }
        503 => Answer::Fails,
        other => Answer::Unknown(format!("answered {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_vigils_answers_count_and_its_own_is_left_out() {
        let mut headers = http::HeaderMap::new();
        assert!(matches!(judge(503, &headers), Answer::Unknown(why) if why.contains("without Vigil-Instance")));
        assert!(matches!(judge(200, &headers), Answer::Unknown(_)));
        headers.insert(instance::HEADER, HeaderValue::from_static("0123456789abcdef"));
        assert_eq!(judge(200, &headers), Answer::Passes);
        assert_eq!(judge(503, &headers), Answer::Fails);
        assert!(matches!(judge(404, &headers), Answer::Unknown(_)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        assert!(matches!(judge(503, &headers), Answer::Unknown(_)));
        headers.insert(instance::HEADER, instance::value());
        assert_eq!(judge(503, &headers), Answer::Itself);
        assert_eq!(judge(200, &headers), Answer::Itself);
    }
}
