//! The mounted JWT secret: reading it (every run, so that a Secret update is seen within one
//! interval), judging it (length, placeholders, stray whitespace) and naming it by fingerprint.
//!
//! Nothing here ever formats the secret: findings describe it by length and kind only.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::checks::jwt::config::JwtAlgorithm;
use crate::core::outcome::FailureKind;
use crate::core::outcome::Finding;
use crate::core::secret::Secret;

/// Where the secret comes from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    /// A file, typically a Kubernetes Secret volume (`secret -> ..data/secret`, updated by an
    /// atomic swap of the `..data` symlink): reading through the link always sees one whole
    /// version.
    File(PathBuf),
    /// The name of an environment variable.
    Env(String),
}

/// Why the secret could not be read. Names the path or variable, never a value.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadError {
    #[error("secret file {path}: {message}")]
    File { path: String, message: String },
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
}

impl Source {
    /// Reads the secret as it is now, bytes as stored (a trailing newline included).
    pub(super) fn read(&self) -> Result<Secret<Vec<u8>>, ReadError> {
        match self {
            Source::File(path) => {
                crate::core::secret::read_bytes(path)
                    .map(Secret::new)
                    .map_err(|error| ReadError::File {
                        path: path.display().to_string(),
                        message: describe_io(&error),
                    })
            }
            Source::Env(name) => std::env::var_os(name)
                .map(|value| Secret::new(value.into_encoded_bytes()))
                .ok_or_else(|| ReadError::EnvMissing(name.clone())),
        }
    }

    /// `file /var/run/secrets/jwt/secret` or `env JWT_SECRET`, for `/diag`.
    pub(super) fn describe(&self) -> String {
        match self {
            Source::File(path) => format!("file {}", path.display()),
            Source::Env(name) => format!("env {name}"),
        }
    }
}

/// `No such file or directory` rather than `No such file or directory (os error 2)`.
fn describe_io(error: &impl std::fmt::Display) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// What a weak secret shows instead of its fingerprint.
pub(super) const WITHHELD: &str = "withheld";

/// The secret's SHA-256: how the check tells one version from the next. Never shown.
pub(super) fn digest(secret: &Secret<Vec<u8>>) -> [u8; 32] {
    Sha256::digest(secret.expose()).into()
}

/// The first 8 hex digits of the secret's SHA-256: enough to tell versions apart on a
/// dashboard, far too little to learn anything about a strong secret. A secret shorter than
/// its algorithm asks shows [`WITHHELD`]: 32 bits of its hash on `/metrics` would let anyone
/// confirm dictionary guesses offline.
pub(super) fn fingerprint(secret: &Secret<Vec<u8>>, algorithm: JwtAlgorithm) -> String {
    if secret.expose().len() < min_length(algorithm) {
        return WITHHELD.to_owned();
    }
    digest(secret)
        .iter()
        .take(4)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The minimum length RFC 7518 §3.2 asks of an HMAC key: the hash's output size.
pub(super) fn min_length(algorithm: JwtAlgorithm) -> usize {
    match algorithm {
        JwtAlgorithm::HS384 => 48,
        JwtAlgorithm::HS512 => 64,
        _ => 32,
    }
}

/// Values that ship in samples, guides and charts and end up in production. Compared
/// case-insensitively, after trimming and with `-`, `_`, `.` and spaces removed, so
/// `Change_Me` and `change-me` both match `changeme`.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "changeit",
    "changethis",
    "changemeplease",
    "pleasechangeme",
    "replaceme",
    "secret",
    "secretkey",
    "secrets",
    "password",
    "passw0rd",
    "p4ssw0rd",
    "s3cr3t",
    "mysecret",
    "mysecretkey",
    "mysupersecret",
    "mysupersecretkey",
    "supersecret",
    "supersecretkey",
    "topsecret",
    "jwt",
    "jwtsecret",
    "jwtsecretkey",
    "jwtkey",
    "yourjwtsecret",
    "yourjwtsecretkey",
    "yoursecret",
    "yoursecretkey",
    "your256bitsecret",
    "your384bitsecret",
    "your512bitsecret",
    "astringsecretatleast256bitslong",
    "shhhhh",
    "keyboardcat",
    "secretorprivatekey",
    "test",
    "testing",
    "testsecret",
    "example",
    "examplesecret",
    "default",
    "defaultsecret",
    "sample",
    "demo",
    "dev",
    "development",
    "admin",
    "key",
    "token",
    "foobar",
    "qwerty",
    "123456",
    "12345678",
    "1234567890",
    "0123456789",
    "abcdef",
    "xxx",
    "todo",
    "none",
    "null",
];

fn normalize(secret: &[u8]) -> Vec<u8> {
    secret
        .trim_ascii()
        .iter()
        .filter(|byte| !matches!(byte, b'-' | b'_' | b'.' | b' '))
        .map(u8::to_ascii_lowercase)
        .collect()
}

fn is_placeholder(secret: &[u8]) -> bool {
    let normalized = normalize(secret);
    PLACEHOLDERS.iter().any(|p| p.as_bytes() == normalized.as_slice())
}

const WEAK_HINT: &str = "generate a strong one (openssl rand -base64 64 | tr -d '\\n'), update it \
                         (kubectl create secret generic jwt-secret --from-literal=secret=... -n api-gateway \
                         --dry-run=client -o yaml | kubectl apply -f -), then kubectl rollout restart \
                         deployment/api-gateway -n api-gateway";

