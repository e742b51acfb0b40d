//! Real API gateways from Debian, on 127.0.0.1, in front of a test backend, for the traffic
//! tests: HAProxy 2.6 with its built-in Prometheus exporter (USE_PROMEX) and Caddy 2.6 with its
//! request metrics (`servers { metrics }`).
//!
//! - [`Backend`]: a [`FakeServer`] answering by path: the last segment is the status
//!   (`/orders/500` answers 500, `/search/limited` 429), `?delay_ms=N` answers after N ms.
//! - [`Haproxy`]: frontend `public` routes `/orders*` to backend `orders`, `/users*` to `users`,
//!   the rest to `search`, and denies `/search/limited` with 429 itself (as a stick-table rate
//!   limit would); frontend `stats` serves `/metrics` with `prometheus-exporter`.
//! - [`Caddy`]: from a Caddyfile (`handle /orders*` … each `reverse_proxy` to the backend,
//!   metrics at the admin endpoint) or from Caddy's JSON config with named servers.
//! - [`send`]: real requests through a gateway, each answer's status checked, so that the counts
//!   a test expects are the counts the gateway served.
//!
//! As root the gateways run as `nobody` through `setpriv` (their temporary directory is made
//! readable and, for Caddy's storage, owned by that user). Ports come from [`free_port`]; a
//! start that loses the port to another process is retried with new ones.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::client;
use super::http::{FakeServer, Response};
use super::{free_port, poll_until};

/// How long a gateway may take to answer its first `/metrics`.
pub const START_DEADLINE: Duration = Duration::from_secs(15);

/// The test backend behind the gateways; see the module docs.
pub struct Backend {
    pub server: FakeServer,
}

impl Backend {
    pub fn start() -> Backend {
        let server = FakeServer::start(|request| {
            let last = request.path.rsplit('/').next().unwrap_or("");
            let status = match last {
                "limited" => 429,
                digits => digits.parse().ok().filter(|s| (200..600).contains(s)).unwrap_or(200),
            };
            let delay = request
                .query
                .as_deref()
                .and_then(|q| q.strip_prefix("delay_ms="))
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis);
            let response = Response::text(status, format!("backend: {status} for {}", request.path));
            match delay {
                Some(delay) => response.with_delay(delay),
                None => response,
            }
        });
        Backend { server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

/// Some identical requests through a gateway.
#[derive(Debug, Clone)]
pub struct Send {
    /// Path and query, e.g. `/orders/500` or `/orders/200?delay_ms=300`.
    pub path: String,
    /// The status the gateway must answer.
    pub status: u16,
    pub count: usize,
    /// Sent all at once, one thread each (for slow requests); else one after the other.
    pub concurrent: bool,
}

impl Send {
    pub fn new(path: &str, status: u16, count: usize) -> Send {
        Send {
            path: path.to_owned(),
            status,
            count,
            concurrent: false,
        }
    }

    pub fn concurrently(mut self) -> Send {
        self.concurrent = true;
        self
    }
}

/// Sends every request of `plan` to `addr`, in order, and panics on any answer whose status is
/// not the one planned (a gateway that routes wrongly would make every expected share wrong).
/// Returns how many requests were sent.
#[track_caller]
pub fn send(addr: SocketAddr, plan: &[Send]) -> usize {
    let mut sent = 0;
    for step in plan {
        let one =
            |path: &str| -> io::Result<u16> { client::try_request(addr, "GET", path, &[], &[]).map(|r| r.status) };
        let statuses: Vec<io::Result<u16>> = if step.concurrent {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..step.count).map(|_| s.spawn(|| one(&step.path))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("sender panicked"))))
                    .collect()
            })
        } else {
            (0..step.count).map(|_| one(&step.path)).collect()
        };
        for status in statuses {
            match status {
                Ok(status) if status == step.status => sent += 1,
                other => panic!(
                    "GET http://{addr}{}: expected {}, got {other:?}",
                    step.path, step.status
                ),
            }
        }
    }
    sent
}

