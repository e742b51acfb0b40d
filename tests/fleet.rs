//! `[fleet]` with real processes: several vigil replicas on 127.0.0.2 … 127.0.0.6, the same
//! port, each listing the others as peers, over one real PostgreSQL.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::{PgServer, Vigil, free_port_on, refused_addr, wait_until};

const PASSWORD: &str = "gw-fleet-Pa55";
const INTERVAL: Duration = Duration::from_millis(1000);
const PANIC_LINE: &str =
    "[+]fleet warn: panic: postgres fails on 5 of 5 replicas (threshold 50%), staying in the Service";

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// `count` replicas on 127.0.0.2 …, each with `[fleet] peers` listing the others; replica `i`
/// watches the database at `url(i)` and its config ends with `extra`.
fn fleet(count: u8, url: impl Fn(u8) -> String, extra: &str) -> Vec<Vigil> {
    let ips: Vec<Ipv4Addr> = (2..2 + count).map(ip).collect();
    let port = free_port_on(&ips);
    ips.iter()
        .enumerate()
        .map(|(i, own)| {
            let peers: Vec<String> = ips
                .iter()
                .filter(|p| *p != own)
                .map(|p| format!("\"{p}:{port}\""))
                .collect();
            let config = format!(
                "[defaults]\ninterval = \"1s\"\ntimeout = \"900ms\"\n[system]\nenabled = false\n\
                 [postgres]\nurl = \"{}\"\n{extra}\n[fleet]\npeers = [{}]\n",
                url(i as u8),
                peers.join(", ")
            );
            Vigil::builder().listen(SocketAddr::from((*own, port))).start(&config)
        })
        .collect()
}

fn readyz(vigil: &Vigil) -> (u16, String) {
    let answer = vigil.get("/readyz?verbose");
    (answer.status, answer.body)
}

fn diag(vigil: &Vigil) -> Json {
    serde_json::from_str(&vigil.get("/diag?format=json").body).expect("/diag is JSON")
}

fn metric(vigil: &Vigil, line_start: &str) -> Option<f64> {
    vigil
        .get("/metrics")
        .body
        .lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// One `/readyz?verbose` answer seen by a sampler.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    status: u16,
    panic: bool,
}

/// Polls every replica's `/readyz?verbose` every 75 ms until stopped.
struct Samplers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    samples: Vec<Arc<Mutex<Vec<Sample>>>>,
}

impl Samplers {
    fn start(replicas: &[Vigil]) -> Samplers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut samples = Vec::new();
        for vigil in replicas {
            let addr = vigil.addr();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (stop, into) = (Arc::clone(&stop), Arc::clone(&seen));
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(answer) = support::client::try_request(addr, "GET", "/readyz?verbose", &[], &[]) {
                        into.lock().unwrap().push(Sample {
                            at: Instant::now(),
                            status: answer.status,
                            panic: answer.body.contains("[+]fleet warn: panic: postgres"),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(75));
                }
            }));
            samples.push(seen);
        }
        Samplers { stop, threads, samples }
    }

    fn finish(self) -> Vec<Vec<Sample>> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        self.samples.into_iter().map(|s| s.lock().unwrap().clone()).collect()
    }
}

