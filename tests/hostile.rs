//! Hostile inputs, bounded cost (issue 12), against the built binary: a slowloris peer in
//! another network namespace, a closed stderr, a closed stdout, SIGHUP, and `/diag`'s status
//! code.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::netns::Netns;
use support::vigil::VIGIL_BIN;
use support::{FakeServer, Response, Vigil, client, free_port, poll_until, refused_addr, run_cli, wait_until};

// ----- slowloris from another pod -----

/// The attacker: `connections` sockets to `host:port`, each sending one byte of a never-ending
/// request head a second, reconnecting (at most once a second per socket) when vigil closes it;
/// stops by itself after `seconds`. Prints `connected <n>` once the first round is open (or
/// after 3 s); non-blocking connects, so that a dropped SYN costs no time.
const SLOWLORIS: &str = r#"
import selectors, socket, sys, time
host, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
end = time.monotonic() + seconds
head = b"GET /readyz HTTP/1.1\r\nHost: vigil\r\nX-Slow: " + b"a" * 100000
def connect():
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    return [s, 0]
slots = [connect() for _ in range(n)]
pending = selectors.DefaultSelector()
for slot in slots:
    pending.register(slot[0], selectors.EVENT_WRITE)
opened, wait_until = 0, time.monotonic() + 3
while opened < n and time.monotonic() < wait_until:
    for key, _ in pending.select(timeout=0.2):
        pending.unregister(key.fileobj)
        if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            opened += 1
pending.close()
print("connected", opened, flush=True)
while time.monotonic() < end:
    tick = time.monotonic()
    for i, slot in enumerate(slots):
        try:
            slot[0].send(head[slot[1]:slot[1] + 1])
            slot[1] += 1
        except BlockingIOError:
            pass
        except OSError:
            slot[0].close()
            slots[i] = connect()
    time.sleep(max(0.0, min(1.0 - (time.monotonic() - tick), end - time.monotonic())))
print("done", flush=True)
"#;

/// Latencies of one kind of request, with failures counted at the time they took.
#[derive(Default)]
struct Latencies {
    samples: Vec<Duration>,
    failures: Vec<String>,
}

impl Latencies {
    fn measure(&mut self, addr: SocketAddr, path: &str) {
        let started = Instant::now();
        let answer = client::try_request(addr, "GET", path, &[("User-Agent", "kube-probe/1.30")], &[]);
        let took = started.elapsed();
        match answer {
            Ok(answer) if answer.status == 200 => {}
            Ok(answer) => self
                .failures
                .push(format!("{path}: status {} after {took:?}", answer.status)),
            Err(error) => self.failures.push(format!("{path}: {error} after {took:?}")),
        }
        self.samples.push(took);
    }

    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.samples.iter().max().copied().unwrap_or_default()
    }

    fn summary(&self) -> String {
        format!(
            "n={} p50={:.1}ms p99={:.1}ms max={:.1}ms failures={}",
            self.samples.len(),
            self.quantile(0.5).as_secs_f64() * 1e3,
            self.quantile(0.99).as_secs_f64() * 1e3,
            self.max().as_secs_f64() * 1e3,
            self.failures.len()
        )
    }
}

/// How long the attacker holds on, and how many connections it opens.
const ATTACK: Duration = Duration::from_secs(9);
const ATTACK_CONNECTIONS: usize = 1000;

