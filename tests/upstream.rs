//! `[[upstream]]` checks against real servers on 127.0.0.1: fast, slow, hanging, refused,
//! wrong status, a huge body, an unresolvable name, https, criticality, and latency accuracy.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use serde_json::Value;
use support::tls::TlsServer;
use support::{FakeServer, Response, Vigil, poll_until, refused_addr, wait_until};

/// A fast-running upstream section (300 ms interval and timeout unless `extra` sets them);
/// `extra` adds keys.
fn upstream(name: &str, url: &str, extra: &str) -> String {
    let mut timing = String::new();
    if !extra.contains("interval") {
        timing.push_str("interval = \"300ms\"\n");
    }
    if !extra.contains("timeout") {
        timing.push_str("timeout = \"300ms\"\n");
    }
    format!(
        "[system]\nenabled = false\n\n[[upstream]]\nname = \"{name}\"\nurl = \"{url}\"\nfailure_threshold = 1\n{timing}{extra}\n"
    )
}

fn diag(vigil: &Vigil) -> Value {
    serde_json::from_str(&vigil.get("/diag?format=json").body).expect("/diag is JSON")
}

/// The observed value of `check:measurement` in /diag, if any.
fn observed(vigil: &Vigil, key: &str) -> Option<f64> {
    diag(vigil)["checks"][key][0]["observedValue"].as_f64()
}

fn verbose(vigil: &Vigil) -> String {
    vigil.get("/readyz?verbose").body
}

#[track_caller]
fn wait_for_line(vigil: &Vigil, line: &str, deadline: Duration) {
    let mut last = String::new();
    if !poll_until(deadline, || {
        last = verbose(vigil);
        last.contains(line)
    }) {
        panic!(
            "no line containing {line:?} in /readyz?verbose:\n{last}\nlogs:\n{}",
            vigil.logs()
        );
    }
}

