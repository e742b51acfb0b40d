//! The `jwt` check against real HTTP servers on 127.0.0.1: a gateway that verifies the probe
//! tokens with a hand-written HS256 verifier (independent of jsonwebtoken, so the tokens are
//! proven standard), an auth service serving a JWKS, and a secret volume laid out and rotated
//! the way the kubelet does it. Every output is grepped for the secret and for tokens.

mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use support::{FakeServer, Request, Response, Vigil, run_cli};

const STRONG: &str = "Kq3vZ8wLx2NpR7tYb4HcJ9mF6sD1gA5eU0oI";
const ROTATED: &str = "Wm5Tq9Lr2Xc8Vb1Nz4Kp7Hd3Jf6Gs0Ay2Eu5Io";
const JWKS: &str = include_str!("fixtures/jwks.json");

/// How long a test waits for the agent to see a change (runs are every 300–500 ms).
const DEADLINE: Duration = Duration::from_secs(10);

// ----- a secret volume as the kubelet lays it out -----

/// `secret -> ..data/secret`, `..data -> ..2026_11_23_21_00_00.123`, the file in the
/// timestamped directory; an update writes a new directory and renames a new `..data` link
/// over the old one, which is atomic for readers going through `secret`.
struct SecretMount {
    dir: tempfile::TempDir,
    version: AtomicUsize,
}

impl SecretMount {
    fn new(content: &[u8]) -> SecretMount {
        let mount = SecretMount {
            dir: tempfile::tempdir().unwrap(),
            version: AtomicUsize::new(0),
        };
        let first = mount.write_version(content);
        symlink(&first, mount.dir.path().join("..data")).unwrap();
        symlink("..data/secret", mount.dir.path().join("secret")).unwrap();
        mount
    }

    fn write_version(&self, content: &[u8]) -> String {
        let n = self.version.fetch_add(1, Ordering::SeqCst);
        let name = format!("..2026_11_23_21_00_{n:02}.123456789");
        std::fs::create_dir(self.dir.path().join(&name)).unwrap();
        std::fs::write(self.dir.path().join(&name).join("secret"), content).unwrap();
        name
    }

    /// What the kubelet does on a Secret update.
    fn rotate(&self, content: &[u8]) {
        let old = std::fs::read_link(self.dir.path().join("..data")).unwrap();
        let new = self.write_version(content);
        symlink(&new, self.dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.path().join("..data_tmp"), self.dir.path().join("..data")).unwrap();
        std::fs::remove_dir_all(self.dir.path().join(old)).unwrap();
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("secret")
    }
}

// ----- an independent HS256 verifier -----

fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes() {
        let value = ALPHABET.iter().position(|&c| c == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

/// HMAC-SHA256 per RFC 2104, written out.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Verifies an HS256 JWT the way a strict gateway does; `Err` says why not.
fn verify_hs256(token: &str, key: &[u8], issuer: &str, audience: &str) -> Result<serde_json::Value, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err("not three parts".into());
    };
    let header: serde_json::Value =
        serde_json::from_slice(&b64url_decode(header).ok_or("header not base64url")?).map_err(|e| e.to_string())?;
    if header["alg"] != "HS256" {
        return Err(format!("alg {}", header["alg"]));
    }
    let expected = hmac_sha256(key, format!("{}.{}", parts[0], parts[1]).as_bytes());
    if b64url_decode(signature).ok_or("signature not base64url")? != expected {
        return Err("bad signature".into());
    }
    let claims: serde_json::Value =
        serde_json::from_slice(&b64url_decode(payload).ok_or("payload not base64url")?).map_err(|e| e.to_string())?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let exp = claims["exp"].as_u64().ok_or("no exp")?;
    if exp <= now || exp > now + 120 {
        return Err(format!("exp {exp} not within two minutes of {now}"));
    }
    if claims["iss"] != issuer || claims["aud"] != audience {
        return Err("iss/aud".into());
    }
    if claims["jti"].as_str().is_none_or(|jti| jti.len() < 16) {
        return Err("no jti".into());
    }
    Ok(claims)
}

/// A gateway whose `/api/validate` verifies with whatever secret it "runs" now (a restart is
/// [`Gateway::restart_with`]).
struct Gateway {
    server: FakeServer,
    secret: Arc<Mutex<Vec<u8>>>,
    verdicts: Arc<Mutex<Vec<Result<serde_json::Value, String>>>>,
}

