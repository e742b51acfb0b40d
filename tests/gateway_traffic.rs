//! `[gateway] traffic_metrics`, `group_by`, `unauthorized_ratio_warn`, `throttled_ratio_warn`
//! (SPEC "The gateway's traffic, by status class and route"): vigil reads each gateway's own
//! exposition and reports the request rate, the shares of 5xx, 4xx, 401, 403 and 429 and
//! p50/p95/p99 over the window; what a gateway cannot give is absent from `/metrics` and
//! "unavailable" in `/diag`; warns name the top contributor.
//!
//! Against real gateways from Debian serving real traffic (HAProxy 2.6's built-in exporter,
//! Caddy 2.6's metrics; tests/support/gateways.rs), and against two scrapes of every other
//! preset's exposition (tests/fixtures/gateways/, the traffic between them in each header).
//!
//! Where a figure shows in `/diag`: `checks["gateway:<observation>"][0].observedValue`, with the
//! observation names below (a number, or the string "unavailable").

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::gateways::{Backend, Caddy, Haproxy, Send, send, sum_samples};
use support::{FakeServer, Response, Vigil, poll_until};

/// `/diag` observation of `vigil_gateway_request_rate`.
const RATE: &str = "request_rate";
/// `/diag` observation of `vigil_gateway_response_ratio{class}`.
fn ratio_observation(class: &str) -> String {
    format!("response_ratio_{class}")
}
/// `/diag` observation of `vigil_gateway_request_duration_quantile_seconds{quantile}`.
fn quantile_observation(quantile: &str) -> &'static str {
    match quantile {
        "0.5" => "request_duration_p50",
        "0.95" => "request_duration_p95",
        "0.99" => "request_duration_p99",
        other => panic!("no quantile {other}"),
    }
}

const CLASSES: [&str; 5] = ["5xx", "4xx", "401", "403", "429"];
const QUANTILES: [&str; 3] = ["0.5", "0.95", "0.99"];
const INTERVAL: Duration = Duration::from_millis(300);

fn config(metrics_url: &str, extra: &str) -> String {
    format!(
        "[system]\nenabled = false\n\n[gateway]\nmetrics_url = \"{metrics_url}\"\ninterval = \"300ms\"\n\
         timeout = \"300ms\"\nfailure_threshold = 1\nwindow = \"1m\"\n{extra}\n"
    )
}

/// The traffic sent through the real gateways: 400 requests by route and status.
/// 5xx 60 (15.0%, all on orders), 4xx 80 (20.0%), 401 40 (10.0%), 403 12 (3.0%; 401 and 403
/// 13.0%, all on users), 429 28 (7.0%, all on search). With `slow`, 20 of the 200s on orders
/// take 300ms (sent at once): the slowest 5%.
fn plan(slow: bool) -> Vec<Send> {
    let mut plan = vec![
        Send::new("/orders/500", 500, 60),
        Send::new("/users/401", 401, 40),
        Send::new("/users/403", 403, 12),
        Send::new("/search/limited", 429, 28),
        Send::new("/users/200", 200, 100),
        Send::new("/search/200", 200, 20),
    ];
    if slow {
        plan.push(Send::new("/orders/200", 200, 120));
        plan.push(Send::new("/orders/200?delay_ms=300", 200, 20).concurrently());
    } else {
        plan.push(Send::new("/orders/200", 200, 140));
    }
    plan
}

const SENT: f64 = 400.0;

/// The value of one series in vigil's `/metrics` (`name{label="value"}` as written).
fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn ratio_series(class: &str) -> String {
    format!("vigil_gateway_response_ratio{{class=\"{class}\"}}")
}

fn quantile_series(quantile: &str) -> String {
    format!("vigil_gateway_request_duration_quantile_seconds{{quantile=\"{quantile}\"}}")
}

fn diag(vigil: &Vigil) -> Value {
    vigil.get("/diag?format=json").json()
}

/// A figure's `observedValue` in `/diag`.
fn observed(diag: &Value, observation: &str) -> Option<Value> {
    diag["checks"][format!("gateway:{observation}")][0]
        .get("observedValue")
        .cloned()
}