#[test]
fn a_database_down_for_every_replica_keeps_every_replica_in_the_service_until_it_is_back() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let replicas = fleet(5, |_| url.clone(), "");
    for vigil in &replicas {
        // The check itself, not /readyz (which a panic at start-up would hold at 200 too).
        vigil.wait_for_status("/readyz/postgres", 200, Duration::from_secs(10));
        wait_until(Duration::from_secs(3), "no panic", || {
            metric(vigil, "vigil_fleet_panic{check=\"postgres\"} ") == Some(0.0)
        });
        assert_eq!(readyz(vigil).0, 200);
        assert_eq!(
            metric(vigil, "vigil_fleet_peers "),
            Some(4.0),
            "the four others, itself left out"
        );
        assert_eq!(metric(vigil, "vigil_fleet_panic{check=\"postgres\"} "), Some(0.0));
    }
    let samplers = Samplers::start(&replicas);

    let killed = Instant::now();
    pg.kill();
    for vigil in &replicas {
        wait_until(
            2 * INTERVAL + Duration::from_millis(500),
            "every replica to hold",
            || {
                let (status, body) = readyz(vigil);
                status == 200 && body.contains(PANIC_LINE)
            },
        );
    }
    let all_holding = killed.elapsed();
    eprintln!("PostgreSQL killed: every replica holding after {all_holding:?}");
    for vigil in &replicas {
        let (status, body) = readyz(vigil);
        assert_eq!(status, 200, "{body}");
        assert!(
            body.starts_with("[-]postgres failed: "),
            "the check's own line stays: {body}"
        );
        assert!(body.contains(PANIC_LINE), "{body}");
        let own = vigil.get("/readyz/postgres");
        assert_eq!(
            own.status, 503,
            "/readyz/postgres answers for the check itself: {}",
            own.body
        );
        assert_eq!(metric(vigil, "vigil_fleet_panic{check=\"postgres\"} "), Some(1.0));
    }
    // A steady outage: three more decisions, still holding everywhere (the samplers watch).
    let consultations = |vigil: &Vigil| diag(vigil)["vigil"]["fleet"]["consultations"].as_u64().unwrap_or(0);
    let so_far = consultations(&replicas[0]);
    wait_until(5 * INTERVAL, "three more decisions", || {
        consultations(&replicas[0]) >= so_far + 3
    });
    for vigil in &replicas {
        assert_eq!(readyz(vigil).0, 200);
    }
    let text = replicas[0].get("/diag").body;
    assert!(text.contains("postgres at "), "{text}");
    assert!(
        text.contains("PANIC, readiness held: fails on 5 of 5 answering replicas"),
        "{text}"
    );

    pg.start_again();
    for vigil in &replicas {
        wait_until(Duration::from_secs(5), "the panic to end on every replica", || {
            let (status, body) = readyz(vigil);
            status == 200 && !body.contains("fleet") && vigil.get("/readyz/postgres").status == 200
        });
    }
    let samples = samplers.finish();

    for (vigil, seen) in replicas.iter().zip(&samples) {
        assert_eq!(metric(vigil, "vigil_fleet_panic{check=\"postgres\"} "), Some(0.0));
        let first_panic = seen
            .iter()
            .position(|s| s.panic)
            .unwrap_or_else(|| panic!("{vigil:?} never showed the panic line"));
        let before = seen[..first_panic].iter().filter(|s| s.status == 503).count();
        let after: Vec<&Sample> = seen[first_panic..].iter().filter(|s| s.status == 503).collect();
        eprintln!(
            "{vigil:?}: {} samples, {before} answers 503 before the first panic decision, first panic {:?} after the kill",
            seen.len(),
            seen[first_panic].at.saturating_duration_since(killed)
        );
        assert!(
            after.is_empty(),
            "{vigil:?}: /readyz 503 after the first decision: {after:?}"
        );
        let logs = vigil.logs();
        assert!(logs.contains("Fleet panic started"), "{logs}");
        assert!(logs.contains("Fleet panic ended"), "{logs}");
        let transitions = diag(vigil)["vigil"]["transitions"].clone();
        let fleet: Vec<&Json> = transitions
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["check"] == "fleet")
            .collect();
        assert!(fleet.len() >= 2, "panic start and end in the timeline: {transitions}");
        assert!(
            fleet
                .iter()
                .any(|t| t["reason"].as_str().unwrap().starts_with("panic: postgres fails on")),
            "{transitions}"
        );
    }
}

