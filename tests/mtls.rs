//! Mutual TLS (SPEC "Upstream answers, client certificates, keys"): an HTTPS server (rustls)
//! and a gRPC server (grpcio, `tests/peers/grpc_health.py --client-ca`) that require a client
//! certificate from a throw-away CA made here. `upstream`, `gateway` and `jwt` present
//! `client_cert_file`/`client_key_file` and pass; without them the reason says the server
//! wants a client certificate; our own certificate's expiry is exported and judged against
//! `cert_warn`; the files are re-read when rewritten in place or swapped the way the kubelet
//! swaps a Secret volume's `..data`; the key is never printed anywhere.

mod support;

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::grpc_peer::GrpcPeer;
use support::tls::TlsListener;
use support::{Vigil, poll_until, run_cli};

const DAY: i64 = 86_400;
const JWKS: &str = include_str!("fixtures/jwks.json");

/// How long a test waits for the agent to see a change (runs are 500 ms apart).
const DEADLINE: Duration = Duration::from_secs(10);

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

// ----- a throw-away CA, its server certificate and client certificates -----

/// A certificate with its key, as PEM and DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: PrivateKeyDer<'static>,
    /// `notAfter`, seconds since the epoch.
    not_after: i64,
}

impl Leaf {
    /// Pieces of the key's PEM that hold key bits: the last 16 characters of each base64 line
    /// (the first line starts with the PKCS#8 header every P-256 key shares).
    fn key_material(&self) -> Vec<String> {
        self.key_pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
            .map(|l| l[l.len() - 16..].to_owned())
            .collect()
    }
}

struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "vigil mtls test CA");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        TestCa {
            pem: issuer.pem(),
            der: issuer.der().clone(),
            issuer,
        }
    }

    fn issue(&self, mut params: CertificateParams, valid_for: i64) -> Leaf {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::seconds(valid_for);
        let not_after = params.not_after.unix_timestamp();
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_after,
        }
    }

    /// For 127.0.0.1 and localhost, valid for a year.
    fn server(&self) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("server params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, 365 * DAY)
    }

    /// A client certificate (`clientAuth`) for `name`, expiring `valid_for` seconds from now.
    fn client(&self, name: &str, valid_for: i64) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, valid_for)
    }
}

/// The CA, the servers' certificate and a directory holding them as files.
struct Pki {
    ca: TestCa,
    server: Leaf,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let ca = TestCa::new();
        let server = ca.server();
        let pki = Pki {
            ca,
            server,
            dir: tempfile::tempdir().unwrap(),
        };
        pki.write("ca.pem", &pki.ca.pem);
        pki.write("server.pem", &pki.server.cert_pem);
        pki.write("server.key", &pki.server.key_pem);
        pki
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.path().join(name), text).unwrap();
        self.path(name)
    }

    /// Writes `leaf` as `<name>.pem` and `<name>.key`; the TOML keys naming them.
    fn client_files(&self, name: &str, leaf: &Leaf) -> String {
        let cert = self.write(&format!("{name}.pem"), &leaf.cert_pem);
        let key = self.write(&format!("{name}.key"), &leaf.key_pem);
        format!("client_cert_file = \"{cert}\"\nclient_key_file = \"{key}\"\n")
    }

    fn ca_file(&self) -> String {
        format!("ca_file = \"{}\"\n", self.path("ca.pem"))
    }
}

// ----- an HTTPS server that requires a client certificate -----

/// Answers `/jwks.json` with the JWKS fixture and every other path `200 ok`, only to clients
/// presenting a certificate the test CA signed; remembers every client certificate presented.
struct MtlsServer {
    listener: TlsListener,
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
}

impl MtlsServer {
    fn start(pki: &Pki) -> MtlsServer {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.der.clone()).expect("the CA as a client root");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .expect("client verifier");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![pki.server.cert_der.clone()], pki.server.key_der.clone_key())
            .expect("server config");
        let seen: Arc<Mutex<Vec<CertificateDer<'static>>>> = Arc::default();
        let noted = Arc::clone(&seen);
        let listener = TlsListener::start(config, move |connection, head| {
            if let Some(leaf) = connection.peer_certificates().and_then(|chain| chain.first()) {
                noted.lock().unwrap().push(leaf.clone().into_owned());
            }
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let (content_type, body) = if path == "/jwks.json" {
                ("application/json", JWKS)
            } else {
                ("text/plain", "ok")
            };
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        });
        MtlsServer { listener, seen }
    }

    fn url(&self, path: &str) -> String {
        self.listener.url(path)
    }

    /// Whether a client presented `leaf` so far.
    fn saw(&self, leaf: &Leaf) -> bool {
        self.seen.lock().unwrap().contains(&leaf.cert_der)
    }
}

