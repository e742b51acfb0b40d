//! What an upstream said (SPEC "Upstream answers, client certificates, keys"), against real
//! HTTP servers on 127.0.0.1: an unexpected status names up to 200 bytes of the body, made
//! printable on one line; a 429 or 503 with `Retry-After` (seconds or an HTTP date) says so,
//! and the check's next run waits for it (at most 10 intervals): the upstream sees no request
//! before then, while the last result stands, not stale, and `/livez` stays 200.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use support::{FakeServer, Response, Vigil};

/// How long a test waits for the agent to see something (runs are 300–500 ms apart).
const DEADLINE: Duration = Duration::from_secs(10);

/// One `[[upstream]]` with `failure_threshold = 1`, running every `interval`.
fn upstream(name: &str, url: &str, interval: &str) -> String {
    format!(
        "[system]\nenabled = false\n\n[[upstream]]\nname = \"{name}\"\nurl = \"{url}\"\n\
         interval = \"{interval}\"\ntimeout = \"{interval}\"\nfailure_threshold = 1\n"
    )
}

/// Polls `upstream:<name>`'s `/readyz?verbose` line until `done` holds for it.
#[track_caller]
fn wait_for_line(vigil: &Vigil, name: &str, what: &str, done: impl FnMut(&str) -> bool) -> String {
    vigil.wait_for_readyz_line(&format!("upstream:{name}"), what, DEADLINE, done)
}

/// An upstream that answers its first request with `first(now)` and every later one `200 ok`,
/// noting when (monotonic and wall clock) each request arrived.
struct Limited {
    server: FakeServer,
    arrivals: Arc<Mutex<Vec<(Instant, SystemTime)>>>,
}

impl Limited {
    fn start(first: impl Fn(SystemTime) -> Response + Send + Sync + 'static) -> Limited {
        let arrivals: Arc<Mutex<Vec<(Instant, SystemTime)>>> = Arc::default();
        let noted = Arc::clone(&arrivals);
        let server = FakeServer::start(move |_| {
            let mut noted = noted.lock().unwrap();
            let now = (Instant::now(), SystemTime::now());
            noted.push(now);
            if noted.len() == 1 {
                first(now.1)
            } else {
                Response::text(200, "ok")
            }
        });
        Limited { server, arrivals }
    }

    fn arrivals(&self) -> Vec<(Instant, SystemTime)> {
        self.arrivals.lock().unwrap().clone()
    }

    /// Watches the wait after the first answer until `until`: the upstream gets no second
    /// request, the check's line stays the rate-limited one (not stale, not replaced), and
    /// `/livez` answers 200 throughout. Samples every 100 ms.
    #[track_caller]
    fn assert_quiet_until(&self, vigil: &Vigil, name: &str, until: Instant, line: &str) {
        let mut samples = 0;
        while Instant::now() < until {
            assert_eq!(
                self.server.requests(),
                1,
                "the upstream was asked again {:?} after the answer that said to wait",
                self.arrivals().get(1).map(|second| second.0 - self.arrivals()[0].0)
            );
            let livez = vigil.get("/livez");
            assert_eq!(livez.status, 200, "/livez during the wait: {}", livez.body);
            let now = vigil.readyz_line(&format!("upstream:{name}"));
            assert_eq!(now, line, "the last result stands during the wait");
            samples += 1;
            std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
        }
        assert!(samples > 0, "nothing was sampled: the wait was already over");
    }

    /// Waits for the second request; returns how long after the first it came.
    #[track_caller]
    fn second_request_after(&self, deadline: Duration) -> Duration {
        support::wait_until(deadline, "the request after the wait", || self.server.requests() >= 2);
        let arrivals = self.arrivals();
        arrivals[1].0 - arrivals[0].0
    }
}

/// A 503 with a JSON body: the reason ends with the body, byte for byte.
#[test]
fn an_unexpected_status_names_what_the_upstream_said() {
    let body = r#"{"error":"no healthy upstream"}"#;
    let server = FakeServer::fixed(
        Response::new(503)
            .with_header("content-type", "application/json")
            .with_body(body),
    );
    let url = server.url("/healthz");
    let vigil = Vigil::start(&upstream("orders", &url, "300ms"));
    let expected = format!("[-]upstream:orders failed: GET {url}: status 503, expected 2xx: {body}");
    wait_for_line(&vigil, "orders", &expected, |l| l == expected);

    let diag = vigil.get("/diag?format=json").json();
    let reason = diag["vigil"]["checks"]["upstream:orders"]["reason"].clone();
    assert_eq!(
        reason.as_str(),
        Some(format!("GET {url}: status 503, expected 2xx: {body}").as_str()),
        "{diag}"
    );
}