impl Gateway {
    fn start(secret: &str) -> Gateway {
        let key = Arc::new(Mutex::new(secret.as_bytes().to_vec()));
        let verdicts = Arc::new(Mutex::new(Vec::new()));
        let (handler_key, handler_verdicts) = (Arc::clone(&key), Arc::clone(&verdicts));
        let server = FakeServer::start(move |request: Request| {
            let key = handler_key.lock().unwrap().clone();
            let verdict = match request.bearer_token() {
                Some(token) => verify_hs256(token, &key, "api-gateway", "api"),
                None => Err("no bearer token".into()),
            };
            let status = if verdict.is_ok() { 200 } else { 401 };
            handler_verdicts.lock().unwrap().push(verdict);
            Response::new(status)
        });
        Gateway {
            server,
            secret: key,
            verdicts,
        }
    }

    fn restart_with(&self, secret: &str) {
        *self.secret.lock().unwrap() = secret.as_bytes().to_vec();
    }

    fn url(&self) -> String {
        self.server.url("/api/validate")
    }
}

fn config(secret_file: &Path, extra: &str) -> String {
    format!(
        "[system]\nenabled = false\n[jwt]\ninterval = \"500ms\"\ntimeout = \"400ms\"\nfailure_threshold = 1\n\
         secret_file = \"{}\"\nissuer = \"api-gateway\"\naudience = \"api\"\n{extra}",
        secret_file.display()
    )
}

/// Every output a person or a machine can read from the agent: none may hold the secret.
fn every_output(vigil: &Vigil) -> String {
    let mut all = String::new();
    for path in [
        "/readyz?verbose",
        "/readyz/jwt",
        "/diag",
        "/diag?format=json",
        "/metrics",
        "/",
    ] {
        all.push_str(&vigil.get(path).body);
    }
    all.push_str(&vigil.logs());
    all
}

#[track_caller]
fn assert_no_leak(output: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!output.contains(secret), "the secret leaked into:\n{output}");
    }
    // Every JWT starts with base64url of `{"`: a token in an output would show here.
    assert!(!output.contains("eyJ"), "a token leaked into:\n{output}");
}

