//! A network namespace made by one test (root only): a peer that is not on vigil's loopback, a
//! vigil whose `/proc/net/*` are the test's alone, or a resolver of the test's choosing.
//!
//! Test binaries run in parallel, and each test in a binary on its own thread: a namespace is
//! named `vigil-<prefix>-<pid>-<n>` (`n` counts this process's namespaces), its veth ends
//! `v<pid>-<n>h`/`n`, and each caller picks its own `10.<net>.0.0/16` so that no two binaries'
//! veth subnets ever meet on the host.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// How many namespaces this process has made: tells apart two made by the tests of one binary.
static MADE: AtomicU32 = AtomicU32::new(0);

/// Network namespaces need root (CAP_SYS_ADMIN); tests that need one skip, saying why, otherwise.
pub fn must_be_root() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run id: {e}"))?;
    match String::from_utf8_lossy(&uid.stdout).trim() {
        "0" => Ok(()),
        uid => Err(format!("not root (uid {uid}): making a network namespace needs root")),
    }
}

/// A veth pair from the host into the namespace: `10.<net>.<k>.1` on the host's end,
/// `10.<net>.<k>.2` on the namespace's.
struct Veth {
    host_link: String,
    ns_link: String,
    net: u8,
    k: u8,
}

/// A network namespace with its loopback up; deleted on drop, with every process started in it
/// through [`Netns::spawn`], its veth pair and its `/etc/netns/<name>`.
pub struct Netns {
    name: String,
    /// `n` of the name, which also picks the veth subnet.
    n: u32,
    veth: Option<Veth>,
    etc_written: bool,
    children: Vec<Child>,
}

impl Netns {
    /// `vigil-<prefix>-<pid>-<n>`, loopback up, no way out; `Err`, with the reason, when this
    /// machine cannot make one (not root, no `ip netns`).
    pub fn create(prefix: &str) -> Result<Netns, String> {
        must_be_root()?;
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let name = format!("vigil-{prefix}-{}-{n}", std::process::id());
        run_ip(&["netns", "add", &name])?;
        let netns = Netns {
            name,
            n,
            veth: None,
            etc_written: false,
            children: Vec::new(),
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Adds a veth pair: [`Netns::host_ip`] on the host, [`Netns::inside_ip`] in the namespace,
    /// both in `10.<net>.<k>.0/24`, where `k` is from the process id (two runs of one test binary,
    /// in two checkouts, rarely meet) and the namespace's `n` (two tests of one run never do).
    pub fn with_veth(mut self, net: u8) -> Result<Netns, String> {
        let pid = std::process::id();
        let k = ((pid + self.n) % 250) as u8 + 1;
        let veth = Veth {
            host_link: format!("v{pid}-{}h", self.n),
            ns_link: format!("v{pid}-{}n", self.n),
            net,
            k,
        };
        run_ip(&[
            "link",
            "add",
            &veth.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &veth.ns_link,
        ])?;
        let (host_link, ns_link) = (veth.host_link.clone(), veth.ns_link.clone());
        // From here on, drop deletes the pair whatever fails next.
        self.veth = Some(veth);
        run_ip(&["link", "set", &ns_link, "netns", &self.name])?;
        run_ip(&["addr", "add", &format!("{}/24", self.host_ip()), "dev", &host_link])?;
        run_ip(&["link", "set", &host_link, "up"])?;
        self.ip(&["addr", "add", &format!("{}/24", self.inside_ip()), "dev", &ns_link])?;
        self.ip(&["link", "set", &ns_link, "up"])?;
        Ok(self)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `10.<net>.<k>.<last>`: an address in the veth's subnet.
    #[track_caller]
    pub fn subnet_ip(&self, last: u8) -> Ipv4Addr {
        let veth = self.veth.as_ref().expect("a namespace made with_veth");
        Ipv4Addr::new(10, veth.net, veth.k, last)
    }

    /// The host's end of the veth: where a process in the namespace reaches the host.
    #[track_caller]
    pub fn host_ip(&self) -> Ipv4Addr {
        self.subnet_ip(1)
    }

    /// The namespace's end of the veth: where the host reaches a process in the namespace.
    #[track_caller]
    pub fn inside_ip(&self) -> Ipv4Addr {
        self.subnet_ip(2)
    }

    /// The name of the veth's end inside the namespace, for `ip -n <name> … dev <it>`.
    #[track_caller]
    pub fn inside_link(&self) -> &str {
        &self.veth.as_ref().expect("a namespace made with_veth").ns_link
    }

    /// `ip -n <name> args…` inside the namespace; `Err` with ip's complaint.
    pub fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// Makes processes started in the namespace read `text` as `/etc/resolv.conf` (`ip netns
    /// exec` mounts `/etc/netns/<name>/resolv.conf` over the real one).
    pub fn set_resolv_conf(&mut self, text: &str) -> Result<(), String> {
        let etc = format!("/etc/netns/{}", self.name);
        std::fs::create_dir_all(&etc).map_err(|e| format!("cannot create {etc}: {e}"))?;
        self.etc_written = true;
        std::fs::write(format!("{etc}/resolv.conf"), text).map_err(|e| format!("cannot write {etc}/resolv.conf: {e}"))
    }

    /// `program`, to be run inside the namespace; as `support::vigil` does, the parent's `VIGIL_*`,
    /// `DATABASE_URL` and `RUST_LOG` do not reach it, so only what the test means does.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("VIGIL_") || key == "DATABASE_URL" || key == "RUST_LOG" {
                command.env_remove(key.as_ref());
            }
        }
        command
    }

    /// Starts `command` (from [`Netns::command`]); the child is killed when the namespace is
    /// dropped, or earlier with [`Netns::kill`]. Returns its index for [`Netns::child`].
    #[track_caller]
    pub fn spawn(&mut self, mut command: Command) -> usize {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?} in netns {}: {e}", self.name));
        self.children.push(child);
        self.children.len() - 1
    }

    pub fn child(&mut self, index: usize) -> &mut Child {
        &mut self.children[index]
    }

    pub fn kill(&mut self, index: usize) {
        let child = &mut self.children[index];
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        // Deleting the namespace deletes the veth pair; this is for a half-made one.
        if let Some(veth) = &self.veth {
            let _ = Command::new("ip")
                .args(["link", "del", &veth.host_link])
                .stderr(Stdio::null())
                .status();
        }
        if self.etc_written {
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
        }
    }
}

/// `ip args…`; `Err` with ip's complaint.
fn run_ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