fn gateway_line(vigil: &Vigil) -> String {
    vigil
        .get("/readyz?verbose")
        .body
        .lines()
        .find(|l| l.contains("]gateway "))
        .unwrap_or_default()
        .to_owned()
}

fn gateway_runs(vigil: &Vigil) -> u64 {
    diag(vigil)["vigil"]["checks"]["gateway"]["runs"].as_u64().unwrap_or(0)
}

/// Waits until the gateway check has run `more` more times: the window must keep what it saw.
#[track_caller]
fn wait_runs(vigil: &Vigil, more: u64) {
    let start = gateway_runs(vigil);
    assert!(
        poll_until(Duration::from_secs(10), || gateway_runs(vigil) >= start + more),
        "the gateway check stopped running:\n{}",
        vigil.logs()
    );
}

/// Polls `/metrics` until `ok` accepts it; panics with the last body, the verbose readiness and
/// the logs.
#[track_caller]
fn wait_metrics(vigil: &Vigil, what: &str, mut ok: impl FnMut(&str) -> bool) -> String {
    let mut last = String::new();
    if poll_until(Duration::from_secs(15), || {
        last = vigil.get("/metrics").body;
        ok(&last)
    }) {
        return last;
    }
    panic!(
        "no {what} in vigil's /metrics:\n{}\n--- /readyz?verbose ---\n{}\n--- logs ---\n{}",
        last.lines()
            .filter(|l| l.starts_with("vigil_gateway"))
            .collect::<Vec<_>>()
            .join("\n"),
        vigil.get("/readyz?verbose").body,
        vigil.logs()
    );
}

#[track_caller]
fn assert_within(what: &str, value: Option<f64>, low: f64, high: f64) {
    match value {
        Some(v) if v >= low - 1e-12 && v <= high + 1e-12 => {}
        other => panic!("{what}: {other:?} is not within [{low}, {high}]"),
    }
}

#[track_caller]
fn assert_close(what: &str, value: Option<f64>, expected: f64) {
    let tolerance = 1e-9_f64.max(expected.abs() * 1e-6);
    assert_within(what, value, expected - tolerance, expected + tolerance);
}

/// A figure the gateway cannot give: absent from `/metrics`, "unavailable" in `/diag`.
#[track_caller]
fn assert_unavailable(metrics: &str, diag: &Value, series: &str, observation: &str) {
    assert!(
        !metrics.lines().any(|l| l.starts_with(series)),
        "{series} must be absent from /metrics, not 0:\n{metrics}"
    );
    assert_eq!(
        observed(diag, observation),
        Some(Value::from("unavailable")),
        "/diag must say {observation} is unavailable: {}",
        diag["checks"]
    );
}

/// The share a reason gives after `prefix` (`5xx 14.3% of requests …` → 0.143).
fn share_in_reason(line: &str, prefix: &str) -> Option<f64> {
    let rest = &line[line.find(prefix)? + prefix.len()..];
    let number = rest.split('%').next()?;
    number.trim().parse::<f64>().ok().map(|p| p / 100.0)
}

fn warns(line: &str) -> usize {
    line.matches("% of requests over").count()
}