fn fingerprint(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn readyz_line(vigil: &Vigil) -> String {
    vigil.get("/readyz?verbose").body
}

#[track_caller]
fn wait_for_reason(vigil: &Vigil, needle: &str) {
    let mut last = String::new();
    let ok = support::poll_until(DEADLINE, || {
        last = vigil.get("/readyz?verbose").body;
        last.contains(needle)
    });
    assert!(
        ok,
        "waited for {needle:?} in /readyz?verbose; last:\n{last}\n--- logs ---\n{}",
        vigil.logs()
    );
}

#[test]
fn strong_secret_passes_end_to_end_with_an_independent_verifier() {
    let mount = SecretMount::new(STRONG.as_bytes());
    let gateway = Gateway::start(STRONG);
    let vigil = Vigil::start(&config(
        &mount.path(),
        &format!("validate_url = \"{}\"\n", gateway.url()),
    ));
    vigil.wait_for_status("/readyz", 200, DEADLINE);
    support::wait_until(DEADLINE, "two gateway requests", || gateway.server.requests() >= 2);

    let verdicts = gateway.verdicts.lock().unwrap().clone();
    assert!(verdicts[0].is_ok(), "the fresh token must verify: {:?}", verdicts[0]);
    assert_eq!(verdicts[0].as_ref().unwrap()["sub"], "vigil-probe");
    assert_eq!(verdicts[1], Err("bad signature".to_owned()), "the forged token");
    let request = gateway.server.received()[0].clone();
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/api/validate");

    let metrics = vigil.get("/metrics").body;
    for line in [
        "vigil_jwt_secret_valid 1".to_owned(),
        format!(
            "vigil_jwt_secret_info{{algorithm=\"HS256\",fingerprint=\"{}\"}} 1",
            fingerprint(STRONG)
        ),
        "vigil_jwt_secret_rotations_total 0".to_owned(),
        "vigil_jwt_gateway_accepts_valid_token 1".to_owned(),
        "vigil_jwt_gateway_rejects_forged_token 1".to_owned(),
    ] {
        assert!(metrics.contains(&line), "{line} missing from:\n{metrics}");
    }
    assert!(!metrics.contains("vigil_jwks_keys"), "no JWKS configured");
    support::assert_promtool_accepts(&metrics);

    let diag = vigil.get("/diag?format=json").json();
    assert_eq!(
        diag["checks"]["jwt:fingerprint"][0]["observedValue"],
        fingerprint(STRONG)
    );
    assert_eq!(
        diag["checks"]["jwt:secret_length"][0]["observedValue"],
        STRONG.len() as f64
    );
    assert_eq!(
        diag["checks"]["jwt:gateway_accepts_valid_token"][0]["observedValue"],
        1.0
    );
    assert_no_leak(&every_output(&vigil), &[STRONG]);
}

#[test]
fn rotation_with_the_gateway_on_the_old_secret_fails_until_it_restarts() {
    let mount = SecretMount::new(STRONG.as_bytes());
    let gateway = Gateway::start(STRONG);
    let vigil = Vigil::start(&config(
        &mount.path(),
        &format!("validate_url = \"{}\"\n", gateway.url()),
    ));
    vigil.wait_for_status("/readyz", 200, DEADLINE);

    mount.rotate(ROTATED.as_bytes());
    wait_for_reason(
        &vigil,
        "[-]jwt failed: gateway rejects tokens signed with the mounted secret but accepts the previous one: it still runs the old secret",
    );
    let diag = vigil.get("/diag?format=json").json();
    let jwt = &diag["vigil"]["checks"]["jwt"];
    assert_eq!(
        jwt["hint"],
        "kubectl rollout restart deployment/api-gateway -n api-gateway"
    );
    assert_eq!(jwt["kind"], "auth");
    assert_eq!(diag["checks"]["jwt:rotations"][0]["observedValue"], 1.0);
    assert!(diag["checks"]["jwt:last_rotation"][0]["observedValue"].is_string());
    let metrics = vigil.get("/metrics").body;
    assert!(metrics.contains("vigil_jwt_secret_rotations_total 1"), "{metrics}");
    assert!(metrics.contains("vigil_jwt_gateway_accepts_valid_token 0"), "{metrics}");
    assert!(
        metrics.contains(&format!("fingerprint=\"{}\"}} 1", fingerprint(ROTATED))),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&fingerprint(STRONG)),
        "the old fingerprint's series must go:\n{metrics}"
    );
    assert!(vigil.logs().contains("JWT secret rotated"));

    gateway.restart_with(ROTATED);
    vigil.wait_for_status("/readyz", 200, DEADLINE);
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("vigil_jwt_gateway_accepts_valid_token 1")
    );
    assert_no_leak(&every_output(&vigil), &[STRONG, ROTATED]);
}

#[test]
fn a_gateway_running_another_secret_is_not_told_to_restart() {
    let mount = SecretMount::new(STRONG.as_bytes());
    let gateway = Gateway::start(ROTATED);
    let vigil = Vigil::start(&config(
        &mount.path(),
        &format!("validate_url = \"{}\"\n", gateway.url()),
    ));
    wait_for_reason(
        &vigil,
        "[-]jwt failed: gateway rejects tokens signed with the mounted secret (401)",
    );
    assert_no_leak(&every_output(&vigil), &[STRONG, ROTATED]);
}

