//! `[gateway]` against a fake gateway on 127.0.0.1: health, the DB pool for each preset
//! moving through ok, warn, exhausted and back, several pools summed, waiters, and the
//! gateway's own error ratio and p95.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::{FakeServer, Response, Vigil, poll_until};

/// A fake gateway: `/healthz` answers `health`, `/metrics` answers `metrics`.
struct Gateway {
    server: FakeServer,
    health: Arc<Mutex<u16>>,
    metrics: Arc<Mutex<String>>,
}

impl Gateway {
    fn start(metrics: &str) -> Gateway {
        let health = Arc::new(Mutex::new(200u16));
        let text = Arc::new(Mutex::new(metrics.to_owned()));
        let (h, t) = (health.clone(), text.clone());
        let server = FakeServer::start(move |request| match request.path.as_str() {
            "/healthz" => Response::text(*h.lock().unwrap(), "ok"),
            "/metrics" => Response::prometheus(t.lock().unwrap().clone()),
            _ => Response::new(404),
        });
        Gateway {
            server,
            health,
            metrics: text,
        }
    }

    fn set_metrics(&self, text: &str) {
        *self.metrics.lock().unwrap() = text.to_owned();
    }

    fn set_health(&self, status: u16) {
        *self.health.lock().unwrap() = status;
    }

    fn config(&self, extra: &str) -> String {
        format!(
            "[system]\nenabled = false\n\n[gateway]\nhealth_url = \"{}\"\nmetrics_url = \"{}\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\nfailure_threshold = 1\nwindow = \"1s\"\n{extra}\n",
            self.server.url("/healthz"),
            self.server.url("/metrics")
        )
    }
}

fn verbose(vigil: &Vigil) -> String {
    vigil.get("/readyz?verbose").body
}

#[track_caller]
fn wait_for_line(vigil: &Vigil, line: &str) {
    let mut last = String::new();
    if !poll_until(Duration::from_secs(6), || {
        last = verbose(vigil);
        last.contains(line)
    }) {
        panic!(
            "no line containing {line:?} in /readyz?verbose:\n{last}\nlogs:\n{}",
            vigil.logs()
        );
    }
}

fn diag(vigil: &Vigil) -> Value {
    serde_json::from_str(&vigil.get("/diag?format=json").body).expect("/diag is JSON")
}

/// The pool exposition for `preset` with `in_use` of 20 and `waiting`.
fn pool(preset: &str, in_use: u32, waiting: u32) -> String {
    match preset {
        "generic" => format!(
            "# TYPE connection_pool_in_use gauge\nconnection_pool_in_use {in_use}\nconnection_pool_max 20\nconnection_pool_waiting {waiting}\n"
        ),
        "hikaricp" => format!(
            "# TYPE hikaricp_connections_active gauge\nhikaricp_connections_active{{pool=\"HikariPool-1\"}} {in_use}\nhikaricp_connections_max{{pool=\"HikariPool-1\"}} 20\nhikaricp_connections_pending{{pool=\"HikariPool-1\"}} {waiting}\n"
        ),
        "go_sql" => format!(
            "# TYPE go_sql_wait_count_total counter\ngo_sql_in_use_connections{{db_name=\"gw\"}} {in_use}\ngo_sql_max_open_connections{{db_name=\"gw\"}} 20\ngo_sql_wait_count_total{{db_name=\"gw\"}} {waiting}\n"
        ),
        other => panic!("no preset {other}"),
    }
}

fn pool_moves_through_ok_warn_exhausted_and_back(preset: &str) {
    let gateway = Gateway::start(&pool(preset, 5, 0));
    let vigil = Vigil::start(&gateway.config(&format!("pool_metrics = \"{preset}\"")));
    wait_for_line(&vigil, "[+]gateway ok");
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("vigil_gateway_pool_saturation_ratio 0.25")
    );

    gateway.set_metrics(&pool(preset, 17, 0));
    wait_for_line(&vigil, "[+]gateway warn: DB pool 17 of 20 in use (85%, warn at 80%)");
    assert_eq!(vigil.get("/readyz").status, 200);

    gateway.set_metrics(&pool(preset, 20, 3));
    wait_for_line(&vigil, "[-]gateway failed: DB pool 20 of 20 in use (100%, fail at 95%)");
    assert_eq!(vigil.get("/readyz").status, 503, "the gateway is critical by default");
    let metrics = vigil.get("/metrics").body;
    assert!(
        metrics.contains("vigil_gateway_pool_connections{state=\"in_use\"} 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_gateway_pool_connections{state=\"max\"} 20"),
        "{metrics}"
    );
    let hint = diag(&vigil).to_string();
    assert!(hint.contains("DB_POOL_SIZE"), "{hint}");

    gateway.set_metrics(&pool(preset, 4, 3));
    wait_for_line(&vigil, "[+]gateway ok");
    assert_eq!(vigil.get("/readyz").status, 200);
}