/// The harness itself: both gateways start, route by path, and their own metrics hold the
/// counts sent (frontends and backends for HAProxy, codes and latency buckets for Caddy).
/// Needs nothing from vigil: it passes before the src side exists.
#[test]
fn real_gateways_serve_the_counts_sent() {
    let backend = Backend::start();
    let haproxy = Haproxy::start(backend.addr());
    assert_eq!(send(haproxy.addr, &plan(false)), 400);
    // HAProxy counts a response when its stream ends, which can be just after the client has
    // read it: scrape until the frontend has counted all 400.
    let mut m = String::new();
    let counted = |m: &str| sum_samples(m, "haproxy_frontend_http_responses_total", &[("proxy", "public")]);
    poll_until(Duration::from_secs(5), || {
        m = haproxy.metrics();
        counted(&m) >= 400.0
    });
    let fe = |code| {
        sum_samples(
            &m,
            "haproxy_frontend_http_responses_total",
            &[("proxy", "public"), ("code", code)],
        )
    };
    assert_eq!(
        (fe("2xx"), fe("4xx"), fe("5xx")),
        (260.0, 80.0, 60.0),
        "{}",
        haproxy.log()
    );
    let be = |proxy, code| {
        sum_samples(
            &m,
            "haproxy_backend_http_responses_total",
            &[("proxy", proxy), ("code", code)],
        )
    };
    assert_eq!(be("orders", "5xx"), 60.0);
    assert_eq!(be("users", "4xx"), 52.0);
    assert_eq!(
        sum_samples(&m, "haproxy_backend_http_responses_total", &[]),
        372.0,
        "the 28 denied at the frontend reach no backend"
    );
    assert!(!m.contains("_bucket{"), "HAProxy 2.6 has no histogram");

    let caddy = Caddy::start(backend.addr());
    assert_eq!(send(caddy.addr, &plan(true)), 400);
    let mut m = String::new();
    poll_until(Duration::from_secs(5), || {
        m = caddy.metrics();
        sum_samples(&m, "caddy_http_requests_total", &[]) >= 400.0
    });
    let code = |c| sum_samples(&m, "caddy_http_request_duration_seconds_count", &[("code", c)]);
    assert_eq!(
        (code("200"), code("401"), code("403"), code("429"), code("500")),
        (260.0, 40.0, 12.0, 28.0, 60.0),
        "{}",
        caddy.log()
    );
    assert_eq!(sum_samples(&m, "caddy_http_requests_total", &[]), 400.0);
    let le = |bound| sum_samples(&m, "caddy_http_request_duration_seconds_bucket", &[("le", bound)]);
    assert_eq!(le("+Inf"), 400.0);
    assert!(le("0.25") <= 380.0, "the 20 slow ones take over 250ms: {}", le("0.25"));

    let named = Caddy::start_named(backend.addr(), &["orders", "users"]);
    send(named.server("orders"), &[Send::new("/orders/500", 500, 3)]);
    send(named.server("users"), &[Send::new("/users/401", 401, 2)]);
    let m = named.metrics();
    let by = |server, code| {
        sum_samples(
            &m,
            "caddy_http_request_duration_seconds_count",
            &[("server", server), ("code", code), ("handler", "reverse_proxy")],
        )
    };
    assert_eq!((by("orders", "500"), by("users", "401")), (3.0, 2.0), "{m}");
}

/// HAProxy counts status classes at its frontends (what it answered, its own 429s included;
/// the exporter's frontend counts vigil's scrapes as 2xx, hence the bounds): the 5xx and 4xx
/// shares match what was sent; 401, 403, 429 and the quantiles are unavailable.
#[test]
fn haproxy_frontends_give_class_shares_and_say_what_they_cannot() {
    let backend = Backend::start();
    let haproxy = Haproxy::start(backend.addr());
    let started = Instant::now();
    let vigil = Vigil::start(&config(&haproxy.metrics_url(), "traffic_metrics = \"haproxy\""));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));

    let sending = Instant::now();
    send(haproxy.addr, &plan(false));
    let sent_in = sending.elapsed().as_secs_f64();

    let check = |vigil: &Vigil| {
        let metrics = wait_metrics(vigil, "5xx share of all 400 requests", |m| {
            metric(m, &ratio_series("5xx")).is_some_and(|r| (60.0 / (SENT + 200.0)..=60.0 / SENT).contains(&r))
        });
        // Vigil's own scrapes, answered 2xx by the `stats` frontend, are requests too.
        let scrapes = sum_samples(
            &haproxy.metrics(),
            "haproxy_frontend_http_responses_total",
            &[("proxy", "stats")],
        );
        let all = SENT + scrapes;
        assert_within("5xx", metric(&metrics, &ratio_series("5xx")), 60.0 / all, 60.0 / SENT);
        assert_within("4xx", metric(&metrics, &ratio_series("4xx")), 80.0 / all, 80.0 / SENT);
        let elapsed = started.elapsed().as_secs_f64();
        assert_within(
            "request rate (increase over the span of the window's scrapes)",
            metric(&metrics, "vigil_gateway_request_rate"),
            SENT / elapsed,
            all / sent_in,
        );
        let diag = diag(vigil);
        for class in ["401", "403", "429"] {
            assert_unavailable(&metrics, &diag, &ratio_series(class), &ratio_observation(class));
        }
        for q in QUANTILES {
            assert_unavailable(&metrics, &diag, &quantile_series(q), quantile_observation(q));
        }
        assert!(observed(&diag, &ratio_observation("5xx")).is_some_and(|v| v.is_f64()));
        assert!(observed(&diag, RATE).is_some_and(|v| v.is_f64()));

        let line = gateway_line(vigil);
        assert!(line.starts_with("[+]gateway warn: "), "a warn, readiness kept: {line}");
        assert_within(
            &format!("the share in {line:?}"),
            share_in_reason(&line, "5xx "),
            60.0 / all - 0.0005,
            60.0 / SENT + 0.0005,
        );
        assert!(line.contains("% of requests over 1m"), "{line}");
        assert_eq!(warns(&line), 1, "no 401/403 or 429 warn from classes: {line}");
        assert!(!line.contains("of them)"), "no group_by, no contributor: {line}");
        support::assert_promtool_accepts(&metrics);
    };
    check(&vigil);
    wait_runs(&vigil, 3);
    check(&vigil);
    assert_eq!(vigil.get("/readyz").status, 200);
}