#[test]
fn a_fail_open_gateway_fails_the_check() {
    let mount = SecretMount::new(STRONG.as_bytes());
    let gateway = FakeServer::fixed(Response::new(200));
    let vigil = Vigil::start(&config(
        &mount.path(),
        &format!("validate_url = \"{}\"\n", gateway.url("/api/validate")),
    ));
    wait_for_reason(
        &vigil,
        "[-]jwt failed: gateway accepts tokens signed with a random key (200): it does not verify signatures",
    );
    let metrics = vigil.get("/metrics").body;
    assert!(
        metrics.contains("vigil_jwt_gateway_rejects_forged_token 0"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_jwt_gateway_accepts_valid_token 1"), "{metrics}");
    assert_eq!(vigil.get("/readyz").status, 503);
    assert_no_leak(&every_output(&vigil), &[STRONG]);
}

#[test]
fn an_unreachable_or_broken_gateway_is_not_a_rejection() {
    let mount = SecretMount::new(STRONG.as_bytes());
    // `vigil check` against a validate_url: (exit code, stdout).
    let check = |url: &str| {
        let out = run_cli(
            &["check"],
            Some(&config(&mount.path(), &format!("validate_url = \"{url}\"\n"))),
            &[],
        );
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };

    let refused = format!("http://{}/api/validate", support::refused_addr());
    // A gateway that accepts the connection and never answers: the check's own deadline (90 %
    // of its 400ms timeout) names it before the scheduler's cut would.
    let hanging = FakeServer::hanging();
    let broken = FakeServer::fixed(Response::text(502, "bad gateway"));
    let cases = [
        (
            refused.clone(),
            format!("[-]jwt failed: gateway unreachable: GET {refused}: connection refused"),
        ),
        (
            hanging.url("/v"),
            format!(
                "[-]jwt failed: gateway unreachable: GET {}: timed out after 360ms",
                hanging.url("/v")
            ),
        ),
        (
            broken.url("/v"),
            "[-]jwt failed: gateway answered 502 to a valid token (expected 2xx)".to_owned(),
        ),
    ];
    for (url, expected) in cases {
        let (code, text) = check(&url);
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains(&expected), "{text}");
    }
}

/// `vigil check` on a secret with `content`: (exit code, stdout, the JSON report's jwt entry).
fn check_secret(content: &[u8], algorithm: &str) -> (Option<i32>, String, serde_json::Value) {
    let mount = SecretMount::new(content);
    let toml = config(&mount.path(), &format!("algorithm = \"{algorithm}\"\n"));
    let text = run_cli(&["check"], Some(&toml), &[]);
    let json = run_cli(&["check", "--output", "json"], Some(&toml), &[]);
    let stdout = String::from_utf8_lossy(&text.stdout).into_owned();
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let all = format!("{stdout}{}{}", String::from_utf8_lossy(&text.stderr), report);
    if let Ok(secret) = std::str::from_utf8(content)
        && secret.trim().len() >= 6
    {
        assert_no_leak(&all, &[secret.trim()]);
    }
    (text.status.code(), stdout, report["vigil"]["checks"]["jwt"].clone())
}

#[test]
fn weak_placeholder_empty_and_missing_secrets_fail_without_quoting_them() {
    for (content, algorithm, reason) in [
        (
            &b"Kq3vZ8wLx2NpR7tYb4Hc"[..],
            "HS256",
            "secret is 20 bytes, HS256 needs at least 32",
        ),
        (
            STRONG.as_bytes(),
            "HS512",
            "secret is 36 bytes, HS512 needs at least 64",
        ),
        (
            b"a-string-secret-at-least-256-bits-long",
            "HS256",
            "secret is a well-known placeholder value",
        ),
        (
            b"Your-256-Bit-Secret",
            "HS256",
            "secret is a well-known placeholder value; secret is 19 bytes",
        ),
        (b"changeme", "HS256", "secret is a well-known placeholder value"),
        (&[b'z'; 48][..], "HS256", "secret is one character repeated"),
        (b"", "HS256", "secret is empty"),
    ] {
        let (code, text, jwt) = check_secret(content, algorithm);
        assert_eq!(code, Some(1), "{text}");
        assert!(text.contains(&format!("[-]jwt failed: {reason}")), "{reason}:\n{text}");
        assert_eq!(jwt["kind"], "misconfigured");
        assert!(jwt["hint"].as_str().unwrap().contains("openssl rand"), "{jwt}");
        assert_eq!(jwt["last_run"]["details"]["secret_valid"], false);
        // A short secret's fingerprint would let anyone with /metrics confirm guesses offline.
        let fingerprint = &jwt["last_run"]["details"]["fingerprint"];
        let min = if algorithm == "HS512" { 64 } else { 32 };
        if content.is_empty() {
            assert!(
                fingerprint.is_null(),
                "an empty file is no version of the secret: {jwt}"
            );
        } else if content.len() < min {
            assert_eq!(fingerprint, "withheld", "{reason}: {jwt}");
        } else {
            assert_eq!(fingerprint.as_str().map(str::len), Some(8), "{reason}: {jwt}");
        }
    }

    let missing = "/nonexistent/var/run/secrets/jwt/secret";
    let out = run_cli(&["check"], Some(&config(Path::new(missing), "")), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "[-]jwt failed: secret file {missing}: No such file or directory"
        )),
        "{text}"
    );

    let env_config = "[system]\nenabled = false\n[jwt]\nsecret_env = \"JWT_SECRET\"\n";
    let out = run_cli(&["check"], Some(env_config), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[-]jwt failed: environment variable JWT_SECRET is not set"),
        "{text}"
    );
    let out = run_cli(&["check"], Some(env_config), &[("JWT_SECRET", STRONG)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("[+]jwt ok"), "{text}");
    assert_no_leak(&format!("{text}{}", String::from_utf8_lossy(&out.stderr)), &[STRONG]);
}