/// Judges the secret; an empty list means it passes every rule.
pub(super) fn assess(secret: &Secret<Vec<u8>>, algorithm: JwtAlgorithm) -> Vec<Finding> {
    let raw = secret.expose().as_slice();
    let trimmed = raw.trim_ascii();
    let mut findings = Vec::new();
    if raw.is_empty() {
        findings.push(Finding::fail(FailureKind::Misconfigured, "secret is empty").with_hint(WEAK_HINT));
        return findings;
    }
    if trimmed.is_empty() {
        findings.push(Finding::fail(FailureKind::Misconfigured, "secret is only whitespace").with_hint(WEAK_HINT));
        return findings;
    }
    if is_placeholder(raw) {
        findings.push(
            Finding::fail(FailureKind::Misconfigured, "secret is a well-known placeholder value").with_hint(WEAK_HINT),
        );
    } else if trimmed.iter().all(|&byte| byte == trimmed[0]) {
        findings
            .push(Finding::fail(FailureKind::Misconfigured, "secret is one character repeated").with_hint(WEAK_HINT));
    }
    let min = min_length(algorithm);
    if trimmed.len() < min {
        findings.push(
            Finding::fail(
                FailureKind::Misconfigured,
                format!("secret is {} bytes, {algorithm:?} needs at least {min}", trimmed.len()),
            )
            .with_hint(WEAK_HINT),
        );
    }
    if raw.len() != trimmed.len() {
        let what = if raw.ends_with(b"\n") {
            "secret ends with a newline (the classic `echo` into a Secret): gateways that trim it and those that do not disagree"
        } else {
            "secret has leading or trailing whitespace: gateways that trim it and those that do not disagree"
        };
        findings.push(Finding::warn(FailureKind::Misconfigured, what).with_hint(
            "recreate it without the newline: kubectl create secret generic jwt-secret --from-literal=secret=\"$(cat secret.txt)\" \
             -n api-gateway --dry-run=client -o yaml | kubectl apply -f - (or printf '%s' instead of echo)",
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::outcome::Status;

    fn judge(secret: &str, algorithm: JwtAlgorithm) -> Vec<(Status, String)> {
        assess(&Secret::new(secret.as_bytes().to_vec()), algorithm)
            .into_iter()
            .map(|f| (f.status, f.reason))
            .collect()
    }

    #[test]
    fn strong_secrets_pass() {
        assert!(judge("q8Vw2LmZ3xT9rK4pN7sB1yD6fH0jC5gA", JwtAlgorithm::HS256).is_empty());
        assert!(judge(&"aB3".repeat(22), JwtAlgorithm::HS512).is_empty());
    }

    #[test]
    fn length_follows_the_algorithm() {
        let secret = "q8Vw2LmZ3xT9rK4pN7sB1yD6fH0jC5gA"; // 32 bytes
        assert!(judge(secret, JwtAlgorithm::HS256).is_empty());
        assert_eq!(
            judge(secret, JwtAlgorithm::HS384),
            vec![(Status::Fail, "secret is 32 bytes, HS384 needs at least 48".to_owned())]
        );
        assert_eq!(
            judge("q8Vw2LmZ3xT9rK4pN7sB", JwtAlgorithm::HS256),
            vec![(Status::Fail, "secret is 20 bytes, HS256 needs at least 32".to_owned())]
        );
    }

    #[test]
    fn placeholders_and_repeats_fail_whatever_their_case_or_separators() {
        for placeholder in [
            "changeme",
            "Change-Me",
            " CHANGE_ME ",
            "your-256-bit-secret",
            "secret",
            "Password",
        ] {
            let findings = judge(placeholder, JwtAlgorithm::HS256);
            assert_eq!(
                findings[0].1, "secret is a well-known placeholder value",
                "{placeholder}"
            );
        }
        let long = "a-string-secret-at-least-256-bits-long";
        assert_eq!(
            judge(long, JwtAlgorithm::HS256),
            vec![(Status::Fail, "secret is a well-known placeholder value".to_owned())]
        );
        assert_eq!(
            judge(&"x".repeat(40), JwtAlgorithm::HS256),
            vec![(Status::Fail, "secret is one character repeated".to_owned())]
        );
    }

    #[test]
    fn empty_whitespace_and_trailing_newline() {
        assert_eq!(judge("", JwtAlgorithm::HS256)[0].1, "secret is empty");
        assert_eq!(judge(" \n", JwtAlgorithm::HS256)[0].1, "secret is only whitespace");
        let findings = judge("q8Vw2LmZ3xT9rK4pN7sB1yD6fH0jC5gA\n", JwtAlgorithm::HS256);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].0, Status::Warn);
        assert!(findings[0].1.starts_with("secret ends with a newline"));
    }

    #[test]
    fn fingerprint_is_eight_hex_digits_of_sha256_for_a_long_enough_secret() {
        let strong = Secret::new(b"q8Vw2LmZ3xT9rK4pN7sB1yD6fH0jC5gA".to_vec());
        let expected: String = Sha256::digest(strong.expose())
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(fingerprint(&strong, JwtAlgorithm::HS256), expected);
        // sha256("abc") = ba7816bf…, never shown: three bytes are guessed in no time.
        assert_eq!(
            fingerprint(&Secret::new(b"abc".to_vec()), JwtAlgorithm::HS256),
            WITHHELD
        );
        assert_eq!(
            fingerprint(&strong, JwtAlgorithm::HS512),
            WITHHELD,
            "32 bytes are short for HS512"
        );
    }

    #[test]
    fn a_missing_file_names_its_path_without_the_os_error_number() {
        let error = Source::File(PathBuf::from("/nonexistent/jwt/secret"))
            .read()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "secret file /nonexistent/jwt/secret: No such file or directory"
        );
    }
}