/// HAProxy's backends as the routes (`requests_metric` overrides the preset's frontend counter,
/// `group_by = "proxy"`): the 5xx warn names the backend that served them. HAProxy's own 429s
/// reach no backend: 372 requests.
#[test]
fn haproxy_backends_name_the_failing_route() {
    let backend = Backend::start();
    let haproxy = Haproxy::start(backend.addr());
    let vigil = Vigil::start(&config(
        &haproxy.metrics_url(),
        "traffic_metrics = \"haproxy\"\nrequests_metric = \"haproxy_backend_http_responses_total\"\ngroup_by = \"proxy\"",
    ));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    send(haproxy.addr, &plan(false));

    let expected = 60.0 / 372.0;
    let metrics = wait_metrics(&vigil, "the backends' 5xx share", |m| {
        metric(m, &ratio_series("5xx")).is_some_and(|r| (r - expected).abs() < 1e-9)
    });
    assert_close("4xx", metric(&metrics, &ratio_series("4xx")), 52.0 / 372.0);
    let reason = "5xx 16.1% of requests over 1m (proxy orders: 100% of them)";
    assert!(
        poll_until(Duration::from_secs(5), || gateway_line(&vigil).contains(reason)),
        "{reason:?} not in {:?}",
        gateway_line(&vigil)
    );
    wait_runs(&vigil, 3);
    let line = gateway_line(&vigil);
    assert!(line.contains(reason), "the window keeps it: {line}");
    assert_eq!(warns(&line), 1, "{line}");
}