#[test]
fn a_trailing_newline_warns_and_stays_ready() {
    let (code, text, jwt) = check_secret(format!("{STRONG}\n").as_bytes(), "HS256");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("[+]jwt warn: secret ends with a newline"), "{text}");
    assert!(jwt["hint"].as_str().unwrap().contains("printf"), "{jwt}");
    assert_eq!(jwt["last_run"]["details"]["secret_valid"], true);
}

#[test]
fn a_gateway_that_trims_a_trailing_newline_is_named_as_such() {
    let mount = SecretMount::new(format!("{STRONG}\n").as_bytes());
    let gateway = Gateway::start(STRONG);
    let vigil = Vigil::start(&config(
        &mount.path(),
        &format!("validate_url = \"{}\"\n", gateway.url()),
    ));
    wait_for_reason(&vigil, "[+]jwt warn: secret ends with a newline");
    let line = vigil.get("/readyz?verbose").body;
    assert!(
        line.contains("; gateway trims the secret: it accepts tokens signed without the secret's trailing whitespace"),
        "{line}"
    );
    assert_eq!(vigil.get("/readyz").status, 200, "a warning never fails readiness");
    assert!(
        vigil
            .get("/metrics")
            .body
            .contains("vigil_jwt_gateway_accepts_valid_token 1")
    );

    // A gateway that uses the file byte for byte accepts the token as signed: only the hygiene warning.
    gateway.restart_with(&format!("{STRONG}\n"));
    let ok = support::poll_until(DEADLINE, || {
        !vigil.get("/readyz?verbose").body.contains("gateway trims")
    });
    assert!(ok, "{}", vigil.get("/readyz?verbose").body);
    assert_no_leak(&every_output(&vigil), &[STRONG]);
}

fn jwks_config(url: &str, algorithm: &str) -> String {
    format!(
        "[system]\nenabled = false\n[jwt]\ninterval = \"300ms\"\ntimeout = \"250ms\"\nfailure_threshold = 1\n\
         algorithm = \"{algorithm}\"\njwks_url = \"{url}\"\n"
    )
}

#[test]
fn jwks_served_broken_then_unreachable_keeps_the_last_good_set_then_fails() {
    let auth = FakeServer::fixed(Response::new(200).with_body(JWKS));
    let url = auth.url("/.well-known/jwks.json");
    let vigil = Vigil::start(&jwks_config(&url, "RS256"));
    vigil.wait_for_status("/readyz", 200, DEADLINE);
    assert!(vigil.get("/metrics").body.contains("vigil_jwks_keys 3"));
    let diag = vigil.get("/diag?format=json").json();
    assert_eq!(diag["checks"]["jwt:jwks_keys"][0]["observedValue"], 3.0);
    let metrics = vigil.get("/metrics").body;
    assert!(
        !metrics.contains("vigil_jwt_secret_valid"),
        "RS256 has no shared secret:\n{metrics}"
    );

    auth.set_response(Response::text(200, "<html>maintenance</html>"));
    wait_for_reason(&vigil, "[+]jwt warn: ");
    let line = readyz_line(&vigil);
    assert!(line.contains("is not a JWKS: invalid JSON"), "{line}");
    assert!(line.contains("keeping the key set fetched"), "{line}");

    drop(auth);
    wait_for_reason(&vigil, "connection refused; keeping the key set fetched");
    assert!(
        vigil.get("/metrics").body.contains("vigil_jwks_keys 3"),
        "the kept set still counts"
    );
    // Ten intervals of 300ms after the last good fetch, the kept set no longer excuses it.
    wait_for_reason(&vigil, "[-]jwt failed: GET ");
    let line = readyz_line(&vigil);
    assert!(line.contains("the last good key set is"), "{line}");
    let diag = vigil.get("/diag?format=json").json();
    assert_eq!(
        diag["vigil"]["checks"]["jwt"]["hint"],
        "kubectl get pods -n auth-service; kubectl logs deployment/auth-service -n auth-service"
    );
}