#[test]
fn a_fast_upstream_passes_with_phases_addresses_and_percentiles() {
    let server = FakeServer::fixed(Response::text(200, "ok"));
    let vigil = Vigil::start(&upstream("orders", &server.url("/healthz"), ""));
    wait_for_line(&vigil, "[+]upstream:orders ok", Duration::from_secs(5));
    assert_eq!(vigil.get("/readyz").status, 200);
    for key in [
        "status_code",
        "latency",
        "connect",
        "first_byte",
        "addresses",
        "p50",
        "p95",
        "p99",
    ] {
        assert!(
            observed(&vigil, &format!("upstream:orders:{key}")).is_some(),
            "{key} missing from /diag: {}",
            diag(&vigil)
        );
    }
    assert_eq!(observed(&vigil, "upstream:orders:status_code"), Some(200.0));
    assert_eq!(observed(&vigil, "upstream:orders:addresses"), Some(1.0));
    let metrics = vigil.get("/metrics").body;
    for name in [
        "vigil_upstream_up{upstream=\"orders\"} 1",
        "vigil_upstream_status_code{upstream=\"orders\"} 200",
        "vigil_upstream_addresses{upstream=\"orders\"} 1",
        "vigil_upstream_request_duration_seconds_bucket{upstream=\"orders\",le=\"2\"}",
        "vigil_upstream_request_duration_seconds_bucket{upstream=\"orders\",le=\"10\"}",
        "vigil_upstream_phase_duration_seconds{phase=\"connect\",upstream=\"orders\"}",
        "vigil_upstream_phase_duration_seconds{phase=\"first_byte\",upstream=\"orders\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let request = server.last_request().expect("the upstream was asked");
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/healthz");
}

#[test]
fn method_and_headers_are_sent_and_a_status_list_is_honoured() {
    let server = FakeServer::fixed(Response::new(204));
    let vigil = Vigil::start(&upstream(
        "auth",
        &server.url("/ping"),
        "method = \"HEAD\"\nexpect_status = [204]\nheaders = { Authorization = \"Bearer s3cr3t-token\" }",
    ));
    wait_for_line(&vigil, "[+]upstream:auth ok", Duration::from_secs(5));
    let request = server.last_request().expect("asked");
    assert_eq!(request.method, "HEAD");
    assert_eq!(request.header("authorization"), Some("Bearer s3cr3t-token"));
    assert!(
        !vigil.get("/diag").body.contains("s3cr3t"),
        "a header value leaked into /diag"
    );
}

#[test]
fn a_slow_upstream_warns_then_fails_by_p95() {
    let server = FakeServer::fixed(Response::text(200, "ok"));
    let vigil = Vigil::start(&upstream(
        "slow",
        &server.url("/"),
        "interval = \"600ms\"\ntimeout = \"600ms\"\nlatency_warn = \"100ms\"\nlatency_fail = \"300ms\"\nwindow = \"2s\"",
    ));
    wait_for_line(&vigil, "[+]upstream:slow ok", Duration::from_secs(5));
    server.set_response(Response::text(200, "ok").with_delay(Duration::from_millis(150)));
    wait_for_line(&vigil, "[+]upstream:slow warn: p95 1", Duration::from_secs(5));
    assert!(verbose(&vigil).contains("over 2s exceeds 100ms"), "{}", verbose(&vigil));
    assert_eq!(vigil.get("/readyz").status, 200, "warn never fails readiness");
    server.set_response(Response::text(200, "ok").with_delay(Duration::from_millis(400)));
    wait_for_line(&vigil, "exceeds 300ms", Duration::from_secs(8));
    assert!(
        verbose(&vigil).contains("[-]upstream:slow failed: p95 4"),
        "{}",
        verbose(&vigil)
    );
}

#[test]
fn a_hanging_upstream_fails_with_a_timeout_naming_the_request() {
    let server = FakeServer::hanging();
    let url = server.url("/healthz");
    let vigil = Vigil::start(&upstream("hang", &url, "timeout = \"300ms\""));
    wait_for_line(
        &vigil,
        &format!("[-]upstream:hang failed: GET {url}: timed out after 300ms"),
        Duration::from_secs(5),
    );
}

#[test]
fn a_refused_upstream_fails_and_critical_decides_readiness() {
    let url = format!("http://{}/healthz", refused_addr());
    let vigil = Vigil::start(&upstream("down", &url, ""));
    wait_for_line(
        &vigil,
        &format!("[-]upstream:down failed: GET {url}: connection refused"),
        Duration::from_secs(5),
    );
    assert_eq!(
        vigil.get("/readyz").status,
        200,
        "upstreams are not critical by default"
    );

    let critical = Vigil::start(&upstream("down", &url, "critical = true"));
    critical.wait_for_status("/readyz", 503, Duration::from_secs(5));
    assert!(critical.get("/readyz").body.contains("connection refused"));
}

#[test]
fn an_unexpected_status_fails_naming_it() {
    let server = FakeServer::fixed(Response::text(503, "no"));
    let url = server.url("/healthz");
    let vigil = Vigil::start(&upstream("orders", &url, ""));
    wait_for_line(
        &vigil,
        &format!("[-]upstream:orders failed: GET {url}: status 503, expected 2xx"),
        Duration::from_secs(5),
    );
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("vigil_upstream_status_code{upstream=\"orders\"} 503")
    );
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("vigil_upstream_up{upstream=\"orders\"} 0")
    );
}

#[test]
fn an_unresolvable_name_fails_naming_dns_with_the_endpoints_hint() {
    let vigil = Vigil::start(&upstream(
        "ghost",
        "http://ghost.invalid:8080/healthz",
        "interval = \"3s\"\ntimeout = \"3s\"",
    ));
    wait_for_line(
        &vigil,
        "[-]upstream:ghost failed: GET http://ghost.invalid:8080/healthz: DNS lookup of ghost.invalid failed",
        Duration::from_secs(8),
    );
    let text = vigil.get("/diag").body;
    assert!(text.contains("kubectl get endpoints ghost"), "{text}");
}

/// Serves one 64 MiB body per connection, in 64 KiB writes, until the client goes away.
fn huge_body_server() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head);
                let size = 64 * 1024 * 1024;
                let _ = write!(stream, "HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..size / chunk.len() {
                    if stream.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, served)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

#[test]
fn a_64_mib_body_is_not_read_and_memory_stays_flat() {
    let (addr, served) = huge_body_server();
    let vigil = Vigil::start(&upstream("big", &format!("http://{addr}/"), ""));
    wait_for_line(&vigil, "[+]upstream:big ok", Duration::from_secs(5));
    wait_until(Duration::from_secs(10), "ten runs against the huge body", || {
        served.load(std::sync::atomic::Ordering::SeqCst) >= 10
    });
    let rss = rss_kib(vigil.pid());
    assert!(rss < 30 * 1024, "vigil's RSS grew to {rss} KiB reading a 64 MiB body");
    let details = &diag(&vigil)["vigil"];
    assert!(details.to_string().contains("\"body_truncated\":true"), "{details}");
}