// ----- the grpcio health server, with --client-ca -----

/// A grpcs health server (SERVING) that requires a client certificate from the test CA.
fn grpcs_requiring_client_certificates(pki: &Pki) -> GrpcPeer {
    GrpcPeer::start(&[
        "--cert",
        &pki.path("server.pem"),
        "--key",
        &pki.path("server.key"),
        "--client-ca",
        &pki.path("ca.pem"),
    ])
}

// ----- a Secret volume as the kubelet lays it out -----

/// `tls.crt -> ..data/tls.crt`, `tls.key -> ..data/tls.key`, `..data -> ..<timestamp>`; an
/// update writes a new directory and renames a new `..data` link over the old one.
struct SecretMount {
    dir: tempfile::TempDir,
    version: AtomicUsize,
}

impl SecretMount {
    fn new(leaf: &Leaf) -> SecretMount {
        let mount = SecretMount {
            dir: tempfile::tempdir().unwrap(),
            version: AtomicUsize::new(0),
        };
        let first = mount.write_version(leaf);
        symlink(&first, mount.dir.path().join("..data")).unwrap();
        symlink("..data/tls.crt", mount.dir.path().join("tls.crt")).unwrap();
        symlink("..data/tls.key", mount.dir.path().join("tls.key")).unwrap();
        mount
    }

    fn write_version(&self, leaf: &Leaf) -> String {
        let n = self.version.fetch_add(1, Ordering::SeqCst);
        let name = format!("..2026_11_23_21_00_{n:02}.123456789");
        let dir = self.dir.path().join(&name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
        name
    }

    /// What the kubelet does when cert-manager renews the Secret.
    fn rotate(&self, leaf: &Leaf) {
        let old = std::fs::read_link(self.dir.path().join("..data")).unwrap();
        let new = self.write_version(leaf);
        symlink(&new, self.dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.path().join("..data_tmp"), self.dir.path().join("..data")).unwrap();
        std::fs::remove_dir_all(self.dir.path().join(old)).unwrap();
    }

    fn keys(&self) -> String {
        let path = |name: &str| -> PathBuf { self.dir.path().join(name) };
        format!(
            "client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            path("tls.crt").display(),
            path("tls.key").display()
        )
    }
}

// ----- configuration and what vigil says -----

const SYSTEM_OFF: &str = "[system]\nenabled = false\n";

fn upstream(name: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[[upstream]]\nname = \"{name}\"\nurl = \"{url}\"\ninterval = \"500ms\"\ntimeout = \"500ms\"\n\
         failure_threshold = 1\n{extra}"
    )
}

fn jwt(url: &str, extra: &str) -> String {
    format!(
        "\n[jwt]\nalgorithm = \"RS256\"\njwks_url = \"{url}\"\ninterval = \"500ms\"\ntimeout = \"500ms\"\n\
         failure_threshold = 1\n{extra}"
    )
}

fn gateway(url: &str, extra: &str) -> String {
    format!(
        "\n[gateway]\nhealth_url = \"{url}\"\ninterval = \"500ms\"\ntimeout = \"500ms\"\nfailure_threshold = 1\n{extra}"
    )
}

/// Polls `check`'s `/readyz?verbose` line until `done` holds for it.
#[track_caller]
fn wait_for_line(vigil: &Vigil, check: &str, what: &str, done: impl FnMut(&str) -> bool) -> String {
    vigil.wait_for_readyz_line(check, what, DEADLINE, done)
}

/// `vigil_tls_client_cert_expiry_timestamp_seconds{check="<check>"}`.
fn client_cert_expiry(vigil: &Vigil, check: &str) -> Option<f64> {
    let prefix = format!("vigil_tls_client_cert_expiry_timestamp_seconds{{check=\"{check}\"}} ");
    vigil
        .get("/metrics")
        .body
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
}

#[track_caller]
fn wait_for_client_expiry(vigil: &Vigil, check: &str, leaf: &Leaf) {
    let mut last = None;
    if !poll_until(DEADLINE, || {
        last = client_cert_expiry(vigil, check);
        last.is_some_and(|v| (v - leaf.not_after as f64).abs() < 120.0)
    }) {
        panic!(
            "vigil_tls_client_cert_expiry_timestamp_seconds{{check=\"{check}\"}} is {last:?}, expected about {} (now {})\n{}",
            leaf.not_after,
            unix_now(),
            vigil.get("/metrics").body
        );
    }
}