#[test]
fn jwks_without_a_key_for_the_algorithm_or_with_duplicate_kids() {
    let auth = FakeServer::fixed(Response::new(200).with_body(JWKS));
    let out = run_cli(&["check"], Some(&jwks_config(&auth.url("/jwks"), "ES256")), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "the fixture has an ES256 key: {text}");

    let mut set: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    let keys = set["keys"].as_array_mut().unwrap();
    keys.retain(|k| k["kty"] == "RSA");
    keys[1]["kid"] = "rsa-1".into();
    auth.set_response(Response::json(200, &set));
    let out = run_cli(&["check"], Some(&jwks_config(&auth.url("/jwks"), "ES256")), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[-]jwt failed: JWKS has 2 keys but none usable for ES256"),
        "{text}"
    );
    let out = run_cli(&["check"], Some(&jwks_config(&auth.url("/jwks"), "RS256")), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[+]jwt warn: JWKS has duplicate kid \"rsa-1\": verifiers may pick the wrong key"),
        "{text}"
    );

    auth.set_response(Response::new(200).with_body(vec![b' '; 2 * 1024 * 1024]));
    let out = run_cli(&["check"], Some(&jwks_config(&auth.url("/jwks"), "RS256")), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(": body larger than 1048576 bytes; no key set fetched yet"),
        "{text}"
    );

    auth.set_response(Response::json(200, &serde_json::json!({"keys": []})));
    let out = run_cli(&["check"], Some(&jwks_config(&auth.url("/jwks"), "RS256")), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("has no keys"), "{text}");
}

#[test]
fn clock_skew_against_the_auth_service_warns() {
    let ahead = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let auth = FakeServer::fixed(Response::new(200).with_header("date", ahead).with_body(JWKS));
    let out = run_cli(
        &["check", "--output", "json"],
        Some(&jwks_config(&auth.url("/jwks"), "RS256")),
        &[],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jwt = &report["vigil"]["checks"]["jwt"];
    assert_eq!(jwt["status"], "warn", "{jwt}");
    let reason = jwt["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the auth service's clock is 1")
            && reason.ends_with("s ahead of ours (over 30s): tokens may fail exp/nbf checks"),
        "{jwt}"
    );
    let skew = report["checks"]["jwt:clock_skew"][0]["observedValue"].as_f64().unwrap();
    assert!((115.0..125.0).contains(&skew), "{skew}");
}

/// The auth service's certificate expiry is read like every TLS connection's: near expiry warns
/// (with `ca_file` trusting its private CA), expired fails naming when, and the metric is exported
/// under `check="jwt"` even when verification fails.
#[test]
fn jwks_over_https_reports_the_certificate_expiry() {
    let day = 86_400;
    let expiry_metric = |vigil: &Vigil| {
        vigil.get("/metrics").body.lines().find_map(|l| {
            l.strip_prefix("vigil_tls_cert_expiry_timestamp_seconds{check=\"jwt\"} ")
                .and_then(|v| v.parse::<f64>().ok())
        })
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let dir = tempfile::tempdir().unwrap();

    let soon = support::tls::TlsServer::serving(Some(3 * day + 3600), JWKS);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, soon.ca_pem()).unwrap();
    let config = format!(
        "{}ca_file = \"{}\"\n",
        jwks_config(&soon.url("/jwks.json"), "RS256"),
        ca.display()
    );
    let vigil = Vigil::start(&config);
    let warned = support::poll_until(DEADLINE, || {
        vigil
            .get("/readyz?verbose")
            .body
            .contains("[+]jwt warn: certificate expires in 3d (notAfter ")
    });
    assert!(warned, "{}", vigil.get("/readyz?verbose").body);
    assert_eq!(vigil.get("/readyz").status, 200);
    assert!(
        vigil.get("/metrics").body.contains("vigil_jwks_keys 3"),
        "the set itself was read"
    );
    let expiry = expiry_metric(&vigil).expect("the expiry is exported");
    assert!(
        (expiry - (now + 3.0 * 86_400.0 + 3600.0)).abs() < 120.0,
        "{expiry} vs {now}"
    );
    drop(vigil);

    // Expired yesterday and not trusted (no ca_file): the reason names the expiry, not only the
    // failed handshake, and the figure is still exported.
    let expired = support::tls::TlsServer::serving(Some(-day), JWKS);
    let vigil = Vigil::start(&jwks_config(&expired.url("/jwks.json"), "RS256"));
    let failed = support::poll_until(DEADLINE, || {
        let body = vigil.get("/readyz?verbose").body;
        body.contains("[-]jwt failed:") && body.contains("certificate expired 1d ago (notAfter ")
    });
    assert!(failed, "{}", vigil.get("/readyz?verbose").body);
    assert!(
        expiry_metric(&vigil).is_some_and(|e| e < now),
        "still exported when verification fails"
    );
}
