//! A fake Kubernetes API server for the `[kubernetes]` tests: `tests/peers/fake_kube_api.py`
//! (real HTTPS on 127.0.0.1, its certificate from a throw-away CA made here with rcgen), driven
//! over its control port. It answers as a real API server and metrics-server do (each behaviour
//! copied from their source, named in the script): bookmarks about once a minute
//! ([`FakeKube::set_bookmark_period`] scales that down), 410 as an HTTP status or an `ERROR`
//! event, paginated lists, metrics-server's 404 until a pod is scraped twice, Events validated as
//! `ValidateEventCreate`/`ValidateEventUpdate` do. Faults: [`FakeKube::cut`],
//! [`FakeKube::fail_next`], [`FakeKube::gone_every`], [`FakeKube::silence`],
//! [`FakeKube::close_after_bookmark`], [`FakeKube::metrics_delay`]. It counts requests
//! ([`FakeKube::request_log`]) and TCP connections ([`FakeKube::connections`]).
//!
//! It validates every Pod, EndpointSlice, list and Event against the official schema
//! (`kubernetes_validate`, strict) and records what does not validate, and every Event the API
//! server would refuse: [`FakeKube::errors`] must stay empty.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};

use super::client;

/// The fake's script.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/fake_kube_api.py");

/// The fake API server, running; stopped on drop.
pub struct FakeKube {
    child: Child,
    /// Held open: the fake serves until it closes.
    _stdin: ChildStdin,
    api: SocketAddr,
    control: SocketAddr,
    dir: tempfile::TempDir,
}

impl FakeKube {
    /// Starts the fake accepting the token `token`, which is also written to [`FakeKube::token_file`].
    pub fn start(token: &str) -> FakeKube {
        let dir = tempfile::Builder::new()
            .prefix("fake-kube-")
            .tempdir()
            .expect("fake kube: temp dir");
        let ca_key = KeyPair::generate().expect("fake kube: CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("fake kube: CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("fake kube: CA");
        let leaf_key = KeyPair::generate().expect("fake kube: leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("fake kube: leaf params")
            .signed_by(&leaf_key, &ca)
            .expect("fake kube: leaf");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("fake kube: write file");
            path
        };
        let cert = write("server.crt", &leaf.pem());
        let key = write("server.key", &leaf_key.serialize_pem());
        write("ca.crt", &ca.pem());
        write("token", token);
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .arg("--token")
            .arg(token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fake kube: python3 must be installed (with kubernetes-validate: .ci/deps.sh)");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut port = |label: &str| -> u16 {
            let line = lines
                .next()
                .and_then(Result::ok)
                .unwrap_or_else(|| panic!("fake kube: no {label} line (did it start?)"));
            line.strip_prefix(label)
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("fake kube: expected {label} <port>, got {line:?}"))
        };
        let api = SocketAddr::from((Ipv4Addr::LOCALHOST, port("API")));
        let control = SocketAddr::from((Ipv4Addr::LOCALHOST, port("CONTROL")));
        FakeKube {
            child,
            _stdin: stdin,
            api,
            control,
            dir,
        }
    }