/// Caddy 2.6 (Caddyfile, `servers { metrics }`): codes, so every share is known and exact
/// (its admin endpoint's scrapes are not traffic); the duration histogram gives the quantiles
/// (the 20 slow requests are the slowest 5%); 5xx over error_ratio_warn, 401+403 over
/// unauthorized_ratio_warn (0.10) and 429 over throttled_ratio_warn (0.05) each warn.
#[test]
fn caddy_gives_every_share_and_the_quantiles_and_warns_on_each() {
    let backend = Backend::start();
    let caddy = Caddy::start(backend.addr());
    let started = Instant::now();
    let vigil = Vigil::start(&config(&caddy.metrics_url(), "traffic_metrics = \"caddy\""));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    let sending = Instant::now();
    send(caddy.addr, &plan(true));
    let sent_in = sending.elapsed().as_secs_f64();

    let expected = [60.0, 80.0, 40.0, 12.0, 28.0].map(|n| n / SENT);
    let check = |vigil: &Vigil| {
        let metrics = wait_metrics(vigil, "every share of the 400 requests", |m| {
            CLASSES
                .iter()
                .zip(expected)
                .all(|(c, e)| metric(m, &ratio_series(c)).is_some_and(|r| (r - e).abs() < 1e-9))
        });
        let diag = diag(vigil);
        for (class, share) in CLASSES.iter().zip(expected) {
            let seen = observed(&diag, &ratio_observation(class)).and_then(|v| v.as_f64());
            assert_close(&format!("/diag {class}"), seen, share);
        }
        let q = |quantile| metric(&metrics, &quantile_series(quantile));
        assert_within("p50", q("0.5"), 0.0, 0.1);
        assert_within("p95", q("0.95"), q("0.5").unwrap_or(0.0), 0.25);
        assert_within("p99 (within the slow 5%)", q("0.99"), 0.25, 1.0);
        for quantile in QUANTILES {
            assert!(observed(&diag, quantile_observation(quantile)).is_some_and(|v| v.is_f64()));
        }
        assert_within(
            "request rate",
            metric(&metrics, "vigil_gateway_request_rate"),
            SENT / started.elapsed().as_secs_f64(),
            SENT / sent_in,
        );

        let line = gateway_line(vigil);
        for reason in [
            "5xx 15.0% of requests over 1m",
            "13.0% of requests over 1m",
            "7.0% of requests over 1m",
        ] {
            assert!(line.contains(reason), "{reason:?} not in {line:?}");
        }
        assert!(line.contains("401") && line.contains("429"), "{line}");
        assert!(line.starts_with("[+]gateway warn: "), "{line}");
        support::assert_promtool_accepts(&metrics);
    };
    check(&vigil);
    wait_runs(&vigil, 3);
    check(&vigil);
}

/// Caddy's routes are its servers (the `server` label; 2.6 has no route label, and only JSON
/// config names servers): each warn names the server that served it.
#[test]
fn caddy_servers_name_the_top_contributor_of_each_warn() {
    let backend = Backend::start();
    let caddy = Caddy::start_named(backend.addr(), &["orders", "users", "search"]);
    let vigil = Vigil::start(&config(
        &caddy.metrics_url(),
        "traffic_metrics = \"caddy\"\ngroup_by = \"server\"",
    ));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    for step in plan(false) {
        let server = step.path.split('/').nth(1).unwrap_or_default().to_owned();
        send(caddy.server(&server), &[step]);
    }
    let reasons = [
        "5xx 15.0% of requests over 1m (server orders: 100% of them)",
        "13.0% of requests over 1m (server users: 100% of them)",
        "7.0% of requests over 1m (server search: 100% of them)",
    ];
    let mut line = String::new();
    let all = |line: &str| reasons.iter().all(|r| line.contains(r));
    assert!(
        poll_until(Duration::from_secs(15), || {
            line = gateway_line(&vigil);
            all(&line)
        }),
        "{reasons:?} not all in {line:?}\n{}",
        vigil.logs()
    );
    wait_runs(&vigil, 3);
    assert!(all(&gateway_line(&vigil)), "{}", gateway_line(&vigil));
}

/// What a fixture pair must give: the traffic between the two scrapes, in the fixture's header.
struct Expected {
    preset: &'static str,
    extra: &'static str,
    requests: f64,
    /// 5xx, 4xx, 401, 403, 429; none where the gateway cannot give it.
    ratios: [Option<f64>; 5],
    quantiles: Option<[f64; 3]>,
    /// Fragments of the gateway's line in /readyz?verbose, and how many traffic warns it has.
    reasons: Vec<String>,
    warns: usize,
}

