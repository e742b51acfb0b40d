//! Names added to `/etc/hosts` for one test (root only), so that a name resolves to several
//! loopback addresses without a DNS server.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Tests of one binary run in parallel: each edit of the file is whole under this lock, and each
/// entry takes out only its own lines.
static EDITING: Mutex<()> = Mutex::new(());
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Names in `/etc/hosts` for the test (root only), removed again on drop.
pub struct HostsEntry {
    pub name: String,
}

impl HostsEntry {
    pub fn add(addresses: &[&str]) -> Option<HostsEntry> {
        let _editing = EDITING.lock().unwrap_or_else(|e| e.into_inner());
        let original = std::fs::read_to_string("/etc/hosts").ok()?;
        let name = format!(
            "vigil-{}-{}-{}.test",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            addresses.len()
        );
        let mut text = original;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        for address in addresses {
            text.push_str(&format!("{address} {name}\n"));
        }
        std::fs::write("/etc/hosts", text).ok()?;
        Some(HostsEntry { name })
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        let _editing = EDITING.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(text) = std::fs::read_to_string("/etc/hosts") else {
            return;
        };
        let suffix = format!(" {}", self.name);
        let kept: String = text
            .lines()
            .filter(|line| !line.ends_with(&suffix))
            .map(|line| format!("{line}\n"))
            .collect();
        let _ = std::fs::write("/etc/hosts", kept);
    }
}
