//! Names added to `/etc/hosts` for one test (root only), so that a name resolves to several
//! loopback addresses without a DNS server.

/// Names in `/etc/hosts` for the test (root only), removed again on drop.
pub struct HostsEntry {
    pub name: String,
    original: String,
}

impl HostsEntry {
    pub fn add(addresses: &[&str]) -> Option<HostsEntry> {
        let original = std::fs::read_to_string("/etc/hosts").ok()?;
        let name = format!("vigil-{}-{}.test", std::process::id(), addresses.len());
        let mut text = original.clone();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        for address in addresses {
            text.push_str(&format!("{address} {name}\n"));
        }
        std::fs::write("/etc/hosts", text).ok()?;
        Some(HostsEntry { name, original })
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        let _ = std::fs::write("/etc/hosts", &self.original);
    }
}