#[test]
fn a_slowloris_peer_in_another_namespace_does_not_delay_other_peers_probes() {
    let mut netns = match Netns::create("hostile").and_then(|netns| netns.with_veth(201)) {
        Ok(netns) => netns,
        Err(why) => {
            eprintln!("SKIPPED: a network namespace is needed for the remote slowloris peer: {why}");
            return;
        }
    };
    let vigil = Vigil::builder()
        .listen_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .start("[system]\nenabled = false\n");
    let port = vigil.port();
    let mut attacker = netns.command("python3");
    attacker
        .args(["-c", SLOWLORIS, &netns.host_ip().to_string(), &port.to_string()])
        .args([ATTACK_CONNECTIONS.to_string(), ATTACK.as_secs_f64().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let attacker = netns.spawn(attacker);
    let attack_started = Instant::now();
    let stdout = netns.child(attacker).stdout.take().expect("piped stdout");
    let (lines, from_attacker) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let first = from_attacker
        .recv_timeout(Duration::from_secs(5))
        .expect("the attacker reports its connections within 5 s");
    let opened: usize = first
        .strip_prefix("connected ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected attacker output {first:?}"));
    assert!(
        opened >= ATTACK_CONNECTIONS / 2,
        "the attacker opened only {opened} connections"
    );

    // The kubelet's view: from this side of the veth (a source address that is neither
    // loopback nor the attacker's), and a loopback peer beside it; until the attack ends.
    let node_side = SocketAddr::new(IpAddr::V4(netns.host_ip()), port);
    // Like the kubelet, each prober starts a request every 100 ms whether or not the last one
    // has answered, so that a stall shows in every probe it delays.
    let measure_until = attack_started + ATTACK - Duration::from_millis(500);
    let probe = |addr: SocketAddr, path: &'static str| {
        let (done, finished) = mpsc::channel::<Latencies>();
        std::thread::scope(|scope| {
            let mut next = Instant::now();
            while next < measure_until {
                let done = done.clone();
                scope.spawn(move || {
                    let mut one = Latencies::default();
                    one.measure(addr, path);
                    let _ = done.send(one);
                });
                next += Duration::from_millis(100);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        drop(done);
        finished.iter().fold(Latencies::default(), |mut all, one| {
            all.samples.extend(one.samples);
            all.failures.extend(one.failures);
            all
        })
    };
    let (readyz_node, livez_node, readyz_loopback) = std::thread::scope(|scope| {
        let readyz_node = scope.spawn(|| probe(node_side, "/readyz"));
        let livez_node = scope.spawn(|| probe(node_side, "/livez"));
        let readyz_loopback = probe(vigil.addr(), "/readyz");
        (
            readyz_node.join().expect("prober"),
            livez_node.join().expect("prober"),
            readyz_loopback,
        )
    });
    let done = from_attacker.recv_timeout(Duration::from_secs(5));
    eprintln!("slowloris, {opened} connections from the namespace, one byte a second:");
    eprintln!("  /readyz from {}: {}", netns.host_ip(), readyz_node.summary());
    eprintln!("  /livez  from {}: {}", netns.host_ip(), livez_node.summary());
    eprintln!("  /readyz from 127.0.0.1: {}", readyz_loopback.summary());
    assert_eq!(done.as_deref(), Ok("done"), "the attacker ran to its end");

    for (what, latencies) in [
        ("/readyz from the node side", &readyz_node),
        ("/livez from the node side", &livez_node),
        ("/readyz over loopback", &readyz_loopback),
    ] {
        assert!(
            latencies.samples.len() >= 20,
            "{what}: too few samples: {}",
            latencies.summary()
        );
        assert!(
            latencies.failures.is_empty(),
            "{what}: {} (first failures: {:?})",
            latencies.summary(),
            &latencies.failures[..latencies.failures.len().min(5)]
        );
        // Probes are answered in milliseconds; on a loaded test machine (other tests, builds)
        // some wait out one SYN retransmission (1 s) when the attacker's connections fill the
        // listen backlog faster than they are accepted. The median tells the fix apart (2 s
        // before the per-peer limit, milliseconds after), and the worst stays under the probe's
        // 2 s timeout (4 s before).
        assert!(
            latencies.quantile(0.5) < Duration::from_millis(250),
            "{what} must stay fast: {}",
            latencies.summary()
        );
        assert!(
            latencies.max() < Duration::from_millis(1800),
            "{what} must stay under the kubelet's 2 s probe timeout: {}",
            latencies.summary()
        );
    }
    assert!(
        vigil.logs().contains("Refusing connections"),
        "the refusals are logged:\n{}",
        vigil.logs()
    );

    // What an over-limit peer sees: with 32 connections held from the node side, the next one
    // is answered 503 naming the limit and closed; loopback is still served; once they close,
    // the node side is served again.
    let held: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect_timeout(&node_side, Duration::from_secs(2)).expect("connect"))
        .collect();
    let mut refused = String::new();
    wait_until(Duration::from_secs(5), "a 503 for the 33rd connection", || {
        let answer = client::try_request(node_side, "GET", "/readyz", &[], &[]);
        refused = format!("{answer:?}");
        matches!(&answer, Ok(r) if r.status == 503 && r.body.contains("holds 32 connections to vigil already"))
    });
    assert_eq!(vigil.get("/readyz").status, 200, "loopback is served meanwhile");
    drop(held);
    wait_until(Duration::from_secs(10), "the node side served again", || {
        client::try_request(node_side, "GET", "/readyz", &[], &[]).is_ok_and(|r| r.status == 200)
    });
    eprintln!("  the 33rd connection from one address read: {refused}");
}

// ----- closed stderr -----

/// Runs the agent with `stderr` as its standard error until a status change has happened (and
/// been logged), then SIGTERMs it; returns how it exited.
fn run_with_stderr(stderr: Stdio) -> ExitStatus {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let config = dir.path().join("vigil.toml");
    let toml = format!(
        "listen = \"{addr}\"\n[system]\nenabled = false\n[shutdown]\ndrain = \"300ms\"\n\
         [[upstream]]\nname = \"down\"\nurl = \"http://{}/\"\ncritical = true\n\
         interval = \"100ms\"\ntimeout = \"100ms\"\nfailure_threshold = 1\n",
        refused_addr()
    );
    fs::write(&config, toml).expect("write config");
    let mut child = Command::new(VIGIL_BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("VIGIL_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("VIGIL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn vigil");
    let mut exited = None;
    let failing = poll_until(Duration::from_secs(10), || {
        exited = child.try_wait().ok().flatten();
        exited.is_some()
            || client::try_request(addr, "GET", "/diag?format=json", &[], &[])
                .ok()
                .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
                .and_then(|doc| doc["vigil"]["transitions"].as_array().map(|t| !t.is_empty()))
                .unwrap_or(false)
    });
    if let Some(status) = exited {
        return status;
    }
    assert!(failing, "the upstream never changed status");
    // The status change and a few more runs have been logged, into the broken stderr.
    let status = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let mut exited = None;
    poll_until(Duration::from_secs(10), || {
        exited = child.try_wait().ok().flatten();
        exited.is_some()
    });
    exited.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("vigil did not exit within 10 s of SIGTERM");
    })
}

#[test]
fn a_closed_or_full_stderr_never_turns_a_log_line_into_an_abort() {
    // A pipe whose reader is gone: every write fails with EPIPE.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let status = run_with_stderr(Stdio::from(writer));
    assert_eq!(status.code(), Some(0), "stderr a broken pipe: {status}");
    // /dev/full: every write fails with ENOSPC.
    if let Ok(full) = fs::OpenOptions::new().write(true).open("/dev/full") {
        let status = run_with_stderr(Stdio::from(full));
        assert_eq!(status.code(), Some(0), "stderr /dev/full: {status}");
    }
}

// ----- closed stdout -----

/// Runs `vigil args…` with a stdout whose reader is already gone; returns (exit code, stderr).
fn run_into_closed_stdout(args: &[&str], toml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("vigil.toml");
    fs::write(&config, toml).expect("write config");
    let stderr_path = dir.path().join("stderr");
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(VIGIL_BIN)
        .args(args)
        .arg("--config")
        .arg(&config)
        .env_remove("VIGIL_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(fs::File::create(&stderr_path).expect("stderr file")))
        .spawn()
        .expect("spawn vigil");
    let mut exited = None;
    poll_until(Duration::from_secs(20), || {
        exited = child.try_wait().ok().flatten();
        exited.is_some()
    });
    let Some(status) = exited else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("vigil {args:?} did not exit within 20 s");
    };
    (status.code(), fs::read_to_string(&stderr_path).unwrap_or_default())
}

#[test]
fn validate_and_check_into_a_closed_pipe_exit_quietly() {
    let server = FakeServer::fixed(Response::text(200, "ok"));
    let toml = format!(
        "[system]\nenabled = false\n[[upstream]]\nname = \"orders\"\nurl = \"{}\"\n",
        server.url("/healthz")
    );
    for (args, expected) in [
        (&["validate"][..], 0),
        (&["check"][..], 0),
        (&["check", "--output", "json"][..], 0),
    ] {
        let normal = run_cli(args, Some(&toml), &[]);
        assert_eq!(normal.status.code(), Some(expected), "vigil {args:?} into a file");
        let (code, stderr) = run_into_closed_stdout(args, &toml);
        assert_eq!(code, Some(expected), "vigil {args:?} | (closed): stderr {stderr:?}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("failed printing"),
            "vigil {args:?} | (closed): {stderr}"
        );
    }
}

// ----- SIGHUP -----

#[test]
fn sighup_is_a_reload_request_not_an_exit() {
    let mut vigil =
        Vigil::start("[system]\ninterval = \"200ms\"\ntimeout = \"200ms\"\n[shutdown]\ndrain = \"200ms\"\n");
    vigil.signal("HUP");
    vigil.wait_for_log("Configuration reloaded", Duration::from_secs(5));
    vigil.signal("HUP");
    wait_until(Duration::from_secs(5), "a second reload logged", || {
        vigil.logs().matches("Configuration reloaded").count() >= 2
    });
    assert!(vigil.is_running(), "SIGHUP ended vigil:\n{}", vigil.logs());
    assert_eq!(vigil.get("/livez").status, 200);
    // SIGTERM still drains and exits 0.
    vigil.signal("TERM");
    let status = vigil.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", vigil.logs());
}

// ----- /diag status code -----

#[test]
fn diag_answers_503_when_failing_and_200_when_passing_or_warning() {
    let core = FakeServer::fixed(Response::text(200, "ok"));
    let extra = FakeServer::fixed(Response::text(200, "ok"));
    let section = |name: &str, server: &FakeServer, critical: bool| {
        format!(
            "[[upstream]]\nname = \"{name}\"\nurl = \"{}\"\ncritical = {critical}\n\
             interval = \"200ms\"\ntimeout = \"200ms\"\nfailure_threshold = 1\n",
            server.url("/healthz")
        )
    };
    let vigil = Vigil::start(&format!(
        "[system]\nenabled = false\n{}{}",
        section("core", &core, true),
        section("extra", &extra, false)
    ));
    let expect = |status: &str, code: u16| {
        let mut last = String::new();
        let reached = poll_until(Duration::from_secs(5), || {
            let doc = vigil.get("/diag?format=json").json();
            last = doc["status"].to_string();
            doc["status"] == status
        });
        assert!(reached, "/diag never reached {status}; last {last}");
        let json = vigil.request("GET", "/diag", &[("Accept", "application/health+json")]);
        assert_eq!((json.status, json.json()["status"].as_str()), (code, Some(status)));
        assert_eq!(vigil.get("/diag?format=json").status, code);
        let text = vigil.get("/diag");
        assert_eq!(text.status, code, "text /diag while {status}:\n{}", text.body);
        assert!(text.content_type().unwrap_or("").starts_with("text/plain"));
        assert_eq!(vigil.request("HEAD", "/diag", &[]).status, code);
    };
    expect("pass", 200);
    extra.set_response(Response::text(500, "down"));
    expect("warn", 200);
    core.set_response(Response::text(500, "down"));
    expect("fail", 503);
    core.set_response(Response::text(200, "ok"));
    extra.set_response(Response::text(200, "ok"));
    expect("pass", 200);
}

// ----- a resolver that never answers -----

const SILENT_DNS: &str = r#"
import socket, sys, time
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 53))
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", 7777))
tcp.listen(64)
print("ready", flush=True)
time.sleep(float(sys.argv[1]))
"#;