#[test]
fn a_replica_with_its_own_wrong_database_url_alone_leaves_the_service() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let wrong = pg.url("gateway", "not-the-password", "gateway");
    // Two of five wrong: 2 of 5 is 40%, below the 50% threshold: their own problem.
    let mut replicas = fleet(5, |i| if i < 2 { wrong.clone() } else { url.clone() }, "");
    for vigil in &replicas[..2] {
        let answer = vigil.wait_for_status("/readyz", 503, Duration::from_secs(10));
        assert!(answer.body.contains("[-]postgres failed: "), "{}", answer.body);
    }
    for vigil in &replicas[2..] {
        vigil.wait_for_status("/readyz/postgres", 200, Duration::from_secs(10));
    }
    // Decided while the others pass: 2 of 5, no panic (a panic at start-up, when every first
    // run may time out, ends within two decisions).
    let decided = |vigil: &Vigil| {
        let fleet = diag(vigil)["vigil"]["fleet"].clone();
        let postgres = &fleet["checks"][0];
        postgres["check"] == "postgres"
            && postgres["panic"] == false
            && (
                postgres["fails"].as_u64(),
                postgres["passes"].as_u64(),
                postgres["answering"].as_u64(),
            ) == (Some(2), Some(3), Some(5))
    };
    for vigil in &replicas[..2] {
        wait_until(Duration::from_secs(6), "a decision of 2 failing of 5, no panic", || {
            decided(vigil)
        });
    }
    for vigil in &replicas[..2] {
        let (status, body) = readyz(vigil);
        assert_eq!(status, 503, "{body}");
        assert!(!body.contains("fleet"), "{body}");
    }
    for vigil in &replicas[2..] {
        let (status, body) = readyz(vigil);
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains("fleet"), "{body}");
        assert_eq!(metric(vigil, "vigil_fleet_panic{check=\"postgres\"} "), Some(0.0));
    }

    // One replica alone with its wrong URL (the other one gone): 1 of 4, still 503.
    drop(replicas.remove(1));
    wait_until(Duration::from_secs(5), "a decision without the stopped replica", || {
        let fleet = diag(&replicas[0])["vigil"]["fleet"].clone();
        fleet["checks"][0]["fails"].as_u64() == Some(1) && fleet["checks"][0]["unknown"].as_u64() == Some(1)
    });
    assert_eq!(readyz(&replicas[0]).0, 503);
    let text = replicas[0].get("/diag").body;
    assert!(
        text.contains("no panic: fails on 1 of 4 answering replicas, 3 passing, 1 unknown (4 peers asked)"),
        "{text}"
    );
    assert!(text.contains("connection refused"), "the stopped peer's answer: {text}");
    for vigil in &replicas[1..] {
        assert_eq!(readyz(vigil).0, 200);
    }
}

#[test]
fn unreachable_peers_mean_no_panic() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let port = free_port_on(&[ip(2)]);
    let wrong_port = refused_addr().port();
    let config = format!(
        "[defaults]\ninterval = \"1s\"\ntimeout = \"900ms\"\n[system]\nenabled = false\n\
         [postgres]\nurl = \"{url}\"\n[fleet]\npeers = [\"127.0.0.3:{wrong_port}\", \"127.0.0.4:{wrong_port}\"]\n"
    );
    let vigil = Vigil::builder().listen(SocketAddr::from((ip(2), port))).start(&config);
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    pg.kill();
    vigil.wait_for_status("/readyz", 503, Duration::from_secs(3));
    wait_until(Duration::from_secs(5), "two consultations", || {
        diag(&vigil)["vigil"]["fleet"]["consultations"].as_u64() >= Some(2)
    });
    let (status, body) = readyz(&vigil);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("[-]postgres failed: ") && !body.contains("fleet"),
        "{body}"
    );
    let fleet = diag(&vigil)["vigil"]["fleet"].clone();
    assert_eq!(fleet["checks"][0]["unknown"].as_u64(), Some(2), "{fleet}");
    assert_eq!(fleet["checks"][0]["answering"].as_u64(), Some(1), "{fleet}");
    assert_eq!(metric(&vigil, "vigil_fleet_panic{check=\"postgres\"} "), Some(0.0));
}

