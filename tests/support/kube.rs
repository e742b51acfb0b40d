//! A fake Kubernetes API server for the `[kubernetes]` tests: `tests/peers/fake_kube_api.py`
//! (real HTTPS on 127.0.0.1, its certificate from a throw-away CA made here with rcgen), driven
//! over its control port. It validates every Pod, EndpointSlice, list and Event against the
//! official schema (`kubernetes_validate`, strict) and records what does not validate:
//! [`FakeKube::errors`] must stay empty.

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
        format!(
            "[kubernetes]\napi_url = \"{}\"\nca_file = \"{}\"\ntoken_file = \"{}\"\nnamespace = \"api-gateway\"\npod = \"gw-1\"\n{extra}",
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

impl Drop for FakeKube {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