/// A network namespace whose resolv.conf points at a DNS server that reads nothing and answers
/// nothing, with a 20 s resolver timeout; a TCP port 7777 on its loopback accepts connections (the
/// backlog does). Deleted on drop with its processes.
fn silent_dns() -> Result<Netns, String> {
    let mut dns = Netns::create("dns")?;
    dns.set_resolv_conf("nameserver 127.0.0.1\noptions timeout:20 attempts:1\n")?;
    let mut server = dns.command("python3");
    server.args(["-c", SILENT_DNS, "120"]).stdout(Stdio::piped());
    let server = dns.spawn(server);
    let stdout = dns.child(server).stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("silent DNS server: {e}"))?;
    if line.trim() != "ready" {
        return Err(format!("the silent DNS server did not start: {line:?}"));
    }
    Ok(dns)
}

/// A DNS server that never answers (cut lookups cannot be cancelled: each one waits out the
/// resolver's 20 s) costs only the upstreams that need it: every one of twenty fails at its 1 s
/// timeout, the `system` check (which reads files on the blocking pool that lookups used to fill)
/// still passes, a name from /etc/hosts still resolves, and `vigil check` ends at once instead of
/// waiting for the hung lookups.
#[test]
fn a_dns_server_that_never_answers_costs_only_the_lookups_that_need_it() {
    let dns = match silent_dns() {
        Ok(dns) => dns,
        Err(why) => {
            eprintln!("SKIPPED: a network namespace with its own resolv.conf is needed: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from("[system]\ninterval = \"1s\"\ntimeout = \"1s\"\n");
    for i in 0..20 {
        config.push_str(&format!(
            "[[upstream]]\nname = \"hang-{i}\"\nurl = \"http://hang-{i}.vigil.test/healthz\"\ntimeout = \"1s\"\n"
        ));
    }
    config.push_str("[[upstream]]\nname = \"hosts\"\nurl = \"tcp://localhost:7777\"\ntimeout = \"1s\"\n");
    let path = dir.path().join("vigil.toml");
    fs::write(&path, config).unwrap();

    let started = Instant::now();
    let out = dns
        .command(VIGIL_BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for i in 0..20 {
        assert!(
            stdout.contains(&format!(
                "[-]upstream:hang-{i} failed: GET http://hang-{i}.vigil.test/healthz: timed out after 1s"
            )),
            "hang-{i}:\n{stdout}"
        );
    }
    assert!(stdout.contains("[+]system ok"), "{stdout}");
    assert!(stdout.contains("[+]upstream:hosts ok"), "{stdout}");
    assert!(
        took < Duration::from_secs(6),
        "vigil check took {took:?}, waiting for hung lookups"
    );
}

/// Polls vigil's `/livez` on 127.0.0.1:`port` inside the namespace every 100 ms for `seconds`
/// (once it answers), then prints one JSON document: each answer's status and time, and `/diag`.
const LIVEZ_SAMPLER: &str = r#"
import json, sys, time, urllib.error, urllib.request
port, seconds = int(sys.argv[1]), float(sys.argv[2])
base = f"http://127.0.0.1:{port}"
def get(path):
    try:
        with urllib.request.urlopen(base + path, timeout=3) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:
        return 0, str(e).encode()
up = time.monotonic() + 10
while get("/livez")[0] == 0 and time.monotonic() < up:
    time.sleep(0.05)
samples, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    t = time.monotonic()
    status, _ = get("/livez")
    samples.append([status, time.monotonic() - t])
    time.sleep(0.1)
_, diag = get("/diag?format=json")
_, readyz = get("/readyz?verbose")
print(json.dumps({"livez": samples, "diag": json.loads(diag), "readyz": readyz.decode()}), flush=True)
"#;

/// `[fleet] peers` as twenty names behind a DNS server that never answers, while the postgres
/// check fails (so every run consults the peers): the names are looked up concurrently and the
/// consultation is cut at the check's timeout, so the check's loop keeps its schedule and
/// `/livez` (what the kubelet restarts the container on) stays 200 (issue 23; it answered 503
/// for 25 s at a stretch when the names were looked up one after another).
#[test]
fn peers_behind_a_silent_dns_server_never_delay_the_check_loop_or_livez() {
    let dns = match silent_dns() {
        Ok(dns) => dns,
        Err(why) => {
            eprintln!("SKIPPED: a network namespace with its own resolv.conf is needed: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let port = 9476;
    let peers: Vec<String> = (0..20).map(|i| format!("\"peer-{i}.fleet.vigil.test\"")).collect();
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\n[defaults]\ninterval = \"1s\"\ntimeout = \"900ms\"\n\
         [system]\nenabled = false\n[postgres]\nurl = \"postgres://gw:pw@127.0.0.1:1/gw\"\n\
         [fleet]\npeers = [{}]\n",
        peers.join(", ")
    );
    let path = dir.path().join("vigil.toml");
    fs::write(&path, config).unwrap();
    let mut vigil = dns
        .command(VIGIL_BIN)
        .args(["run", "--config", path.to_str().unwrap()])
        .env_remove("VIGIL_CONFIG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("vigil in the namespace");
    let sampled = dns
        .command("python3")
        .args(["-c", LIVEZ_SAMPLER, &port.to_string(), "12"])
        .output();
    let _ = vigil.kill();
    let _ = vigil.wait();
    let sampled = sampled.expect("the sampler runs");
    let report: serde_json::Value = serde_json::from_slice(&sampled.stdout).unwrap_or_else(|e| {
        panic!(
            "sampler output: {e}: {}{}",
            String::from_utf8_lossy(&sampled.stdout),
            String::from_utf8_lossy(&sampled.stderr)
        )
    });
    let samples = report["livez"].as_array().expect("samples");
    let failed: Vec<&serde_json::Value> = samples
        .iter()
        .filter(|s| s[0] != 200 || s[1].as_f64().unwrap_or(9.0) > 1.0)
        .collect();
    let fleet = &report["diag"]["vigil"]["fleet"];
    eprintln!(
        "silent DNS, 20 peer names: {} /livez samples, {} not 200 within 1 s; {} consultations; resolution: {}",
        samples.len(),
        failed.len(),
        fleet["consultations"],
        fleet["resolution_errors"]
    );
    assert!(samples.len() >= 50, "too few samples: {}", samples.len());
    assert!(failed.is_empty(), "/livez failed or was slow: {failed:?}");
    let runs = report["diag"]["vigil"]["checks"]["postgres"]["runs"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        runs >= 8,
        "the postgres loop ran {runs} times in 12 s at a 1 s interval"
    );
    assert!(
        fleet["consultations"].as_u64().unwrap_or(0) >= 8,
        "every failing run asks the peers: {fleet}"
    );
    let errors = fleet["resolution_errors"].to_string();
    assert!(errors.contains("peer-0.fleet.vigil.test timed out"), "{errors}");
    let readyz = report["readyz"].as_str().unwrap_or_default();
    assert!(
        readyz.starts_with("[-]postgres failed: ") && !readyz.contains("fleet"),
        "no peer answered: readiness fails as without [fleet]: {readyz}"
    );
}