#[test]
fn generic_pool_moves_through_ok_warn_exhausted_and_back() {
    pool_moves_through_ok_warn_exhausted_and_back("generic");
}

#[test]
fn hikaricp_pool_moves_through_ok_warn_exhausted_and_back() {
    pool_moves_through_ok_warn_exhausted_and_back("hikaricp");
}

#[test]
fn go_sql_pool_moves_through_ok_warn_exhausted_and_back() {
    pool_moves_through_ok_warn_exhausted_and_back("go_sql");
}

#[test]
fn several_pools_are_summed_and_each_is_shown() {
    let gateway = Gateway::start(
        "connection_pool_in_use{pool=\"read\"} 9\nconnection_pool_in_use{pool=\"write\"} 8\n\
         connection_pool_max{pool=\"read\"} 10\nconnection_pool_max{pool=\"write\"} 10\n",
    );
    let vigil = Vigil::start(&gateway.config(""));
    wait_for_line(&vigil, "[+]gateway warn: DB pool 17 of 20 in use (85%, warn at 80%)");
    let text = diag(&vigil).to_string();
    assert!(
        text.contains("{pool=\\\"read\\\"}") && text.contains("{pool=\\\"write\\\"}"),
        "{text}"
    );
}

#[test]
fn waiters_for_the_whole_window_warn() {
    let gateway = Gateway::start(&pool("generic", 5, 2));
    let vigil = Vigil::start(&gateway.config(""));
    wait_for_line(&vigil, "[+]gateway ok");
    wait_for_line(&vigil, "[+]gateway warn: DB pool has had waiters for 1s");
    gateway.set_metrics(&pool("generic", 5, 0));
    wait_for_line(&vigil, "[+]gateway ok");
}

#[test]
fn a_failing_health_endpoint_fails_readiness() {
    let gateway = Gateway::start(&pool("generic", 1, 0));
    let vigil = Vigil::start(&gateway.config(""));
    wait_for_line(&vigil, "[+]gateway ok");
    assert!(vigil.get("/metrics").body.contains("vigil_gateway_up 1"));
    gateway.set_health(503);
    wait_for_line(
        &vigil,
        &format!(
            "[-]gateway failed: GET {}: status 503, expected 2xx",
            gateway.server.url("/healthz")
        ),
    );
    assert_eq!(vigil.get("/readyz").status, 503);
    assert!(vigil.get("/metrics").body.contains("vigil_gateway_up 0"));
}