/// A body with ANSI colours, a carriage return, newlines (one forging another check's line),
/// a tab, a bell, a NUL, then 300 bytes more: the reason shows the body's start on one
/// printable line, no escape sequence left, nothing from past its first 200 bytes.
#[test]
fn a_noisy_body_is_made_printable_on_one_line_and_cut() {
    let head = "\x1b[31mERROR\x1b[0m upstream down\r\n[+]postgres ok\n\tstack: Foo.bar()\x07\x00 ";
    let body = format!("{head}{}TAIL-MARKER", "a".repeat(300));
    let server = FakeServer::fixed(Response::new(500).with_body(body.clone()));
    let url = server.url("/healthz");
    let vigil = Vigil::start(&upstream("noisy", &url, "300ms"));
    let prefix = format!("[-]upstream:noisy failed: GET {url}: status 500, expected 2xx: ");
    let line = wait_for_line(&vigil, "noisy", "the body in the reason", |l| l.starts_with(&prefix));

    let verbose = vigil.get("/readyz?verbose").body;
    assert!(
        !verbose.lines().any(|l| l.starts_with("[+]postgres")),
        "the body forged a line:\n{verbose}"
    );
    assert_eq!(
        verbose.lines().filter(|l| l.contains("upstream down")).count(),
        1,
        "{verbose}"
    );
    let excerpt = &line[prefix.len()..];
    assert!(
        !excerpt.chars().any(|c| c.is_control()),
        "a control character in {excerpt:?}"
    );
    assert!(
        !excerpt.contains("[31m") && !excerpt.contains("[0m"),
        "escape sequences are replaced whole: {excerpt:?}"
    );
    assert!(
        excerpt.contains("ERROR") && excerpt.contains("upstream down") && excerpt.contains("stack: Foo.bar()"),
        "the body's words are shown: {excerpt:?}"
    );
    assert!(!excerpt.contains("TAIL-MARKER"), "past 200 bytes: {excerpt:?}");
    let shown_padding = excerpt.matches('a').count().saturating_sub(head.matches('a').count());
    assert!(
        shown_padding <= 200 - head.len(),
        "{shown_padding} bytes of padding shown: more than the body's first 200 bytes: {excerpt:?}"
    );
    assert!(line.len() <= "[-]upstream:noisy failed: ".len() + 512, "{}", line.len());
}

/// 429 with `Retry-After: 3` (six intervals of 500 ms): the reason says so, the upstream is
/// not asked again for 3 s, meanwhile the failed result stands (three intervals would make it
/// stale) and `/livez` stays 200; then the next run comes within an interval and passes.
#[test]
fn retry_after_in_seconds_delays_the_next_run_and_keeps_the_result() {
    let upstream_server = Limited::start(|_| Response::text(429, "slow down").with_header("retry-after", "3"));
    let url = upstream_server.server.url("/healthz");
    let vigil = Vigil::start(&upstream("limited", &url, "500ms"));
    let line = wait_for_line(&vigil, "limited", "the rate-limited reason", |l| {
        l.starts_with("[-]upstream:limited failed: ")
    });
    assert!(line.contains("rate limited (429), Retry-After 3s"), "{line}");
    let first = upstream_server.arrivals()[0].0;

    upstream_server.assert_quiet_until(&vigil, "limited", first + Duration::from_millis(2_950), &line);
    let waited = upstream_server.second_request_after(Duration::from_secs(5));
    assert!(waited >= Duration::from_millis(2_980), "asked again after {waited:?}");
    assert!(
        waited <= Duration::from_millis(4_500),
        "asked again only after {waited:?}"
    );
    wait_for_line(&vigil, "limited", "recovery", |l| l == "[+]upstream:limited ok");
}

/// With `addresses = "all"` too, a 429's `Retry-After` holds the next run back: every address
/// is asked again only after it (before, they were asked every interval).
#[test]
fn retry_after_holds_back_every_address_with_all() {
    let upstream_server = Limited::start(|_| Response::text(429, "slow down").with_header("retry-after", "3"));
    let url = upstream_server.server.url("/healthz");
    let vigil = Vigil::start(&format!("{}addresses = \"all\"\n", upstream("limited", &url, "500ms")));
    let line = wait_for_line(&vigil, "limited", "the failing address", |l| {
        l.starts_with("[-]upstream:limited failed: ")
    });
    let first = upstream_server.arrivals()[0].0;
    upstream_server.assert_quiet_until(&vigil, "limited", first + Duration::from_millis(2_950), &line);
    let waited = upstream_server.second_request_after(Duration::from_secs(5));
    assert!(waited >= Duration::from_millis(2_980), "asked again after {waited:?}");
}