#[test]
fn a_failing_local_check_is_never_held_even_when_it_fails_everywhere() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let refused = refused_addr();
    let gateway = format!("[gateway]\nhealth_url = \"http://{refused}/healthz\"\n");
    let replicas = fleet(3, |_| url.clone(), &gateway);
    for vigil in &replicas {
        let answer = vigil.wait_for_status("/readyz", 503, Duration::from_secs(10));
        assert!(answer.body.contains("[-]gateway failed: "), "{}", answer.body);
    }
    // Several runs later: every replica still out, nobody asked anybody.
    for vigil in &replicas {
        wait_until(6 * INTERVAL, "four runs of the gateway check", || {
            diag(vigil)["vigil"]["checks"]["gateway"]["runs"].as_u64() >= Some(4)
        });
    }
    for vigil in &replicas {
        let (status, body) = readyz(vigil);
        assert_eq!(status, 503, "{body}");
        assert!(!body.contains("fleet"), "{body}");
        let d = diag(vigil);
        let asked: Vec<&str> = d["vigil"]["fleet"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["check"].as_str())
            .collect();
        assert!(
            !asked.contains(&"gateway"),
            "a local check never asks the peers: {asked:?}"
        );
        assert_eq!(d["vigil"]["checks"]["gateway"]["scope"], "local");
        assert_eq!(d["vigil"]["checks"]["postgres"]["scope"], "shared");
    }
}

// ----- only vigil's answers count, never its own (issue 23) -----

/// A replica at `listen` watching `url`, with `[fleet] peers` as given (TOML array items).
fn replica(listen: SocketAddr, url: &str, peers: &[String], env: &[(&str, &str)]) -> Vigil {
    let config = format!(
        "[defaults]\ninterval = \"1s\"\ntimeout = \"900ms\"\n[system]\nenabled = false\n\
         [postgres]\nurl = \"{url}\"\n[fleet]\npeers = [{}]\n",
        peers.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ")
    );
    let mut builder = Vigil::builder().listen(listen);
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    builder.start(&config)
}

/// Waits for `count` consultations of `vigil` and returns its last decision about postgres.
#[track_caller]
fn decided_after(vigil: &Vigil, count: u64) -> Json {
    wait_until(Duration::from_secs(10), "consultations", || {
        diag(vigil)["vigil"]["fleet"]["consultations"].as_u64() >= Some(count)
    });
    diag(vigil)["vigil"]["fleet"]["checks"][0].clone()
}

#[test]
fn a_503_from_a_proxy_in_front_of_a_peer_is_not_a_failing_replica() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let wrong = pg.url("gateway", "not-the-password", "gateway");
    // What Envoy or a mesh sidecar answers, to every path, for a peer that is down.
    let sidecar = support::FakeServer::fixed(support::Response::text(503, "no healthy upstream"));
    let ips = [ip(2), ip(3), ip(4)];
    let port = free_port_on(&ips);
    let peers_of = |own: Ipv4Addr| -> Vec<String> {
        let mut peers: Vec<String> = ips
            .iter()
            .filter(|p| **p != own)
            .map(|p| format!("{p}:{port}"))
            .collect();
        peers.push(sidecar.addr().to_string());
        peers
    };
    let honest: Vec<Vigil> = ips[1..]
        .iter()
        .map(|own| replica(SocketAddr::from((*own, port)), &url, &peers_of(*own), &[]))
        .collect();
    for vigil in &honest {
        vigil.wait_for_status("/readyz/postgres", 200, Duration::from_secs(10));
    }
    // Its database is unreachable for this replica only.
    let alone = replica(SocketAddr::from((ips[0], port)), &wrong, &peers_of(ips[0]), &[]);
    let decision = decided_after(&alone, 3);
    let (status, body) = readyz(&alone);
    assert_eq!(status, 503, "the failure is this replica's: {body}");
    assert!(!body.contains("fleet"), "{body}");
    assert_eq!(
        (
            decision["fails"].as_u64(),
            decision["passes"].as_u64(),
            decision["unknown"].as_u64()
        ),
        (Some(1), Some(2), Some(1)),
        "the sidecar's 503 is not counted: {decision}"
    );
    let text = alone.get("/diag").body;
    assert!(text.contains("answered 503 without Vigil-Instance"), "{text}");
    // Every vigil answer names its instance; the instances differ.
    let ids: Vec<String> = honest
        .iter()
        .chain([&alone])
        .map(|v| {
            support::client::try_request(v.addr(), "GET", "/livez", &[], &[])
                .expect("livez")
                .header("vigil-instance")
                .expect("Vigil-Instance on every answer")
                .to_owned()
        })
        .collect();
    assert!(ids.iter().all(|id| id.len() == 16), "{ids:?}");
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "{ids:?}");
    assert_eq!(metric(&alone, "vigil_fleet_panic{check=\"postgres\"} "), Some(0.0));
}

