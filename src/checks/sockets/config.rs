//! `[sockets]`: the check named `sockets`.

use serde::{Deserialize, Serialize};

use crate::config::Invalid;

/// The most ports `ports` and `listen_ports` may each list: every watched port is a dozen
/// series (one per TCP state), and a port list is a handful in practice (the database, a
/// cache, the gateway's own ports).
pub(crate) const MAX_PORTS: usize = 32;

/// `[sockets]`: the check named `sockets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Sockets {
    /// The remote ports whose connections are counted by state (the runbook's `netstat -an |
    /// grep :5432`). Default: the ports of `[postgres]`'s URL (none without `[postgres]`, or
    /// when its URL names only a Unix socket); at most 32 ports, each 1 to 65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    /// The gateway's listening ports, whose accept queues are read. Default none; at most 32
    /// ports, each 1 to 65535.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen_ports: Vec<u16>,
    /// CLOSE_WAIT connections to one watched port at which the check warns (the gateway does
    /// not close connections the server closed: a leak). Default 50; 1 to 1,000,000.
    #[serde(default = "default_close_wait_warn")]
    pub close_wait_warn: u64,
}

impl Sockets {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        ports("sockets.ports", self.ports.as_deref().unwrap_or_default())?;
        ports("sockets.listen_ports", &self.listen_ports)?;
        if !(1..=1_000_000).contains(&self.close_wait_warn) {
            return Err(Invalid::new(
                "sockets.close_wait_warn",
                format!("must be between 1 and 1000000, got {}", self.close_wait_warn),
            ));
        }
        Ok(())
    }

    /// The remote ports watched: `ports` as completed at load (see `Kind::complete`).
    pub(crate) fn watched(&self) -> &[u16] {
        self.ports.as_deref().unwrap_or_default()
    }
}

fn ports(key: &str, ports: &[u16]) -> Result<(), Invalid> {
    if ports.len() > MAX_PORTS {
        return Err(Invalid::new(
            key,
            format!("must list at most {MAX_PORTS} ports, got {}", ports.len()),
        ));
    }
    if ports.contains(&0) {
        return Err(Invalid::new(key, "ports must be between 1 and 65535, got 0"));
    }
    Ok(())
}

fn default_close_wait_warn() -> u64 {
    50
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(toml: &str) -> Sockets {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn defaults_and_limits() {
        let defaults = keys("");
        assert_eq!(defaults.close_wait_warn, 50);
        assert!(defaults.ports.is_none() && defaults.listen_ports.is_empty());
        assert!(defaults.validate().is_ok());
        let zero = keys("ports = [5432, 0]").validate().unwrap_err().to_string();
        assert!(zero.starts_with("sockets.ports: "), "{zero}");
        let many = format!(
            "listen_ports = [{}]",
            (1..=33).map(|p| p.to_string()).collect::<Vec<_>>().join(",")
        );
        let error = keys(&many).validate().unwrap_err().to_string();
        assert!(
            error.starts_with("sockets.listen_ports: must list at most 32"),
            "{error}"
        );
        let error = keys("close_wait_warn = 0").validate().unwrap_err().to_string();
        assert!(error.starts_with("sockets.close_wait_warn: "), "{error}");
    }
}