/// A gateway's command: as `nobody` when the tests run as root.
fn command(program: &str) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// A gateway process; killed on drop.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(mut cmd: Command, dir: &Path, log_name: &str) -> io::Result<Process> {
        let log = dir.join(log_name);
        let out = fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = cmd
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()?;
        Ok(Process { child, log })
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until `GET url_path` on `addr` answers 200; `Err(log)` when the process exits or
    /// the deadline passes.
    fn wait_ready(&mut self, addr: SocketAddr, path: &str) -> Result<(), String> {
        let mut exited = false;
        let ready = poll_until(START_DEADLINE, || {
            exited = self.exited();
            !exited && client::try_request(addr, "GET", path, &[], &[]).is_ok_and(|r| r.status == 200)
        });
        if ready {
            Ok(())
        } else {
            Err(format!(
                "{} (GET http://{addr}{path})\n--- log ---\n{}",
                if exited { "exited" } else { "not ready in time" },
                self.log()
            ))
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory the gateway's user can read (and, with `owned`, write).
fn gateway_dir(prefix: &str, owned: bool) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("gateway: create temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("gateway: chmod temp dir");
    if owned && running_as_root() {
        let out = Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(dir.path())
            .output()
            .expect("gateway: run chown");
        assert!(
            out.status.success(),
            "chown nobody: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

fn write_readable(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("gateway: write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("gateway: chmod config");
}

/// HAProxy 2.6 in front of a [`Backend`]; see the module docs.
pub struct Haproxy {
    process: Process,
    /// Frontend `public`: the traffic.
    pub addr: SocketAddr,
    /// Frontend `stats`: `/metrics`.
    pub stats_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    #[track_caller]
    pub fn start(backend: SocketAddr) -> Haproxy {
        let mut last = String::new();
        for _ in 0..3 {
            match Haproxy::try_start(backend) {
                Ok(haproxy) => return haproxy,
                Err(log) if log.contains("cannot bind") || log.contains("Address already in use") => last = log,
                Err(log) => panic!("HAProxy did not start: {log}"),
            }
        }
        panic!("HAProxy did not start (ports taken three times): {last}")
    }

    fn try_start(backend: SocketAddr) -> Result<Haproxy, String> {
        let dir = gateway_dir("vigil-haproxy-", false);
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let stats_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = format!(
            "global\n  maxconn 512\n\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\n\
             frontend public\n  bind {addr}\n\
             \x20 http-request deny deny_status 429 if {{ path_beg /search/limited }}\n\
             \x20 use_backend orders if {{ path_beg /orders }}\n\
             \x20 use_backend users if {{ path_beg /users }}\n\
             \x20 default_backend search\n\n\
             frontend stats\n  bind {stats_addr}\n\
             \x20 http-request use-service prometheus-exporter if {{ path /metrics }}\n\n\
             backend orders\n  server orders1 {backend}\n\n\
             backend users\n  server users1 {backend}\n\n\
             backend search\n  server search1 {backend}\n"
        );
        let path = dir.path().join("haproxy.cfg");
        write_readable(&path, &config);
        // -db: stay in the foreground, so that the child is HAProxy itself.
        let mut cmd = command("haproxy");
        cmd.arg("-db").arg("-f").arg(&path);
        let mut process = Process::spawn(cmd, dir.path(), "haproxy.log")
            .map_err(|e| format!("cannot run haproxy (Debian's haproxy package, .ci/deps.sh): {e}"))?;
        process.wait_ready(stats_addr, "/metrics")?;
        Ok(Haproxy {
            process,
            addr,
            stats_addr,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:<stats>/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.stats_addr)
    }

    /// Scrapes `/metrics` (which the `stats` frontend counts as one more 2xx).
    pub fn metrics(&self) -> String {
        client::get(self.stats_addr, "/metrics").body
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Caddy 2.6 in front of a [`Backend`]; see the module docs.
pub struct Caddy {
    process: Process,
    /// The site's address (the first server's, from JSON).
    pub addr: SocketAddr,
    /// Every server's address by name (JSON), or `srv0` for the Caddyfile's one site.
    pub servers: Vec<(String, SocketAddr)>,
    /// The admin endpoint, which serves `/metrics` (not counted as traffic).
    pub admin_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Caddy {
    /// One site from a Caddyfile: `handle /orders*`, `/users*`, `/search*`, each
    /// `reverse_proxy` to `backend`; `servers { metrics }` in the global options.
    #[track_caller]
    pub fn start(backend: SocketAddr) -> Caddy {
        Caddy::retry(|| {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let caddyfile = format!(
                "{{\n\tadmin {admin}\n\tauto_https off\n\tservers {{\n\t\tmetrics\n\t}}\n}}\n\n\
                 http://{addr} {{\n\tbind 127.0.0.1\n\
                 \thandle /orders* {{\n\t\treverse_proxy {backend}\n\t}}\n\
                 \thandle /users* {{\n\t\treverse_proxy {backend}\n\t}}\n\
                 \thandle /search* {{\n\t\treverse_proxy {backend}\n\t}}\n}}\n"
            );
            Caddy::try_start(
                "Caddyfile",
                &caddyfile,
                &["--adapter", "caddyfile"],
                admin,
                vec![("srv0".to_owned(), addr)],
            )
        })
    }

    /// One server per name, each on its own port, all `reverse_proxy` to `backend`, with
    /// metrics: Caddy's JSON config is where servers get names (its `server` label).
    #[track_caller]
    pub fn start_named(backend: SocketAddr, names: &[&str]) -> Caddy {
        Caddy::retry(|| {
            let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let servers: Vec<(String, SocketAddr)> = names
                .iter()
                .map(|n| ((*n).to_owned(), SocketAddr::from(([127, 0, 0, 1], free_port()))))
                .collect();
            let servers_json: serde_json::Map<String, serde_json::Value> = servers
                .iter()
                .map(|(name, addr)| {
                    let server = serde_json::json!({
                        "listen": [addr.to_string()],
                        "routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": backend.to_string()}]}]}],
                        "automatic_https": {"disable": true},
                        "metrics": {},
                    });
                    (name.clone(), server)
                })
                .collect();
            let config = serde_json::json!({
                "admin": {"listen": admin.to_string()},
                "apps": {"http": {"servers": servers_json}},
            });
            Caddy::try_start("caddy.json", &config.to_string(), &[], admin, servers)
        })
    }

    #[track_caller]
    fn retry(mut start: impl FnMut() -> Result<Caddy, String>) -> Caddy {
        let mut last = String::new();
        for _ in 0..3 {
            match start() {
                Ok(caddy) => return caddy,
                Err(log) if log.contains("address already in use") => last = log,
                Err(log) => panic!("Caddy did not start: {log}"),
            }
        }
        panic!("Caddy did not start (ports taken three times): {last}")
    }

    fn try_start(
        file: &str,
        config: &str,
        args: &[&str],
        admin_addr: SocketAddr,
        servers: Vec<(String, SocketAddr)>,
    ) -> Result<Caddy, String> {
        // Caddy writes its storage and autosaved config under XDG_*: a directory its user owns.
        let dir = gateway_dir("vigil-caddy-", true);
        let path = dir.path().join(file);
        write_readable(&path, config);
        let mut cmd = command("caddy");
        cmd.arg("run").arg("--config").arg(&path).args(args);
        for var in ["HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"] {
            cmd.env(var, dir.path());
        }
        let mut process = Process::spawn(cmd, dir.path(), "caddy.log")
            .map_err(|e| format!("cannot run caddy (Debian's caddy package, .ci/deps.sh): {e}"))?;
        process.wait_ready(admin_addr, "/metrics")?;
        // The sites listen once the config is loaded, which the admin endpoint precedes.
        for (name, addr) in &servers {
            if !poll_until(START_DEADLINE, || std::net::TcpStream::connect(addr).is_ok()) {
                return Err(format!(
                    "server {name} not listening on {addr}\n--- log ---\n{}",
                    process.log()
                ));
            }
        }
        let addr = servers.first().map(|(_, a)| *a).ok_or("no server")?;
        Ok(Caddy {
            process,
            addr,
            servers,
            admin_addr,
            _dir: dir,
        })
    }

    /// The address of the server named `name`.
    #[track_caller]
    pub fn server(&self, name: &str) -> SocketAddr {
        self.servers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no Caddy server {name}"))
    }

    /// `http://127.0.0.1:<admin>/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.admin_addr)
    }

    pub fn metrics(&self) -> String {
        client::get(self.admin_addr, "/metrics").body
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// The sum of the samples of `name` whose labels include every pair of `with` (a test's own
/// reading of a gateway's exposition, to check the harness: plain text, no vigil code).
pub fn sum_samples(exposition: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, l)) => (m, l.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name
                && with
                    .iter()
                    .all(|(k, v)| labels.split(',').any(|pair| pair == format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

fn running_as_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}