#[test]
fn https_fails_naming_tls_and_passes_with_the_ca_file() {
    let server = TlsServer::start();
    let url = server.url("/healthz");
    let vigil = Vigil::start(&upstream("secure", &url, ""));
    wait_for_line(
        &vigil,
        &format!("[-]upstream:secure failed: GET {url}: TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        Duration::from_secs(5),
    );
    drop(vigil);

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let vigil = Vigil::start(&upstream("secure", &url, &format!("ca_file = \"{}\"", ca.display())));
    wait_for_line(&vigil, "[+]upstream:secure ok", Duration::from_secs(5));
    assert!(observed(&vigil, "upstream:secure:tls").is_some_and(|s| s > 0.0));
}

/// Certificate expiry is read from the chain the server presents, also when verification fails:
/// expiring in 3 days warns, expired yesterday fails naming the expiry (and the metric is still
/// exported), a self-signed one fails verification and still reports its expiry.
#[test]
fn certificate_expiry_warns_near_fails_past_and_is_read_even_when_unverified() {
    let day = 86_400;
    let expiry_metric = |vigil: &Vigil| {
        vigil.get("/metrics").body.lines().find_map(|l| {
            l.strip_prefix("vigil_tls_cert_expiry_timestamp_seconds{check=\"upstream:secure\"} ")
                .and_then(|v| v.parse::<f64>().ok())
        })
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let trusting = |server: &TlsServer, dir: &tempfile::TempDir| {
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, server.ca_pem()).unwrap();
        format!("ca_file = \"{}\"", ca.display())
    };

    let soon = TlsServer::start_valid_for(Some(3 * day + 3600));
    let dir = tempfile::tempdir().unwrap();
    let vigil = Vigil::start(&upstream("secure", &soon.url("/healthz"), &trusting(&soon, &dir)));
    wait_for_line(
        &vigil,
        "[+]upstream:secure warn: certificate expires in 3d (notAfter ",
        Duration::from_secs(5),
    );
    let expiry = expiry_metric(&vigil).expect("the expiry is exported");
    assert!(
        (expiry - (now + 3.0 * 86_400.0 + 3600.0)).abs() < 120.0,
        "{expiry} vs now {now}"
    );
    drop(vigil);

    let expired = TlsServer::start_valid_for(Some(-day));
    let url = expired.url("/healthz");
    let vigil = Vigil::start(&upstream("secure", &url, &trusting(&expired, &dir)));
    wait_for_line(
        &vigil,
        &format!("[-]upstream:secure failed: GET {url}: certificate expired 1d ago (notAfter "),
        Duration::from_secs(5),
    );
    let expiry = expiry_metric(&vigil).expect("still exported when verification fails");
    assert!(expiry < now, "{expiry}");
    drop(vigil);

    // Self-signed from vigil's point of view (no ca_file): verification fails, expiry is read.
    let untrusted = TlsServer::start_valid_for(Some(200 * day));
    let url = untrusted.url("/healthz");
    let vigil = Vigil::start(&upstream("secure", &url, ""));
    wait_for_line(
        &vigil,
        &format!("[-]upstream:secure failed: GET {url}: TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        Duration::from_secs(5),
    );
    let expiry = expiry_metric(&vigil).expect("read from the unverified chain");
    assert!((expiry - (now + 200.0 * 86_400.0)).abs() < 120.0, "{expiry}");
}

#[test]
fn the_measured_latency_of_a_200ms_server_is_200ms() {
    let server = FakeServer::fixed(Response::text(200, "ok").with_delay(Duration::from_millis(200)));
    let vigil = Vigil::start(&upstream(
        "sleepy",
        &server.url("/"),
        "interval = \"300ms\"\ntimeout = \"300ms\"\nlatency_warn = \"1s\"\nlatency_fail = \"2s\"",
    ));
    wait_until(Duration::from_secs(10), "five runs", || server.requests() >= 6);
    let p50 = observed(&vigil, "upstream:sleepy:p50").expect("p50 in /diag");
    let last = observed(&vigil, "upstream:sleepy:latency").expect("latency in /diag");
    assert!((p50 - 0.200).abs() < 0.015, "p50 {p50}s is not within 15ms of 200ms");
    assert!(last >= 0.200, "a 200ms answer measured as {last}s");
}

/// `tcp://` connects (a cache, a broker) and `tls://` adds the handshake, its certificate read:
/// up when they connect, the same phases and reasons as for HTTP.
#[test]
fn tcp_and_tls_upstreams_connect_and_say_why_not() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = format!("tcp://{}", listener.local_addr().unwrap());
    let vigil = Vigil::start(&upstream("cache", &tcp, ""));
    wait_for_line(&vigil, "[+]upstream:cache ok", Duration::from_secs(5));
    assert!(observed(&vigil, "upstream:cache:connect").is_some_and(|s| s > 0.0));
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("vigil_upstream_up{upstream=\"cache\"} 1"),
        "a connection is up"
    );
    drop(vigil);
    drop(listener);

    let refused = format!("tcp://{}", support::refused_addr());
    let vigil = Vigil::start(&upstream("cache", &refused, ""));
    wait_for_line(
        &vigil,
        &format!("[-]upstream:cache failed: {refused}: connection refused"),
        Duration::from_secs(5),
    );
    drop(vigil);

    let server = TlsServer::start_valid_for(Some(5 * 86_400));
    let tls = server.url("").replace("https://", "tls://");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem()).unwrap();
    let vigil = Vigil::start(&upstream("broker", &tls, &format!("ca_file = \"{}\"", ca.display())));
    wait_for_line(
        &vigil,
        "[+]upstream:broker warn: certificate expires in 4d (notAfter ",
        Duration::from_secs(5),
    );
    assert!(
        observed(&vigil, "upstream:broker:tls").is_some_and(|s| s > 0.0),
        "the handshake is timed"
    );
    drop(vigil);
    let vigil = Vigil::start(&upstream("broker", &tls, ""));
    wait_for_line(
        &vigil,
        &format!("[-]upstream:broker failed: {tls}: TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        Duration::from_secs(5),
    );
}

