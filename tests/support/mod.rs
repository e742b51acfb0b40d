//! Shared support for the black-box integration tests in `tests/*.rs`.
//!
//! Every test file does `mod support;` and uses what it needs:
//!
//! - [`postgres::PgServer`]: an ephemeral PostgreSQL cluster per test (faults: stop, kill, restart);
//!   [`pg_standby::Replication`]: a streaming standby of one (`pg_basebackup -R`), promoted, paused;
//!   [`pg_client_cert::ClientCerts`]: one that requires client certificates;
//!   [`pg_scenarios`]: lock holders, blocked sessions, connection limits filled, secret literals;
//! - [`pgbouncer::PgBouncer`]: Debian's PgBouncer in front of a cluster (admin console, pools, stop);
//! - [`http::FakeServer`]: real HTTP servers on 127.0.0.1 for fake upstreams, gateways, auth services,
//!   and a server that accepts connections and never answers;
//! - [`vigil::Vigil`]: the built `vigil` binary, running, with its logs captured; [`vigil::run_cli`] for
//!   one-shot commands;
//! - [`gateways`]: real HAProxy 2.6 and Caddy 2.6 (Debian) in front of a test backend, and traffic through them;
//! - [`kube::FakeKube`]: a fake Kubernetes API server (HTTPS, list/watch, metrics, Events), schema-checked;
//! - [`client`]: a tiny blocking HTTP/1.1 client on `std::net::TcpStream`;
//! - [`exposition::sample`]: one sample of `/metrics`, labels in any order;
//! - [`hosts::HostsEntry`]: a name with several loopback addresses in `/etc/hosts` (root only);
//! - [`netns::Netns`]: a network namespace of the test's own, with a veth pair, processes run in it and
//!   its own resolv.conf (root only);
//! - [`wait_until`]: the one way tests wait for something (no sleeps), and [`free_port`].
//!
//! Not every test uses every helper, hence the module-wide `allow(dead_code)`.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod exposition;
pub mod gateways;
pub mod grpc_peer;
pub mod hosts;
pub mod http;
pub mod kube;
pub mod netns;
pub mod pg_client_cert;
pub mod pg_scenarios;
pub mod pg_standby;
pub mod pgbouncer;
pub mod postgres;
pub mod tls;
pub mod vigil;

pub use client::HttpResponse;
pub use http::{FakeServer, Request, Response};
pub use postgres::PgServer;
pub use vigil::{Vigil, run_cli};

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns true; panics naming `what` when `deadline` has passed.
///
/// `f` is always called at least once, and once more after the deadline before giving up, so a
/// slow poll does not fail spuriously.
#[track_caller]
pub fn wait_until(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= end {
            if f() {
                return;
            }
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like [`wait_until`], but returns whether `f` became true instead of panicking.
pub fn poll_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return f();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Binds 127.0.0.1:0, reads the port the kernel chose and closes the listener. Another process can
/// take the port between this call and the moment the caller binds it (a small race, in practice
/// rare because the kernel hands out ephemeral ports round-robin); the starters in this module retry
/// with a new port when the bind fails.
///
/// A port is handed out at most once per test binary: the kernel may give the same free port to
/// two tests running side by side, and two agents on one port answer each other's `/livez`.
pub fn free_port() -> u16 {
    free_port_on(&[Ipv4Addr::LOCALHOST])
}

/// A port free on every one of `ips` a moment ago (the replicas of a fleet on 127.0.0.2, .3, …
/// share one), handed out at most once per test binary as [`free_port`]'s are.
pub fn free_port_on(ips: &[Ipv4Addr]) -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        let first = ips.first().copied().unwrap_or(Ipv4Addr::LOCALHOST);
        let listener =
            TcpListener::bind((first, 0)).unwrap_or_else(|e| panic!("bind {first}:0 to find a free port: {e}"));
        let port = listener.local_addr().expect("local_addr of a bound listener").port();
        drop(listener);
        let free_on_all = ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok());
        if free_on_all && handed_out.insert(port) {
            return port;
        }
    }
    panic!("no port free on all of {ips:?} that this test binary has not handed out already in 1000 tries");
}

/// An address on 127.0.0.1 where nothing listens: connecting to it is refused.
pub fn refused_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// Runs `promtool check metrics` on an exposition; panics with promtool's complaint.
#[track_caller]
pub fn assert_promtool_accepts(metrics: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let output = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("piped stdin").write_all(metrics.as_bytes())?;
            child.wait_with_output()
        })
        .expect("promtool must be installed (.ci/deps.sh installs Debian's prometheus package)");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