#[test]
fn a_replica_never_counts_itself_whatever_address_reaches_it() {
    let pg = PgServer::start();
    let url = pg.create_user_db("gateway", PASSWORD);
    let wrong = pg.url("gateway", "not-the-password", "gateway");
    let honest_port = free_port_on(&[ip(3)]);
    let honest = replica(
        SocketAddr::from((ip(3), honest_port)),
        &url,
        &[format!("127.0.0.1:{honest_port}")],
        &[],
    );
    honest.wait_for_status("/readyz/postgres", 200, Duration::from_secs(10));
    let honest_peer = format!("127.0.0.3:{honest_port}");

    // Each replica's database is unreachable for it alone, and its peers name it by an address it
    // does not know as its own: only the honest peer counts, 1 failing of 2, no panic.
    let mut cases: Vec<(&str, Vigil)> = Vec::new();
    // A wildcard listen without POD_IP, reached as 127.0.0.1.
    let port = free_port_on(&[Ipv4Addr::UNSPECIFIED, ip(1)]);
    let wildcard = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    cases.push((
        "listen 0.0.0.0, no POD_IP",
        replica(
            wildcard,
            &wrong,
            &[format!("127.0.0.1:{port}"), honest_peer.clone()],
            &[],
        ),
    ));
    // POD_IP set, while the list names 127.0.0.1.
    let port = free_port_on(&[Ipv4Addr::UNSPECIFIED, ip(1)]);
    cases.push((
        "POD_IP 127.0.0.2, named as 127.0.0.1",
        replica(
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            &wrong,
            &[format!("127.0.0.1:{port}"), honest_peer.clone()],
            &[("POD_IP", "127.0.0.2")],
        ),
    ));
    // A dual-stack name resolving to its IPv4 and IPv6 loopback (root: /etc/hosts).
    let dual = support::hosts::HostsEntry::add(&["127.0.0.1", "::1"]).filter(|_| running_as_root());
    match &dual {
        Some(name) => {
            let port = free_port_on(&[Ipv4Addr::UNSPECIFIED, ip(1)]);
            let any6 = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
            cases.push((
                "listen [::], a dual-stack name",
                replica(
                    any6,
                    &wrong,
                    &[format!("{}:{port}", name.name), honest_peer.clone()],
                    &[],
                ),
            ));
        }
        None => eprintln!("SKIPPED the dual-stack name: /etc/hosts needs root"),
    }

    for (case, vigil) in &cases {
        let decision = decided_after(vigil, 3);
        let (status, body) = readyz(vigil);
        assert_eq!(status, 503, "{case}: this replica's failure: {body}");
        assert!(!body.contains("fleet"), "{case}: {body}");
        assert_eq!(
            (
                decision["fails"].as_u64(),
                decision["passes"].as_u64(),
                decision["unknown"].as_u64()
            ),
            (Some(1), Some(1), Some(0)),
            "{case}: itself left out: {decision}"
        );
        assert_eq!(
            metric(vigil, "vigil_fleet_panic{check=\"postgres\"} "),
            Some(0.0),
            "{case}"
        );
        assert_eq!(
            metric(vigil, "vigil_fleet_peers "),
            Some(1.0),
            "{case}: the honest peer alone"
        );
        // Asked once, recognised by its own id, left out from then on.
        let logs = vigil.logs();
        assert!(
            logs.contains("answered with this replica's own Vigil-Instance"),
            "{case}: {logs}"
        );
        assert_eq!(
            diag(vigil)["vigil"]["fleet"]["known"],
            serde_json::json!([honest_peer]),
            "{case}"
        );
    }
    drop(dual);
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