/// Serves a fixture's first scrape until vigil has read it, then the second; checks what vigil
/// reports, and that it still does three runs later (the window keeps the step).
fn fixture_gives(expected: Expected) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gateways");
    let read = |which: &str| {
        std::fs::read_to_string(format!("{dir}/{}.{which}.prom", expected.preset)).expect("fixture exists")
    };
    let text = Arc::new(Mutex::new(read("before")));
    let served = text.clone();
    let gateway = FakeServer::start(move |request| match request.path.as_str() {
        "/metrics" => Response::prometheus(served.lock().unwrap().clone()),
        _ => Response::new(404),
    });
    let started = Instant::now();
    let vigil = Vigil::start(&config(
        &gateway.url("/metrics"),
        &format!(
            "traffic_metrics = \"{}\"\nunauthorized_ratio_warn = 0.05\n{}",
            expected.preset, expected.extra
        ),
    ));
    vigil.wait_for_status("/readyz", 200, Duration::from_secs(10));
    *text.lock().unwrap() = read("after");

    let check = |vigil: &Vigil| {
        let five = expected.ratios[0].expect("every preset gives 5xx");
        let metrics = wait_metrics(vigil, "the 5xx share of the second scrape", |m| {
            metric(m, &ratio_series("5xx")).is_some_and(|r| (r - five).abs() < 1e-9)
        });
        let diag = diag(vigil);
        for (class, ratio) in CLASSES.iter().zip(expected.ratios) {
            match ratio {
                Some(ratio) => {
                    assert_close(class, metric(&metrics, &ratio_series(class)), ratio);
                    let seen = observed(&diag, &ratio_observation(class)).and_then(|v| v.as_f64());
                    assert_close(&format!("/diag {class}"), seen, ratio);
                }
                None => assert_unavailable(&metrics, &diag, &ratio_series(class), &ratio_observation(class)),
            }
        }
        for (i, q) in QUANTILES.iter().enumerate() {
            match expected.quantiles {
                Some(qs) => assert_close(&format!("p{q}"), metric(&metrics, &quantile_series(q)), qs[i]),
                None => assert_unavailable(&metrics, &diag, &quantile_series(q), quantile_observation(q)),
            }
        }
        assert_within(
            "request rate",
            metric(&metrics, "vigil_gateway_request_rate"),
            expected.requests / started.elapsed().as_secs_f64(),
            expected.requests / (INTERVAL.as_secs_f64() * 0.5),
        );
        let line = gateway_line(vigil);
        for reason in &expected.reasons {
            assert!(line.contains(reason.as_str()), "{reason:?} not in {line:?}");
        }
        assert_eq!(warns(&line), expected.warns, "{line}");
    };
    check(&vigil);
    wait_runs(&vigil, 3);
    check(&vigil);
}

fn five(share: f64) -> String {
    format!("5xx {:.1}% of requests over 1m", share * 100.0)
}

/// The 200 requests of the traefik, kong, nginx_ingress and spring fixtures: 5xx 10%, 4xx 20%,
/// 401 8%, 403 2%, 429 6%.
const EVERY_SHARE: [Option<f64>; 5] = [Some(0.10), Some(0.20), Some(0.08), Some(0.02), Some(0.06)];

fn three_warns(label: &str, errors_on: &str, unauthorized_on: &str, throttled_on: &str) -> Vec<String> {
    vec![
        format!("5xx 10.0% of requests over 1m ({label} {errors_on}: 75% of them)"),
        format!("10.0% of requests over 1m ({label} {unauthorized_on}: 100% of them)"),
        format!("6.0% of requests over 1m ({label} {throttled_on}: 100% of them)"),
    ]
}

#[test]
fn haproxy_fixture_counts_frontends_only() {
    let n = 201.0;
    fixture_gives(Expected {
        preset: "haproxy",
        extra: "group_by = \"proxy\"",
        requests: n,
        ratios: [Some(20.0 / n), Some(40.0 / n), None, None, None],
        quantiles: None,
        reasons: vec![format!("{} (proxy public: 100% of them)", five(20.0 / n))],
        warns: 1,
    });
}

#[test]
fn caddy_fixture_counts_handler_errors_as_requests_of_no_class() {
    let n = 210.0;
    fixture_gives(Expected {
        preset: "caddy",
        extra: "group_by = \"server\"",
        requests: n,
        ratios: [20.0, 40.0, 16.0, 4.0, 12.0].map(|c| Some(c / n)),
        quantiles: Some([0.005 * 100.0 / 119.0, 0.175, 0.375]),
        reasons: vec![
            format!("{} (server srv0: 100% of them)", five(20.0 / n)),
            "9.5% of requests over 1m (server srv0: 100% of them)".to_owned(),
            "5.7% of requests over 1m (server srv0: 100% of them)".to_owned(),
        ],
        warns: 3,
    });
}