/// `Retry-After: 30` with a 300 ms interval: the wait is cut at 10 intervals (3 s), not 30 s,
/// and not one interval either.
#[test]
fn retry_after_waits_at_most_ten_intervals() {
    let upstream_server = Limited::start(|_| Response::new(429).with_header("retry-after", "30"));
    let url = upstream_server.server.url("/healthz");
    let vigil = Vigil::start(&upstream("capped", &url, "300ms"));
    let line = wait_for_line(&vigil, "capped", "the rate-limited reason", |l| {
        l.starts_with("[-]upstream:capped failed: ")
    });
    assert!(line.contains("rate limited (429), Retry-After 30s"), "{line}");
    let first = upstream_server.arrivals()[0].0;

    upstream_server.assert_quiet_until(&vigil, "capped", first + Duration::from_millis(2_600), &line);
    let waited = upstream_server.second_request_after(Duration::from_secs(5));
    assert!(
        waited >= Duration::from_millis(2_700) && waited <= Duration::from_millis(4_500),
        "asked again after {waited:?}, expected about 10 intervals (3s)"
    );
    wait_for_line(&vigil, "capped", "recovery", |l| l == "[+]upstream:capped ok");
}

/// `Retry-After` as an HTTP date about 4–5 s ahead: no request before that date.
#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let retry_at: Arc<Mutex<Option<SystemTime>>> = Arc::default();
    let noted = Arc::clone(&retry_at);
    let upstream_server = Limited::start(move |now| {
        let date = httpdate::fmt_http_date(now + Duration::from_secs(5));
        *noted.lock().unwrap() = httpdate::parse_http_date(&date).ok();
        Response::new(429).with_header("retry-after", date)
    });
    let url = upstream_server.server.url("/healthz");
    // Ten intervals (6 s) are longer than the wait the date asks for.
    let vigil = Vigil::start(&upstream("dated", &url, "600ms"));
    let line = wait_for_line(&vigil, "dated", "the rate-limited reason", |l| {
        l.starts_with("[-]upstream:dated failed: ")
    });
    let said = line
        .split("rate limited (429), Retry-After ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|seconds| seconds.parse::<u64>().ok());
    assert!(
        said.is_some_and(|s| (3..=5).contains(&s)),
        "the date is said as the seconds left: {line}"
    );
    let retry_at = retry_at.lock().unwrap().expect("the date was sent");
    let first = upstream_server.arrivals()[0];
    let quiet_for = retry_at.duration_since(first.1).unwrap_or_default();

    upstream_server.assert_quiet_until(
        &vigil,
        "dated",
        first.0 + quiet_for.saturating_sub(Duration::from_millis(100)),
        &line,
    );
    upstream_server.second_request_after(Duration::from_secs(5));
    let second = upstream_server.arrivals()[1].1;
    assert!(
        second >= retry_at,
        "asked again {:?} before the date it was given",
        retry_at.duration_since(second).unwrap_or_default()
    );
    assert!(
        second.duration_since(retry_at).unwrap_or_default() <= Duration::from_millis(1_500),
        "asked again only {:?} after the date",
        second.duration_since(retry_at).unwrap_or_default()
    );
}

/// A 503 with `Retry-After: 2` (a server in maintenance) is honoured like a 429.
#[test]
fn a_503_with_retry_after_is_honoured_too() {
    let upstream_server = Limited::start(|_| Response::text(503, "maintenance").with_header("retry-after", "2"));
    let url = upstream_server.server.url("/healthz");
    let vigil = Vigil::start(&upstream("maintained", &url, "300ms"));
    let line = wait_for_line(&vigil, "maintained", "the 503 reason", |l| {
        l.starts_with("[-]upstream:maintained failed: ")
    });
    assert!(line.contains("503") && line.contains("Retry-After 2s"), "{line}");
    let first = upstream_server.arrivals()[0].0;
    upstream_server.assert_quiet_until(&vigil, "maintained", first + Duration::from_millis(1_950), &line);
    let waited = upstream_server.second_request_after(Duration::from_secs(5));
    assert!(
        waited >= Duration::from_millis(1_980) && waited <= Duration::from_millis(3_500),
        "asked again after {waited:?}"
    );
}