/// A name with several addresses, one of them refusing: `addresses = "all"` probes each and
/// warns naming the one that fails; the default `first` moves on from a refusing first address
/// to the next and says which answered.
#[test]
fn every_address_is_probed_with_all_and_the_next_one_answers_with_first() {
    let server = FakeServer::fixed(Response::text(200, "ok"));
    let port = server
        .url("/")
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .to_owned();
    // 127.0.0.2 first: nothing listens there on that port.
    let Some(hosts) = support::hosts::HostsEntry::add(&["127.0.0.2", "127.0.0.1"]) else {
        eprintln!("skipped: /etc/hosts is not writable here (the test needs root)");
        return;
    };
    let url = format!("http://{}:{port}/healthz", hosts.name);
    let vigil = Vigil::start(&upstream("spread", &url, "addresses = \"all\""));
    wait_for_line(
        &vigil,
        &format!("[+]upstream:spread warn: GET {url}: 1 of 2 addresses fail: 127.0.0.2:{port} (connection refused)"),
        Duration::from_secs(5),
    );
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("vigil_upstream_addresses{upstream=\"spread\"} 2"),
        "both addresses counted"
    );
    drop(vigil);

    let vigil = Vigil::start(&upstream("spread", &url, ""));
    wait_for_line(&vigil, "[+]upstream:spread ok", Duration::from_secs(5));
    let diag = vigil.get("/diag?format=json").json();
    assert_eq!(
        diag["vigil"]["checks"]["upstream:spread"]["last_run"]["details"]["address"],
        format!("127.0.0.1:{port}"),
        "the refusing first address was passed over"
    );
}