#[test]
fn envoy_fixture_reads_classes_and_milliseconds_without_its_admin_listener() {
    fixture_gives(Expected {
        preset: "envoy",
        extra: "group_by = \"envoy_http_conn_manager_prefix\"",
        requests: 200.0,
        ratios: [Some(0.10), Some(0.20), None, None, None],
        quantiles: Some([0.05 + 0.05 * 10.0 / 90.0, 0.19375, 0.375]),
        reasons: vec![format!(
            "{} (envoy_http_conn_manager_prefix ingress_http: 100% of them)",
            five(0.10)
        )],
        warns: 1,
    });
}

/// Envoy's clusters through the overrides: codes (so 401/403/429 are known), routes by
/// cluster, still milliseconds.
#[test]
fn envoy_fixture_clusters_through_overrides() {
    let n = 188.0;
    fixture_gives(Expected {
        preset: "envoy",
        extra: "requests_metric = \"envoy_cluster_upstream_rq\"\nstatus_label = \"envoy_response_code\"\n\
                duration_metric = \"envoy_cluster_upstream_rq_time\"\ngroup_by = \"envoy_cluster_name\"",
        requests: n,
        ratios: [Some(20.0 / n), Some(28.0 / n), Some(16.0 / n), Some(4.0 / n), Some(0.0)],
        quantiles: Some([
            0.025 + 0.025 * 44.0 / 90.0,
            0.05 + 0.05 * (0.95 * n - 140.0) / 43.0,
            0.1 + 0.15 * (0.99 * n - 183.0) / 5.0,
        ]),
        reasons: vec![
            format!("{} (envoy_cluster_name orders: 75% of them)", five(20.0 / n)),
            "10.6% of requests over 1m (envoy_cluster_name users: 100% of them)".to_owned(),
        ],
        warns: 2,
    });
}

#[test]
fn traefik_fixture_gives_every_share() {
    fixture_gives(Expected {
        preset: "traefik",
        extra: "group_by = \"entrypoint\"",
        requests: 200.0,
        ratios: EVERY_SHARE,
        quantiles: Some([0.1 * 100.0 / 120.0, 0.8625, 3.1]),
        reasons: three_warns("entrypoint", "websecure", "websecure", "websecure"),
        warns: 3,
    });
}

#[test]
fn kong_fixture_gives_every_share_in_milliseconds() {
    fixture_gives(Expected {
        preset: "kong",
        extra: "group_by = \"route\"",
        requests: 200.0,
        ratios: EVERY_SHARE,
        quantiles: Some([0.05 + 0.03 * 10.0 / 70.0, 0.1 + 0.15 * 2.0 / 9.0, 0.3]),
        reasons: three_warns("route", "orders-route", "users-route", "search-route"),
        warns: 3,
    });
}

#[test]
fn nginx_ingress_fixture_gives_every_share() {
    fixture_gives(Expected {
        preset: "nginx_ingress",
        extra: "group_by = \"ingress\"",
        requests: 200.0,
        ratios: EVERY_SHARE,
        quantiles: Some([0.053125, 0.1 + 0.15 * 30.0 / 31.0, 0.5 + 0.5 / 3.0]),
        reasons: three_warns("ingress", "orders", "users", "search"),
        warns: 3,
    });
}

/// Spring Cloud Gateway without percentiles-histogram: every share, no quantile.
#[test]
fn spring_fixture_gives_every_share_and_no_quantiles() {
    fixture_gives(Expected {
        preset: "spring",
        extra: "group_by = \"routeId\"",
        requests: 200.0,
        ratios: EVERY_SHARE,
        quantiles: None,
        reasons: three_warns("routeId", "orders", "users", "search"),
        warns: 3,
    });
}
