//! This process among the replicas: a random id, sent as `Vigil-Instance` on every response.
//!
//! The fleet counts only answers that carry the header (a mesh sidecar's or a proxy's "503 no
//! healthy upstream" for a peer that is down says nothing about the check there), and leaves
//! out an answer that carries this process's own id: a replica reached through an address that
//! was not recognised as its own (`127.0.0.1` while `POD_IP` is set, a dual-stack name's IPv6
//! address, a wildcard `listen`) never counts itself.

use std::sync::LazyLock;

use http::{HeaderName, HeaderValue};

/// The header's name.
pub(crate) const HEADER: HeaderName = HeaderName::from_static("vigil-instance");

/// 64 random bits as 16 hexadecimal digits, drawn once per process: a restart is a new
/// instance.
static ID: LazyLock<String> = LazyLock::new(|| {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        // No system randomness (it does not happen on Linux): fastrand's seed still differs
        // from process to process.
        bytes = fastrand::u64(..).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
});

/// This process's id.
pub(crate) fn id() -> &'static str {
    ID.as_str()
}

/// This process's id as a header value.
pub(crate) fn value() -> HeaderValue {
    // Hexadecimal digits are a valid header value.
    HeaderValue::from_str(id()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_stable_within_the_process_and_looks_random() {
        assert_eq!(id(), id());
        assert_eq!(id().len(), 16);
        assert!(id().chars().all(|c| c.is_ascii_hexdigit()), "{}", id());
        assert_eq!(value().to_str().unwrap(), id());
    }
}