/// `addresses = "all"` over its cap of 64 (issue 23): a name with 100 addresses counts 100, the
/// reason says how many were not probed, and the runs take the addresses in turn; every address
/// failing reads once, not after the first failure's own reason.
#[test]
fn over_64_addresses_the_count_is_all_of_them_and_the_unprobed_share_is_said() {
    // 127.0.1.1 … 127.0.1.50 listen, 127.0.1.51 … 127.0.1.100 refuse, all on one port.
    let first = TcpListener::bind("127.0.1.1:0").expect("bind 127.0.1.1");
    let port = first.local_addr().unwrap().port();
    let mut listeners = vec![first];
    for i in 2..=50 {
        listeners.push(TcpListener::bind(("127.0.1.".to_owned() + &i.to_string(), port)).expect("the same port"));
    }
    let addresses: Vec<String> = (1..=100).map(|i| format!("127.0.1.{i}")).collect();
    let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let Some(hosts) = support::hosts::HostsEntry::add(&refs) else {
        eprintln!("skipped: /etc/hosts is not writable here (the test needs root)");
        return;
    };
    let url = format!("tcp://{}:{port}", hosts.name);
    let vigil = Vigil::start(&upstream(
        "many",
        &url,
        "addresses = \"all\"\ninterval = \"1s\"\ntimeout = \"1s\"\n",
    ));
    // The first run probes 127.0.1.1 … 127.0.1.64 (14 refuse), the next 127.0.1.65 … 100 and
    // 1 … 28 (36 refuse).
    let first_share = format!(
        "[+]upstream:many warn: {url}: 14 of 64 probed addresses fail (100 resolved, 36 not probed this run): 127.0.1.51:{port} (connection refused)"
    );
    let second_share = format!(
        "[+]upstream:many warn: {url}: 36 of 64 probed addresses fail (100 resolved, 36 not probed this run): 127.0.1.65:{port} (connection refused)"
    );
    let mut seen = (false, false);
    let both = poll_until(Duration::from_secs(10), || {
        let body = verbose(&vigil);
        seen.0 |= body.contains(&first_share);
        seen.1 |= body.contains(&second_share);
        seen.0 && seen.1
    });
    assert!(both, "both shares in turn {seen:?}:\n{}", verbose(&vigil));
    let line = verbose(&vigil);
    assert!(line.lines().all(|l| l.len() <= 600), "{line}");
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("vigil_upstream_addresses{upstream=\"many\"} 100"),
        "every address resolved is counted"
    );
    assert_eq!(observed(&vigil, "upstream:many:addresses_not_probed"), Some(36.0));
    drop(vigil);
    drop(listeners);

    // Every address refusing: one reason, the per-address list.
    let Some(pair) = support::hosts::HostsEntry::add(&["127.0.2.1", "127.0.2.2"]) else {
        return;
    };
    let down = refused_addr().port();
    let url = format!("tcp://{}:{down}", pair.name);
    let vigil = Vigil::start(&upstream("down", &url, "addresses = \"all\""));
    wait_for_line(
        &vigil,
        &format!(
            "[-]upstream:down failed: {url}: 2 of 2 addresses fail: 127.0.2.1:{down} (connection refused), 127.0.2.2:{down} (connection refused)\n"
        ),
        Duration::from_secs(5),
    );
}

/// Certificates dated before 1970 (issue 23): UTCTime reaches back to 1950, and a chain with
/// such a date is read like any other: one that expired in 1960 reads "certificate expired", one
/// valid from 1950 to 2100 has its expiry exported although the verifier refuses it.
#[test]
fn certificates_dated_before_1970_are_read() {
    let at = |unix: i64| time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    let expiry_metric = |vigil: &Vigil, name: &str| {
        vigil.get("/metrics").body.lines().find_map(|l| {
            l.strip_prefix(&format!(
                "vigil_tls_cert_expiry_timestamp_seconds{{check=\"upstream:{name}\"}} "
            ))
            .and_then(|v| v.parse::<f64>().ok())
        })
    };
    let dir = tempfile::tempdir().unwrap();
    // 1950-01-01 to 1960-01-01.
    let old = TlsServer::valid_between(at(-631_152_000), at(-315_619_200));
    let ca = dir.path().join("old.pem");
    std::fs::write(&ca, old.ca_pem()).unwrap();
    let url = old.url("/healthz");
    let vigil = Vigil::start(&upstream("old", &url, &format!("ca_file = \"{}\"", ca.display())));
    wait_for_line(
        &vigil,
        &format!("[-]upstream:old failed: GET {url}: certificate expired "),
        Duration::from_secs(5),
    );
    assert!(
        verbose(&vigil).contains(" ago (notAfter 1960-01-01T00:00:00Z)"),
        "{}",
        verbose(&vigil)
    );
    assert_eq!(expiry_metric(&vigil, "old"), Some(-315_619_200.0));
    drop(vigil);

    // 1950-01-01 to 2100-01-01: refused by the verifier, its expiry read all the same.
    let long = TlsServer::valid_between(at(-631_152_000), at(4_102_444_800));
    let ca = dir.path().join("long.pem");
    std::fs::write(&ca, long.ca_pem()).unwrap();
    let vigil = Vigil::start(&upstream(
        "long",
        &long.url("/healthz"),
        &format!("ca_file = \"{}\"", ca.display()),
    ));
    let mut seen = None;
    let read = poll_until(Duration::from_secs(5), || {
        seen = expiry_metric(&vigil, "long");
        seen == Some(4_102_444_800.0)
    });
    assert!(
        read,
        "the expiry of a chain from 1950: {seen:?}\n{}",
        vigil.get("/metrics").body
    );
    let details = diag(&vigil)["vigil"]["checks"]["upstream:long"]["last_run"]["details"].clone();
    assert!(
        details.to_string().contains("2100-01-01T00:00:00"),
        "cert_not_after in /diag: {details}"
    );
}
