//! The other replicas: what `fleet.peers` resolves to (this replica left out), and asking one of
//! them about a check.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use super::decide::Answer;
use crate::config::Fleet as FleetConfig;
use crate::core::url::HttpUrl;
use crate::net::http::ProbeRequest;
use crate::net::tls::HttpClient;

/// How much of a peer's answer is read: `/readyz/NAME` is one line.
const ANSWER_LIMIT: usize = 1024;

/// What the peers resolved to last.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub at: Option<SystemTime>,
    pub peers: Vec<SocketAddr>,
    /// Entries that did not resolve, and why.
    pub errors: Vec<String>,
    /// Addresses left out as this replica's own.
    pub own_left_out: usize,
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
}

/// This replica's own address as peers see it: the own IP at vigil's port.
pub(super) fn own_address(config: &FleetConfig) -> Option<SocketAddr> {
    config.own_ip.map(|ip| SocketAddr::new(ip, config.default_port))
}

/// Resolves every entry of `fleet.peers`, all at once (each cut at `deadline`, so the whole
/// resolution fits in it), this replica left out.
pub(super) async fn resolve(config: &FleetConfig, deadline: Duration) -> Resolution {
    let lookups = config.peers.targets().iter().map(|target| async move {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, target.port)]);
        }
        let lookup = crate::net::dns::lookup(target.host.as_str(), target.port);
        match tokio::time::timeout(deadline, lookup).await {
            Ok(Ok(answer)) if answer.addresses.is_empty() => Err(format!("{} resolves to no address", target.host)),
            Ok(Ok(answer)) => Ok(answer.addresses),
            Ok(Err(error)) => Err(format!("DNS lookup of {} failed: {error}", target.host)),
            Err(_) => Err(format!(
                "DNS lookup of {} timed out after {}",
                target.host,
                crate::core::fmt::duration(deadline)
            )),
        }
    });
    let mut found: Vec<SocketAddr> = Vec::new();
    let mut errors = Vec::new();
    for result in futures_util::future::join_all(lookups).await {
        match result {
            Ok(addresses) => found.extend(addresses),
            Err(error) => errors.push(error),
        }
    }
    found.sort();
    found.dedup();
    let before = found.len();
    let own = own_address(config);
    found.retain(|addr| Some(*addr) != own);
    Resolution {
        at: Some(SystemTime::now()),
        own_left_out: before - found.len(),
        peers: found,
        errors,
    }
}

/// Asks `peer` about `check` (`GET /readyz/<check>`) within `deadline`: 200 passes there, 503
/// fails there, anything else is unknown.
pub(super) async fn ask(client: &HttpClient, peer: SocketAddr, check: &str, deadline: Duration) -> Answer {
    let path: String = percent_encoding::utf8_percent_encode(check, percent_encoding::NON_ALPHANUMERIC).collect();
    let url = match HttpUrl::parse(&format!("http://{peer}/readyz/{path}")) {
        Ok(url) => url,
        Err(error) => return Answer::Unknown(error),
    };
    let request = ProbeRequest::get(&url, []);
    match client.probe(&request, deadline, deadline, ANSWER_LIMIT).await {
        Ok(response) if response.status == 200 => Answer::Passes,
        Ok(response) if response.status == 503 => Answer::Fails,
        Ok(response) => Answer::Unknown(format!("answered {}", response.status)),
        Err(failure) => Answer::Unknown(failure.error.to_string()),
    }
}