/// A scrape that cannot be read leaves the pool figures unknown (NaN), not at their last
/// values: a saturation frozen at 100 % would keep the exhaustion alert firing on nothing.
#[test]
fn an_unreadable_scrape_makes_the_pool_figures_unknown() {
    let gateway = Gateway::start(&pool("generic", 20, 3));
    let vigil = Vigil::start(&gateway.config(""));
    wait_for_line(&vigil, "[-]gateway failed: DB pool 20 of 20 in use");
    gateway.set_metrics("connection_pool_in_use{ broken\n");
    wait_for_line(&vigil, "[+]gateway warn: GET");
    let metrics = vigil.get("/metrics").body;
    for line in [
        "vigil_gateway_pool_saturation_ratio NaN",
        "vigil_gateway_pool_connections{state=\"in_use\"} NaN",
        "vigil_gateway_up 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    support::assert_promtool_accepts(&metrics);
}

/// A slow health endpoint and a slow `/metrics` are asked side by side: each takes 60 % of the
/// timeout, so one after the other would not fit in a run.
#[test]
fn the_health_probe_and_the_scrape_share_the_run_side_by_side() {
    let slow = Duration::from_millis(600);
    let server = FakeServer::start(move |request| match request.path.as_str() {
        "/healthz" => Response::text(200, "ok").with_delay(slow),
        "/metrics" => Response::prometheus(pool("generic", 5, 0)).with_delay(slow),
        _ => Response::new(404),
    });
    let vigil = Vigil::start(&format!(
        "[system]\nenabled = false\n\n[gateway]\nhealth_url = \"{}\"\nmetrics_url = \"{}\"\ninterval = \"2s\"\ntimeout = \"1s\"\nfailure_threshold = 1\n",
        server.url("/healthz"),
        server.url("/metrics")
    ));
    wait_for_line(&vigil, "[+]gateway ok");
    let metrics = vigil.get("/metrics").body;
    assert!(
        metrics.contains("vigil_gateway_pool_saturation_ratio 0.25"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_gateway_up 1"), "{metrics}");
}

/// The gateway's own traffic: `requests` served, `errors` of them 5xx, `slow` of them over 2 s.
fn traffic(requests: u32, errors: u32, slow: u32) -> String {
    let fast = requests - slow;
    format!(
        "{}http_requests_total{{status=\"200\"}} {}\nhttp_requests_total{{status=\"503\"}} {errors}\n\
         # TYPE http_request_duration_seconds histogram\n\
         http_request_duration_seconds_bucket{{le=\"0.5\"}} {fast}\nhttp_request_duration_seconds_bucket{{le=\"2\"}} {fast}\n\
         http_request_duration_seconds_bucket{{le=\"5\"}} {requests}\nhttp_request_duration_seconds_bucket{{le=\"+Inf\"}} {requests}\n\
         http_request_duration_seconds_sum 0\nhttp_request_duration_seconds_count {requests}\n",
        pool("generic", 1, 0),
        requests - errors
    )
}

#[test]
fn error_ratio_and_p95_warn_by_default_and_fail_when_configured() {
    let gateway = Gateway::start(&pool("generic", 1, 0));
    let vigil = Vigil::start(&gateway.config(""));
    wait_for_line(&vigil, "[+]gateway ok");
    assert!(
        !vigil.get("/metrics").body.contains("vigil_gateway_error_ratio"),
        "no error ratio while the gateway exports no request counts"
    );

    // Counters grow by 100 requests per scrape, 10 of them 5xx: 10%.
    let served = Arc::new(Mutex::new(0u32));
    let counter = served.clone();
    let server = &gateway.server;
    server.set_handler(move |request| match request.path.as_str() {
        "/metrics" => {
            let mut n = counter.lock().unwrap();
            *n += 1;
            Response::prometheus(traffic(100 * *n, 10 * *n, 0))
        }
        _ => Response::text(200, "ok"),
    });
    wait_for_line(
        &vigil,
        "[+]gateway warn: gateway error ratio 10.0% over 1s exceeds 5.0%",
    );
    assert_eq!(vigil.get("/readyz").status, 200, "traffic figures only warn by default");
    assert!(vigil.get("/metrics").body.contains("vigil_gateway_error_ratio 0.1"));

    // Now every request is slow (between 2 and 5 s) and none fails.
    let slow = Arc::new(Mutex::new(0u32));
    server.set_handler(move |request| match request.path.as_str() {
        "/metrics" => {
            let mut n = slow.lock().unwrap();
            *n += 1;
            Response::prometheus(traffic(100 * *n, 0, 100 * *n))
        }
        _ => Response::text(200, "ok"),
    });
    wait_for_line(&vigil, "[+]gateway warn: gateway p95 4.");
    let metrics = vigil.get("/metrics").body;
    assert!(
        metrics.contains("vigil_gateway_request_duration_p95_seconds 4."),
        "{metrics}"
    );
    drop(vigil);

    let vigil = Vigil::start(&gateway.config("latency_p95_fail = \"3s\""));
    wait_for_line(&vigil, "[-]gateway failed: gateway p95 4.");
    assert_eq!(vigil.get("/readyz").status, 503);
}

#[test]
fn gateway_and_upstream_metrics_pass_promtool() {
    let gateway = Gateway::start(&traffic(100, 1, 0));
    let config = format!(
        "{}\n[[upstream]]\nname = \"orders\"\nurl = \"{}\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\n",
        gateway.config(""),
        gateway.server.url("/healthz")
    );
    let vigil = Vigil::start(&config);
    wait_for_line(&vigil, "[+]upstream:orders ok");
    wait_for_line(&vigil, "[+]gateway ok");
    let body = vigil.get("/metrics").body;
    for name in [
        "vigil_gateway_up 1",
        "vigil_gateway_pool_saturation_ratio",
        "vigil_gateway_pool_connections{state=\"in_use\"}",
        "vigil_upstream_up{upstream=\"orders\"} 1",
        "vigil_upstream_phase_duration_seconds{phase=\"dns\",upstream=\"orders\"}",
    ] {
        assert!(body.contains(name), "{name} missing from:\n{body}");
    }
    support::assert_promtool_accepts(&body);
}

/// The peak resident memory of a process, from `/proc/PID/status` (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// A latency histogram with tens of thousands of distinct `le`
/// bounds (well under the 4 MiB cap) made the traffic computation quadratic on the thread the
/// other checks share, so `/livez` failed and the kubelet restarted vigil in a loop.
#[test]
fn a_histogram_with_thousands_of_buckets_neither_stalls_vigil_nor_hides_the_pool() {
    let mut metrics = pool("generic", 5, 0);
    for i in 0..5_000 {
        metrics.push_str(&format!(
            "http_request_duration_seconds_bucket{{le=\"{}\"}} {i}\n",
            f64::from(i) / 1000.0
        ));
    }
    metrics.push_str("http_request_duration_seconds_bucket{le=\"+Inf\"} 5000\n");
    let gateway = Gateway::start(&metrics);
    let vigil = Vigil::start(&gateway.config(""));
    wait_for_line(
        &vigil,
        "[+]gateway warn: the gateway's http_request_duration_seconds_bucket has more than 128 buckets",
    );
    let doc = diag(&vigil);
    assert_eq!(
        doc["checks"]["gateway:pool_in_use"][0]["observedValue"], 5.0,
        "the pool is still read"
    );
    for _ in 0..5 {
        assert_eq!(vigil.get("/livez").status, 200);
    }
}

/// A latency histogram of many series (Spring's percentiles-histogram: ~70 buckets per route,
/// method and status) is larger than the check reads: p50/p95/p99 are not computed, and the
/// pool and the shares still are. Before, its samples counted against the pool's budget, and
/// without `health_url` the whole check failed on every replica.
#[test]
fn a_histogram_of_many_series_leaves_the_pool_read_and_the_check_passing() {
    let mut metrics = pool("generic", 5, 0);
    metrics.push_str("# TYPE http_requests_total counter\nhttp_requests_total{status=\"200\"} 100\n");
    for route in 0..200 {
        for bound in 0..60 {
            metrics.push_str(&format!(
                "http_request_duration_seconds_bucket{{route=\"/r{route}\",le=\"{}\"}} {bound}\n",
                f64::from(bound) / 100.0
            ));
        }
    }
    let gateway = Gateway::start(&metrics);
    let config = gateway
        .config("")
        .lines()
        .filter(|l| !l.starts_with("health_url"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("timeout = \"200ms\"", "timeout = \"1s\"")
        .replace("interval = \"200ms\"", "interval = \"1s\"")
        .replace("window = \"1s\"", "window = \"3s\"");
    let vigil = Vigil::start(&config);
    wait_for_line(
        &vigil,
        "[+]gateway warn: the gateway's http_request_duration_seconds_bucket has more than 10000 samples: its p50/p95/p99 are not computed",
    );
    assert_eq!(vigil.get("/readyz").status, 200, "{}", verbose(&vigil));
    let doc = diag(&vigil);
    assert_eq!(
        doc["checks"]["gateway:pool_in_use"][0]["observedValue"], 5.0,
        "the pool is still read"
    );
}

/// Tens of thousands of series of the metrics the check reads are refused, not parsed into
/// unbounded memory: a scrape of 100,000 labelled pool series took vigil to 255 MiB, past its
/// 64 MiB limit. Series of other metrics cost nothing beyond reading the lines.
#[test]
fn a_hundred_thousand_pool_series_are_refused_within_bounded_memory() {
    let mut metrics = String::from("# TYPE connection_pool_in_use gauge\n");
    for i in 0..100_000 {
        metrics.push_str(&format!("connection_pool_in_use{{pool=\"p{i}\"}} 1\n"));
    }
    assert!(
        metrics.len() < 4 * 1024 * 1024,
        "under the scrape cap: {}",
        metrics.len()
    );
    let gateway = Gateway::start(&metrics);
    // A debug build reads 100,000 lines in more than the 200ms the other tests allow.
    let config = gateway
        .config("")
        .replace("timeout = \"200ms\"", "timeout = \"2s\"")
        .replace("interval = \"200ms\"", "interval = \"2s\"")
        .replace("window = \"1s\"", "window = \"4s\"");
    let vigil = Vigil::start(&config);
    wait_for_line(&vigil, "[+]gateway warn: GET ");
    let body = verbose(&vigil);
    assert!(
        body.contains("more than 10000 samples of the pool and traffic metrics"),
        "{body}"
    );
    // Two more scrapes, then the peak.
    let runs = |v: &Vigil| diag(v)["vigil"]["checks"]["gateway"]["runs"].as_u64().unwrap_or(0);
    let seen = runs(&vigil);
    assert!(poll_until(Duration::from_secs(5), || runs(&vigil) >= seen + 2));
    let peak = peak_rss(vigil.pid());
    assert!(peak < 48 * 1024 * 1024, "peak RSS {} MiB", peak / (1024 * 1024));
    assert_eq!(vigil.get("/livez").status, 200);

    // Series of a metric the check does not read: read past (every line is still checked, which
    // a debug build under load takes its time over: 20,000 of them here), the pool fine.
    let mut other = pool("generic", 5, 0);
    for i in 0..20_000 {
        other.push_str(&format!("unrelated_series{{n=\"{i}\"}} 1\n"));
    }
    gateway.set_metrics(&other);
    wait_for_line(&vigil, "[+]gateway ok");
}

/// NaN or negative pool figures are the gateway's bug: a warn naming the figure, never `ok`
/// with a saturation of -25%.
#[test]
fn impossible_pool_figures_warn_naming_the_figure() {
    let gateway = Gateway::start("connection_pool_in_use NaN\nconnection_pool_max 20\n");
    let vigil = Vigil::start(&gateway.config(""));
    wait_for_line(
        &vigil,
        "[+]gateway warn: the gateway reports an impossible pool figure: connection_pool_in_use = NaN",
    );
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("vigil_gateway_pool_saturation_ratio NaN")
    );
    gateway.set_metrics("connection_pool_in_use 5\nconnection_pool_max -20\n");
    wait_for_line(
        &vigil,
        "[+]gateway warn: the gateway reports an impossible pool figure: connection_pool_max = -20",
    );
    gateway.set_metrics("connection_pool_in_use -5\nconnection_pool_max 20\n");
    wait_for_line(&vigil, "connection_pool_in_use = -5");
    gateway.set_metrics("connection_pool_in_use 5\nconnection_pool_max 20\n");
    wait_for_line(&vigil, "[+]gateway ok");
}

/// The gateway's https endpoints report their certificate's expiry like the upstreams do: read
/// from the presented chain, also when it is not trusted (the gateway section has no ca_file).
#[test]
fn an_expired_gateway_certificate_is_named_and_its_expiry_exported() {
    let server = support::tls::TlsServer::start_valid_for(Some(-2 * 86_400));
    let config = format!(
        "[system]\nenabled = false\n[gateway]\nhealth_url = \"{}\"\ninterval = \"200ms\"\ntimeout = \"200ms\"\nfailure_threshold = 1\n",
        server.url("/healthz")
    );
    let vigil = Vigil::start(&config);
    wait_for_line(&vigil, "certificate expired 2d ago (notAfter ");
    let metrics = vigil.get("/metrics").body;
    let expiry: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vigil_tls_cert_expiry_timestamp_seconds{check=\"gateway\"} "))
        .and_then(|v| v.parse().ok())
        .expect("exported although verification failed");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((expiry - (now - 2.0 * 86_400.0)).abs() < 120.0, "{expiry} vs {now}");
}