    pub fn api_url(&self) -> String {
        format!("https://{}", self.api)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `[kubernetes]` section for this fake, namespace `api-gateway`, pod `gw-1`, then `extra`.
    pub fn section(&self, extra: &str) -> String {
        self.section_for_pod("gw-1", extra)
    }

    /// A `[kubernetes]` section for this fake, namespace `api-gateway`, pod `pod`, then `extra`.
    pub fn section_for_pod(&self, pod: &str, extra: &str) -> String {
        format!(
            "[kubernetes]\napi_url = \"{}\"\nca_file = \"{}\"\ntoken_file = \"{}\"\nnamespace = \"api-gateway\"\npod = \"{pod}\"\n{extra}",
            self.api_url(),
            self.ca_file().display(),
            self.token_file().display()
        )
    }

    /// POSTs `body` to the control path; panics unless it answers 200.
    #[track_caller]
    pub fn control(&self, path: &str, body: Value) {
        let body = serde_json::to_vec(&body).expect("control body");
        let answer = client::try_request(
            self.control,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            &body,
        )
        .unwrap_or_else(|e| panic!("fake kube: control {path}: {e}"));
        assert_eq!(answer.status, 200, "fake kube: control {path}: {}", answer.body);
    }

    fn read(&self, path: &str) -> Value {
        client::try_request(self.control, "GET", path, &[], &[])
            .unwrap_or_else(|e| panic!("fake kube: control {path}: {e}"))
            .json()
    }

    pub fn set_pod(&self, pod: Value) {
        self.control("/pod", pod);
    }

    pub fn set_slices(&self, items: Vec<Value>) {
        self.control("/slices", json!({ "items": items }));
    }

    pub fn set_metrics(&self, metrics: Value) {
        self.control("/metrics", metrics);
    }

    pub fn set_token(&self, token: &str) {
        self.control("/token", json!({ "token": token }));
    }

    pub fn forbid(&self, resource: &str, forbidden: bool) {
        self.control("/forbid", json!({ "resource": resource, "forbidden": forbidden }));
    }

    /// Every request the API port got, with the connection it came on and the status answered.
    pub fn request_log(&self) -> Vec<ApiRequest> {
        self.read("/requests")["requests"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|r| ApiRequest {
                        at: r[0].as_f64().unwrap_or_default(),
                        method: r[1].as_str().unwrap_or_default().to_owned(),
                        path: r[2].as_str().unwrap_or_default().to_owned(),
                        connection: r[3].as_u64().unwrap_or_default(),
                        status: r[4].as_u64().and_then(|s| u16::try_from(s).ok()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When each TCP connection to the API port was accepted (unix time), in order.
    pub fn connections(&self) -> Vec<f64> {
        self.read("/connections")["connections"]
            .as_array()
            .map(|all| all.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    }

    /// Open watches end: [`Cut::Abrupt`] (EOF mid-stream, as when an API server rolls),
    /// [`Cut::Partial`] (EOF inside an event), [`Cut::Clean`] (the stream's end).
    pub fn cut(&self, how: Cut) {
        let how = match how {
            Cut::Abrupt => "abrupt",
            Cut::Partial => "partial",
            Cut::Clean => "clean",
        };
        self.control("/cut", json!({ "how": how }));
    }

    /// The next `count` requests to `resource` (`pods`, `endpointslices`, `metrics`, `events`)
    /// answer `code`: 429 (plain text and `Retry-After: 1`, as the API server's flow control
    /// sends it), 503, 504 (too large resource version: an `ERROR` event on a watch, the status
    /// on a list), 500, 410.
    pub fn fail_next(&self, resource: &str, code: u16, count: u32) {
        self.control("/fault", json!({ "resource": resource, "code": code, "count": count }));
    }

    /// As [`FakeKube::fail_next`], with the fault's other fields (`verb`, `retry_after`,
    /// `shape`, `how`; see the script's `/fault`).
    pub fn fault(&self, fault: Value) {
        self.control("/fault", fault);
    }

    /// Every watch answers 410 Gone, `how` = `"http"` (the status) or `"event"` (an `ERROR`
    /// event in a 200 stream); `None` ends that. Open watches end (cleanly) at once.
    pub fn gone_every(&self, how: Option<&str>) {
        match how {
            Some(how) => self.control("/gone", json!({ "every": true, "how": how })),
            None => self.control("/gone", json!({ "every": false })),
        }
    }

    /// A bookmark on every open watch every `seconds` (a real API server: 60).
    pub fn set_bookmark_period(&self, seconds: f64) {
        self.control("/bookmark_period", json!({ "seconds": seconds }));
    }

    /// The open watches go silent: no event, no bookmark, no end, the connection kept open (a
    /// dead connection). With `new_too`, every later watch as well.
    pub fn silence(&self, new_too: bool) {
        self.control("/silence", json!({ "new": new_too }));
    }

    /// Every watch is ended (cleanly) right after its first bookmark.
    pub fn close_after_bookmark(&self, on: bool) {
        self.control("/close_after_bookmark", json!({ "on": on }));
    }

    /// From now, metrics-server answers 404 for the pod: naming it `<pod>` (its pod lister does
    /// not know the pod yet) for `unknown_seconds`, then `<namespace>/<pod>` (not scraped twice
    /// yet) until `unscraped_seconds` and for the next `unscraped_reads` reads.
    pub fn metrics_delay(&self, unknown_seconds: f64, unscraped_seconds: f64, unscraped_reads: u32) {
        self.control(
            "/metrics_delay",
            json!({ "unknown_seconds": unknown_seconds, "unscraped_seconds": unscraped_seconds,
                    "unscraped_reads": unscraped_reads }),
        );
    }

    /// Whether the metrics API exists at all (metrics-server installed).
    pub fn set_metrics_installed(&self, installed: bool) {
        self.control("/metrics_installed", json!({ "installed": installed }));
    }

    /// List pages hold at most `items` items whatever the client's `limit` (`None`: its limit).
    pub fn set_page_cap(&self, items: Option<u32>) {
        self.control("/page_cap", json!({ "items": items }));
    }

    /// The next `count` Event creates are stored and then answered 504 Timeout, as the API
    /// server's timeout filter answers a request whose deadline passed while it was written.
    pub fn lose_event_answers(&self, count: u32) {
        self.control("/event_answers_lost", json!({ "count": count }));
    }

    /// Events are deleted `seconds` after their last write (a real API server: 3600).
    pub fn set_event_ttl(&self, seconds: f64) {
        self.control("/event_ttl", json!({ "seconds": seconds }));
    }

    /// Every request the API port got: (unix time, method, path with query).
    pub fn requests(&self) -> Vec<(f64, String, String)> {
        self.read("/requests")["requests"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|r| {
                        (
                            r[0].as_f64().unwrap_or_default(),
                            r[1].as_str().unwrap_or_default().to_owned(),
                            r[2].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The Events written, in order: `[method, name, event as stored]`.
    pub fn event_log(&self) -> Vec<Value> {
        self.read("/events")["log"].as_array().cloned().unwrap_or_default()
    }

    /// What the fake refused: objects that do not validate, unexpected requests.
    pub fn errors(&self) -> Vec<String> {
        self.read("/errors")["errors"]
            .as_array()
            .map(|all| all.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// How [`FakeKube::cut`] ends the open watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Abrupt,
    Partial,
    Clean,
}

/// One request the fake API got.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// Unix time it arrived.
    pub at: f64,
    pub method: String,
    /// With its query.
    pub path: String,
    /// Which TCP connection (1 for the first accepted) it came on.
    pub connection: u64,
    /// The status answered (`None` while unanswered).
    pub status: Option<u16>,
}

impl ApiRequest {
    pub fn is_watch(&self) -> bool {
        self.path.contains("watch=true")
    }

    /// A list of pods or EndpointSlices (not a watch).
    pub fn is_list(&self) -> bool {
        (self.path.starts_with("/api/v1/namespaces/") && self.path.contains("/pods?")
            || self.path.contains("/endpointslices"))
            && !self.is_watch()
    }

    pub fn is_metrics(&self) -> bool {
        self.path.starts_with("/apis/metrics.k8s.io/")
    }

    pub fn is_event(&self) -> bool {
        self.path.starts_with("/apis/events.k8s.io/")
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