/// Everything vigil wrote or answered, and `validate` and `check` on the same configuration.
fn every_output(vigil: &Vigil, config: &str) -> Vec<(String, String)> {
    let mut outputs = vec![
        ("logs".to_owned(), vigil.logs()),
        ("/diag".to_owned(), vigil.get("/diag").body),
        ("/diag?format=json".to_owned(), vigil.get("/diag?format=json").body),
        ("/metrics".to_owned(), vigil.get("/metrics").body),
        ("/readyz?verbose".to_owned(), vigil.get("/readyz?verbose").body),
    ];
    for args in [&["validate"][..], &["check"], &["check", "--output", "json"]] {
        let out = run_cli(args, Some(config), &[]);
        outputs.push((
            format!("vigil {}", args.join(" ")),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    outputs
}

#[track_caller]
fn assert_no_key(outputs: &[(String, String)], leaves: &[&Leaf]) {
    for (source, text) in outputs {
        assert!(!text.contains("PRIVATE KEY"), "a private key in {source}:\n{text}");
        for piece in leaves.iter().flat_map(|leaf| leaf.key_material()) {
            assert!(!text.contains(&piece), "key material in {source}:\n{text}");
        }
    }
}

// ----- the tests -----

/// With our client certificate, an https upstream, a grpcs upstream and the JWKS behind mutual
/// TLS all pass; the servers saw our certificate; its expiry is exported per check; the key is
/// nowhere in the outputs.
#[test]
fn with_our_client_certificate_upstream_grpc_and_jwt_pass() {
    let pki = Pki::new();
    let https = MtlsServer::start(&pki);
    let grpc = grpcs_requiring_client_certificates(&pki);
    let client = pki.ca.client("vigil", 200 * DAY);
    let keys = format!("{}{}", pki.ca_file(), pki.client_files("client", &client));
    let config = format!(
        "{SYSTEM_OFF}{}{}{}",
        upstream("orders", &https.url("/healthz"), &keys),
        upstream("rpc", &grpc.url("grpcs"), &keys),
        jwt(&https.url("/jwks.json"), &keys),
    );
    let vigil = Vigil::start(&config);
    for check in ["upstream:orders", "upstream:rpc", "jwt"] {
        let ok = format!("[+]{check} ok");
        wait_for_line(&vigil, check, &ok, |l| l == ok);
        wait_for_client_expiry(&vigil, check, &client);
    }
    assert!(https.saw(&client), "the https server was shown our certificate");
    assert!(
        vigil.get("/metrics").body.contains("vigil_jwks_keys 3"),
        "the JWKS behind mutual TLS was read"
    );
    assert_no_key(&every_output(&vigil, &config), &[&client]);
}

/// Without a client certificate the same servers refuse the handshake, and the reason says
/// what they wanted (not only "handshake failed" or an alert's name).
#[test]
fn without_a_client_certificate_the_reason_says_the_server_wants_one() {
    let pki = Pki::new();
    let https = MtlsServer::start(&pki);
    let grpc = grpcs_requiring_client_certificates(&pki);
    let trust = pki.ca_file();
    let config = format!(
        "{SYSTEM_OFF}{}{}{}",
        upstream("orders", &https.url("/healthz"), &trust),
        upstream("rpc", &grpc.url("grpcs"), &trust),
        jwt(&https.url("/jwks.json"), &trust),
    );
    let vigil = Vigil::start(&config);
    for check in ["upstream:orders", "upstream:rpc", "jwt"] {
        let failed = format!("[-]{check} failed: ");
        let line = wait_for_line(&vigil, check, "a failed run", |l| {
            l.starts_with(&failed) && !l.contains("no result yet")
        });
        assert!(
            line.to_ascii_lowercase().contains("client certificate"),
            "the reason names the missing client certificate: {line}"
        );
    }
    assert!(
        client_cert_expiry(&vigil, "upstream:orders").is_none(),
        "no client certificate, no expiry"
    );
}

/// The gateway check presents the client certificate to an https `health_url` too. (The
/// gateway's server certificate comes from the test CA, so the section needs `ca_file` as the
/// upstream and jwt sections have.)
#[test]
fn the_gateway_check_presents_our_client_certificate() {
    let pki = Pki::new();
    let https = MtlsServer::start(&pki);
    let client = pki.ca.client("vigil", 200 * DAY);
    let keys = format!("{}{}", pki.ca_file(), pki.client_files("client", &client));
    let config = format!("{SYSTEM_OFF}{}", gateway(&https.url("/healthz"), &keys));
    let vigil = Vigil::start(&config);
    wait_for_line(&vigil, "gateway", "[+]gateway ok", |l| l == "[+]gateway ok");
    wait_for_client_expiry(&vigil, "gateway", &client);
    assert!(https.saw(&client));
    assert_no_key(&every_output(&vigil, &config), &[&client]);
    drop(vigil);

    let vigil = Vigil::start(&format!(
        "{SYSTEM_OFF}{}",
        gateway(&https.url("/healthz"), &pki.ca_file())
    ));
    let line = wait_for_line(&vigil, "gateway", "a failed run", |l| {
        l.starts_with("[-]gateway failed: ") && !l.contains("no result yet")
    });
    assert!(line.to_ascii_lowercase().contains("client certificate"), "{line}");
}

/// Our client certificate expiring in 3 days (and a day more than 3) warns like a server's;
/// cert-manager renewing it, once by rewriting both files in place and once by swapping a
/// Secret volume's `..data`, is picked up by the running agent: the warning clears, the
/// exported expiry is the new certificate's, and the server is shown the new certificate.
#[test]
fn our_client_certificate_expiring_warns_and_renewed_files_are_picked_up_without_restart() {
    let pki = Pki::new();
    let https = MtlsServer::start(&pki);
    let soon = pki.ca.client("vigil", 3 * DAY + 3600);
    let in_place = pki.client_files("client", &soon);
    let mounted_soon = pki.ca.client("vigil-mounted", 3 * DAY + 7200);
    let mount = SecretMount::new(&mounted_soon);
    let config = format!(
        "{SYSTEM_OFF}{}{}",
        upstream(
            "inplace",
            &https.url("/healthz"),
            &format!("{}{in_place}", pki.ca_file())
        ),
        upstream(
            "mounted",
            &https.url("/healthz"),
            &format!("{}{}", pki.ca_file(), mount.keys())
        ),
    );
    let mut vigil = Vigil::start(&config);
    for (check, leaf) in [("upstream:inplace", &soon), ("upstream:mounted", &mounted_soon)] {
        let warn = format!("[+]{check} warn: ");
        let line = wait_for_line(&vigil, check, "the expiry warning", |l| l.starts_with(&warn));
        assert!(line.contains("our client certificate expires in 3d"), "{line}");
        wait_for_client_expiry(&vigil, check, leaf);
    }
    assert_eq!(vigil.get("/readyz").status, 200, "a warning never fails readiness");
    let pid = vigil.pid();

    // Renewed: rewritten in place (certificate, then key), and swapped in the mount.
    let renewed = pki.ca.client("vigil", 90 * DAY);
    std::fs::write(pki.dir.path().join("client.pem"), &renewed.cert_pem).unwrap();
    std::fs::write(pki.dir.path().join("client.key"), &renewed.key_pem).unwrap();
    let remounted = pki.ca.client("vigil-mounted", 60 * DAY);
    mount.rotate(&remounted);

    for (check, leaf) in [("upstream:inplace", &renewed), ("upstream:mounted", &remounted)] {
        let ok = format!("[+]{check} ok");
        wait_for_line(&vigil, check, &ok, |l| l == ok);
        wait_for_client_expiry(&vigil, check, leaf);
        assert!(https.saw(leaf), "{check}: the server was shown the renewed certificate");
    }
    assert!(vigil.is_running(), "no restart");
    assert_eq!(vigil.pid(), pid);
    assert_no_key(
        &every_output(&vigil, &config),
        &[&soon, &mounted_soon, &renewed, &remounted],
    );
}

/// `client_cert_file` and `client_key_file` come as a pair: one alone is refused naming the
/// missing key; `validate` prints the effective configuration without the key's content.
#[test]
fn half_a_pair_is_refused_and_validate_never_prints_the_key() {
    let pki = Pki::new();
    let client = pki.ca.client("vigil", 200 * DAY);
    pki.client_files("client", &client);
    let cert_only = format!(
        "{SYSTEM_OFF}{}",
        upstream(
            "orders",
            "https://127.0.0.1:1/healthz",
            &format!("client_cert_file = \"{}\"\n", pki.path("client.pem"))
        )
    );
    let out = run_cli(&["validate"], Some(&cert_only), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("client_key_file"), "names the missing key: {stderr}");

    let key_only = format!(
        "{SYSTEM_OFF}{}",
        jwt(
            "https://127.0.0.1:1/jwks.json",
            &format!("client_key_file = \"{}\"\n", pki.path("client.key"))
        )
    );
    let out = run_cli(&["validate"], Some(&key_only), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("client_cert_file"), "names the missing key: {stderr}");

    let both = format!(
        "{SYSTEM_OFF}{}",
        upstream(
            "orders",
            "https://127.0.0.1:1/healthz",
            &pki.client_files("client", &client)
        )
    );
    let out = run_cli(&["validate"], Some(&both), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("client_key_file"), "the key's file is named: {stdout}");
    assert_no_key(&[("vigil validate".to_owned(), stdout.into_owned())], &[&client]);
}
