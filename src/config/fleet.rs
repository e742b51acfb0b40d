//! `[fleet]`: the other replicas, as configured. What they are asked and how the answers are
//! counted is `crate::fleet`'s.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize, Serializer};

use super::error::Invalid;
use super::limits::ratio;
use super::sources::POD_IP;

/// `[fleet]`: the other replicas, asked while a critical shared check fails here so that a
/// failure of the whole fleet does not take every replica out of the Service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    /// The replicas: a DNS name (a headless Service with `publishNotReadyAddresses: true`;
    /// every address it resolves to is a replica) or a list of them. Each entry is `host` or
    /// `host:port` (an IP address or a DNS name; IPv6 as `[addr]:port`), the port being
    /// vigil's `listen` port unless given. Required; a list holds 1 to 256 entries. This
    /// replica's own address (see `own_ip`) is left out of what they resolve to.
    pub peers: Peers,
    /// The share of the answering replicas, this one included, that must fail a shared check
    /// for the failure to count as the fleet's (this replica then stays ready). Default 0.5;
    /// above 0, at most 1.
    pub panic_threshold: f64,
    /// This replica's own address, left out of the peers: `$POD_IP` (the downward API), read
    /// once at load, else the `listen` address unless that is unspecified (`0.0.0.0`). Not a
    /// key: not printed.
    #[serde(skip)]
    pub own_ip: Option<std::net::IpAddr>,
    /// Where the own address came from (`POD_IP`, `listen`), for `/diag`. Not a key.
    #[serde(skip)]
    pub own_ip_source: &'static str,
    /// The port of peers given without one: vigil's `listen` port. Not a key.
    #[serde(skip)]
    pub default_port: u16,
}

/// `fleet.peers`: one DNS name, or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    /// `peers = "api-gateway-peers.api-gateway.svc.cluster.local"`.
    Name(PeerTarget),
    /// `peers = ["10.0.0.5:9476", "10.0.0.6:9476"]`.
    List(Vec<PeerTarget>),
}

impl Peers {
    /// Every entry, in the order written.
    pub fn targets(&self) -> &[PeerTarget] {
        match self {
            Peers::Name(one) => std::slice::from_ref(one),
            Peers::List(list) => list,
        }
    }
}

impl Serialize for Peers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Peers::Name(one) => serializer.serialize_str(&one.text),
            Peers::List(list) => serializer.collect_seq(list.iter().map(|t| t.text.as_str())),
        }
    }
}

/// One entry of `fleet.peers`: `host` or `host:port`, parsed at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTarget {
    /// As written.
    pub text: String,
    /// An IP address or a DNS name, without brackets.
    pub host: String,
    /// As written, else vigil's `listen` port.
    pub port: u16,
}

impl PeerTarget {
    /// Parses `host`, `host:port` or `[v6]:port`; `default_port` when no port is written.
    pub fn parse(text: &str, default_port: u16) -> Result<PeerTarget, String> {
        let shown = text;
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("expected [address]:port, got {shown:?}"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(format!("expected [address]:port, got {shown:?}")),
            }
        } else if text.parse::<std::net::Ipv6Addr>().is_ok() {
            (text, None)
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("expected host:port with a port from 1 to 65535, got {shown:?}"))?,
        };
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        let is_name = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !is_ip && !is_name {
            return Err(format!("expected an IP address or a DNS name, got {shown:?}"));
        }
        Ok(PeerTarget {
            text: text.to_owned(),
            host: host.to_owned(),
            port,
        })
    }
}

/// `[fleet]` as written (see [`Fleet`]'s fields for each key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FleetKeys {
    /// [`Fleet::peers`].
    peers: PeersKey,
    /// [`Fleet::panic_threshold`].
    #[serde(default = "default_panic_threshold")]
    panic_threshold: f64,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a DNS name such as \"api-gateway-peers\" or a list of \"host:port\""
)]
enum PeersKey {
    One(String),
    Many(Vec<String>),
}

/// How many entries `fleet.peers` may list.
pub const PEERS_LISTED_MAX: usize = 256;

impl FleetKeys {
    /// Parses the peers and takes the own address: `pod_ip` (from `$POD_IP`) or `listen`'s.
    pub(crate) fn resolve(self, listen: SocketAddr, pod_ip: Option<&str>) -> Result<Fleet, Invalid> {
        let port = listen.port();
        let peers = match self.peers {
            PeersKey::One(text) => {
                Peers::Name(PeerTarget::parse(&text, port).map_err(|m| Invalid::new("fleet.peers", m))?)
            }
            PeersKey::Many(list) => {
                if list.is_empty() || list.len() > PEERS_LISTED_MAX {
                    return Err(Invalid::new(
                        "fleet.peers",
                        format!("must list 1 to {PEERS_LISTED_MAX} peers, got {}", list.len()),
                    ));
                }
                let parsed: Result<Vec<PeerTarget>, Invalid> = list
                    .iter()
                    .enumerate()
                    .map(|(i, text)| {
                        PeerTarget::parse(text, port).map_err(|m| Invalid::new(format!("fleet.peers[{i}]"), m))
                    })
                    .collect();
                Peers::List(parsed?)
            }
        };
        let (own_ip, own_ip_source) = match pod_ip.map(str::trim).filter(|ip| !ip.is_empty()) {
            Some(text) => match text.parse::<std::net::IpAddr>() {
                Ok(ip) => (Some(ip), POD_IP),
                Err(_) => {
                    return Err(Invalid::new(
                        POD_IP,
                        format!("must be this pod's IP address (the downward API's status.podIP), got {text:?}"),
                    ));
                }
            },
            None if listen.ip().is_unspecified() => (None, "none"),
            None => (Some(listen.ip()), "listen"),
        };
        let fleet = Fleet {
            peers,
            panic_threshold: self.panic_threshold,
            own_ip,
            own_ip_source,
            default_port: port,
        };
        fleet.validate()?;
        Ok(fleet)
    }
}

impl Fleet {
    pub fn validate(&self) -> Result<(), Invalid> {
        ratio("fleet.panic_threshold", self.panic_threshold)
    }
}

fn default_panic_threshold() -> f64 {
    0.5
}
