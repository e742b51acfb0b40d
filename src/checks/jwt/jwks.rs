//! The auth service's JWKS: fetched each run, parsed, counted; a change of its key ids from the
//! last good set is a rotation (counted, logged with the ids added and removed: a gateway that
//! still caches a removed id fails every token signed with it); the last good set is kept with
//! its age, so that a short auth-service outage is a warning (gateways cache keys too) and a
//! long one a failure. The `Date` header of the answer gives the clock skew against the auth
//! service, the usual cause of tokens failing `exp`/`nbf` on one side only.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::checks::cert;
use crate::checks::jwt::config::JwtAlgorithm;
use crate::core::outcome::FailureKind;
use crate::core::outcome::Finding;
use crate::core::url::HttpUrl;
use crate::net::attempt::ProbeError;
use crate::net::http::{ProbeRequest, RequestError};
use crate::net::tls::HttpClient;

/// A JWKS larger than this is not a JWKS.
pub const BODY_CAP: usize = 1024 * 1024;

/// Skew beyond this makes freshly issued tokens fail `nbf`/`iat` or expire early elsewhere.
pub const SKEW_WARN_SECS: f64 = 30.0;

/// How many intervals a kept key set may age before it no longer excuses an outage.
pub const STALE_INTERVALS: u32 = 10;

const AUTH_HINT: &str = "kubectl get pods -n auth-service; kubectl logs deployment/auth-service -n auth-service";

/// One key of the set, as much as `/diag` needs (public parameters only).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    pub kid: Option<String>,
    pub kty: String,
    pub alg: Option<String>,
    pub crv: Option<String>,
    pub key_use: Option<String>,
    /// jsonwebtoken can build a verifying key from it.
    pub usable: bool,
}

impl KeyInfo {
    fn serves(&self, algorithm: JwtAlgorithm) -> bool {
        let alg_ok = |name: &str| self.alg.as_deref().is_none_or(|alg| alg == name);
        let use_ok = self.key_use.as_deref().is_none_or(|key_use| key_use == "sig");
        self.usable
            && use_ok
            && match algorithm {
                JwtAlgorithm::RS256 => self.kty == "RSA" && alg_ok("RS256"),
                JwtAlgorithm::ES256 => self.kty == "EC" && self.crv.as_deref() == Some("P-256") && alg_ok("ES256"),
                JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512 => {
                    self.kty == "oct" && alg_ok(&format!("{algorithm:?}"))
                }
            }
    }
}

/// Why a fetched document is not a usable JWKS.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("GET {url}: {error}")]
    Fetch { url: String, error: ProbeError },
    #[error("GET {url}: answered {status}")]
    Status { url: String, status: u16 },
    /// The probe reads at most [`BODY_CAP`]; half a key set is no key set.
    #[error("GET {url}: body larger than {BODY_CAP} bytes")]
    TooLarge { url: String },
    #[error("{url} is not a JWKS: {message}")]
    Parse { url: String, message: String },
}

impl JwksError {
    fn kind(&self) -> FailureKind {
        match self {
            JwksError::Fetch { error, .. } => error.kind(),
            JwksError::Status { .. } => FailureKind::HttpStatus,
            JwksError::TooLarge { .. } | JwksError::Parse { .. } => FailureKind::Protocol,
        }
    }
}

/// Parses a JWKS document into key summaries; keys of unknown types are counted, not refused.
pub fn parse(body: &[u8]) -> Result<Vec<KeyInfo>, String> {
    let document: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON ({e})"))?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "no \"keys\" array".to_owned())?;
    keys.iter()
        .enumerate()
        .map(|(index, key)| {
            let text = |name: &str| key.get(name).and_then(Value::as_str).map(str::to_owned);
            let kty = text("kty").ok_or_else(|| format!("key {index} has no \"kty\""))?;
            let usable = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(key.clone())
                .ok()
                .is_some_and(|jwk| jsonwebtoken::DecodingKey::from_jwk(&jwk).is_ok());
            Ok(KeyInfo {
                kid: text("kid"),
                kty,
                alg: text("alg"),
                crv: text("crv"),
                key_use: text("use"),
                usable,
            })
        })
        .collect()
}

struct Good {
    keys: Vec<KeyInfo>,
    at: Instant,
    at_wall: SystemTime,
}

/// A change of the set of key ids between two good sets: the ids added and removed, each
/// sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// The most ids a rotation names in the log, each way; the rest are counted.
const IDS_NAMED: usize = 20;

/// The most characters of one id the log shows (ids are the auth service's text).
const ID_CHARS: usize = 64;

impl Rotation {
    /// The change from the ids of `old` to those of `new` (keys without a `kid` have no id);
    /// `None` when the ids are the same, in whatever order.
    pub fn between(old: &[KeyInfo], new: &[KeyInfo]) -> Option<Rotation> {
        let ids = |keys: &[KeyInfo]| -> BTreeSet<String> { keys.iter().filter_map(|k| k.kid.clone()).collect() };
        let (old, new) = (ids(old), ids(new));
        let added: Vec<String> = new.difference(&old).cloned().collect();
        let removed: Vec<String> = old.difference(&new).cloned().collect();
        (!added.is_empty() || !removed.is_empty()).then_some(Rotation { added, removed })
    }

    /// The ids as one log field: printable, each cut at [`ID_CHARS`], at most [`IDS_NAMED`],
    /// comma-separated (`rsa-3,ec-2 and 5 more`).
    fn list(ids: &[String]) -> String {
        let shown: Vec<String> = ids
            .iter()
            .take(IDS_NAMED)
            .map(|id| {
                id.chars()
                    .map(|c| if c.is_control() || c == ',' { '?' } else { c })
                    .take(ID_CHARS)
                    .collect()
            })
            .collect();
        match ids.len().saturating_sub(IDS_NAMED) {
            0 => shown.join(","),
            more => format!("{} and {more} more", shown.join(",")),
        }
    }
}

/// What one JWKS run found, for the check to merge.
pub struct JwksReport {
    /// The key ids changed since the last good set.
    pub rotation: Option<Rotation>,
    pub findings: Vec<Finding>,
    /// Keys in the set in use (the fresh one, or the kept one).
    pub keys: Option<usize>,
    /// Age of the set in use; 0 when fetched this run.
    pub age: Option<Duration>,
    /// The auth service's clock minus ours, when it sent a `Date`.
    pub skew_secs: Option<f64>,
    pub details: Value,
}

/// Watches one JWKS URL.
pub struct Jwks {
    url: HttpUrl,
    algorithm: JwtAlgorithm,
    max_age: Duration,
    client: HttpClient,
    request: ProbeRequest,
    last_good: Option<Good>,
    /// Changes of the key ids seen, and when the last one was.
    rotations: u64,
    last_rotation: Option<SystemTime>,
    /// Where the expiry of the chain the auth service showed is noted (the check judges it).
    seen: Arc<cert::Earliest>,
}

impl Jwks {
    pub fn new(
        url: HttpUrl,
        algorithm: JwtAlgorithm,
        interval: Duration,
        client: HttpClient,
        seen: Arc<cert::Earliest>,
    ) -> Result<Jwks, RequestError> {
        let request = super::get_request(&url)?;
        Ok(Jwks {
            url,
            algorithm,
            max_age: interval * STALE_INTERVALS,
            client,
            request,
            last_good: None,
            rotations: 0,
            last_rotation: None,
            seen,
        })
    }

    /// Fetches and judges the set. Cancel-safe: the kept set changes only after a complete,
    /// valid answer.
    pub async fn run(&mut self, deadline: Duration) -> JwksReport {
        let sent = SystemTime::now();
        let fetched = self.fetch(deadline).await;
        let mut findings = Vec::new();
        let mut skew_secs = None;
        let mut error_text = None;
        let mut rotation = None;
        match fetched {
            Ok((keys, date)) => {
                if let Some(date) = date {
                    // The server stamps its Date somewhere between sending and now; HTTP dates
                    // have one-second resolution, which the 30 s threshold dwarfs.
                    let ours = sent + SystemTime::now().duration_since(sent).unwrap_or_default() / 2;
                    let skew = match date.duration_since(ours) {
                        Ok(ahead) => ahead.as_secs_f64(),
                        Err(behind) => -behind.duration().as_secs_f64(),
                    };
                    skew_secs = Some(skew);
                    if skew.abs() > SKEW_WARN_SECS {
                        findings.push(
                            Finding::warn(
                                FailureKind::Threshold,
                                format!(
                                    "the auth service's clock is {:.0}s {} ours (over {SKEW_WARN_SECS:.0}s): tokens may fail exp/nbf checks",
                                    skew.abs(),
                                    if skew > 0.0 { "ahead of" } else { "behind" }
                                ),
                            )
                            .with_hint("check time sync on the nodes of both pods (timedatectl; chronyc tracking)"),
                        );
                    }
                }
                rotation = self
                    .last_good
                    .as_ref()
                    .and_then(|old| Rotation::between(&old.keys, &keys));
                if let Some(rotation) = &rotation {
                    tracing::info!(
                        check = "jwt",
                        url = %self.url,
                        added = %Rotation::list(&rotation.added),
                        removed = %Rotation::list(&rotation.removed),
                        "JWKS rotated: its key ids changed"
                    );
                    self.rotations += 1;
                    self.last_rotation = Some(SystemTime::now());
                }
                self.last_good = Some(Good {
                    keys,
                    at: Instant::now(),
                    at_wall: SystemTime::now(),
                });
            }
            Err(error) => {
                error_text = Some(error.to_string());
                findings.push(self.outage(&error));
            }
        }
        if let Some(good) = &self.last_good {
            findings.extend(self.judge_keys(&good.keys));
        }
        let good = self.last_good.as_ref();
        JwksReport {
            rotation,
            findings,
            keys: good.map(|g| g.keys.len()),
            age: good.map(|g| g.at.elapsed()),
            skew_secs,
            details: json!({
                "url": self.url.as_str(),
                "error": error_text,
                "fetched_at": good.map(|g| humantime::format_rfc3339_seconds(g.at_wall).to_string()),
                "age_s": good.map(|g| g.at.elapsed().as_secs_f64()),
                "clock_skew_s": skew_secs,
                "rotations": self.rotations,
                "last_rotation": self.last_rotation.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                "keys": good.map(|g| g.keys.iter().map(|k| json!({
                    "kid": k.kid, "kty": k.kty, "alg": k.alg, "crv": k.crv, "use": k.key_use, "usable": k.usable,
                })).collect::<Vec<_>>()),
            }),
        }
    }

    async fn fetch(&self, deadline: Duration) -> Result<(Vec<KeyInfo>, Option<SystemTime>), JwksError> {
        let url = self.url.as_str().to_owned();
        let answer = super::get(&self.client, &self.request, deadline, BODY_CAP, &self.seen)
            .await
            .map_err(|error| JwksError::Fetch {
                url: url.clone(),
                error,
            })?;
        if !(200..300).contains(&answer.status) {
            return Err(JwksError::Status {
                url,
                status: answer.status,
            });
        }
        if answer.truncated {
            return Err(JwksError::TooLarge { url });
        }
        let keys = parse(&answer.body).map_err(|message| JwksError::Parse { url, message })?;
        Ok((keys, answer.date))
    }

    /// The auth service gave no usable set: a warning while a kept one is young, else a fail.
    fn outage(&self, error: &JwksError) -> Finding {
        match &self.last_good {
            Some(good) if good.at.elapsed() < self.max_age => Finding::warn(
                error.kind(),
                format!(
                    "{error}; keeping the key set fetched {} ago ({} keys)",
                    round_secs(good.at.elapsed()),
                    good.keys.len()
                ),
            ),
            Some(good) => Finding::fail(
                error.kind(),
                format!(
                    "{error}; the last good key set is {} old (limit {})",
                    round_secs(good.at.elapsed()),
                    round_secs(self.max_age)
                ),
            ),
            None => Finding::fail(error.kind(), format!("{error}; no key set fetched yet")),
        }
        .with_hint(AUTH_HINT)
    }

    fn judge_keys(&self, keys: &[KeyInfo]) -> Vec<Finding> {
        let mut findings = Vec::new();
        if keys.is_empty() {
            findings.push(
                Finding::fail(FailureKind::Misconfigured, format!("JWKS at {} has no keys", self.url))
                    .with_hint(AUTH_HINT),
            );
            return findings;
        }
        let shared = matches!(
            self.algorithm,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        );
        if !shared && !keys.iter().any(|k| k.serves(self.algorithm)) {
            findings.push(
                Finding::fail(
                    FailureKind::Misconfigured,
                    format!(
                        "JWKS has {} keys but none usable for {:?}",
                        keys.len(),
                        self.algorithm
                    ),
                )
                .with_hint("compare jwt.algorithm with the auth service's signing key; kubectl logs deployment/auth-service -n auth-service"),
            );
        }
        let mut kids: BTreeMap<&str, usize> = BTreeMap::new();
        for kid in keys.iter().filter_map(|k| k.kid.as_deref()) {
            *kids.entry(kid).or_default() += 1;
        }
        let duplicates: Vec<String> = kids
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(kid, _)| format!("{kid:?}"))
            .collect();
        if !duplicates.is_empty() {
            findings.push(
                Finding::warn(
                    FailureKind::Misconfigured,
                    format!(
                        "JWKS has duplicate kid {}: verifiers may pick the wrong key",
                        duplicates.join(", ")
                    ),
                )
                .with_hint("give every key of the auth service a unique kid"),
            );
        }
        findings
    }
}

fn round_secs(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/jwks.json");

    #[test]
    fn the_fixture_parses_into_usable_rsa_and_ec_keys() {
        let keys = parse(FIXTURE.as_bytes()).unwrap();
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|k| k.usable), "{keys:?}");
        assert!(keys.iter().any(|k| k.serves(JwtAlgorithm::RS256)));
        assert!(keys.iter().any(|k| k.serves(JwtAlgorithm::ES256)));
    }

    #[test]
    fn a_rotation_is_a_change_of_key_ids_whatever_their_order() {
        let keys = |kids: &[&str]| -> Vec<KeyInfo> {
            kids.iter()
                .map(|kid| KeyInfo {
                    kid: (!kid.is_empty()).then(|| (*kid).to_owned()),
                    kty: "RSA".to_owned(),
                    alg: None,
                    crv: None,
                    key_use: None,
                    usable: true,
                })
                .collect()
        };
        assert_eq!(Rotation::between(&keys(&["a", "b"]), &keys(&["b", "a"])), None);
        assert_eq!(
            Rotation::between(&keys(&["a", "b", ""]), &keys(&["b", "c"])),
            Some(Rotation {
                added: vec!["c".to_owned()],
                removed: vec!["a".to_owned()]
            }),
            "a key without kid has no id"
        );
        let many: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
        let listed = Rotation::list(&many);
        assert!(listed.ends_with(",k19 and 5 more"), "{listed}");
        assert_eq!(
            Rotation::list(&["a\nb,c".to_owned(), "x".repeat(100)])[..5].to_owned(),
            "a?b?c"
        );
        assert_eq!(Rotation::list(&["x".repeat(100)]).len(), 64);
    }

    #[test]
    fn broken_documents_say_why() {
        assert!(parse(b"<html>").unwrap_err().starts_with("invalid JSON"));
        assert_eq!(parse(b"{}").unwrap_err(), "no \"keys\" array");
        assert_eq!(parse(br#"{"keys":[{"kid":"a"}]}"#).unwrap_err(), "key 0 has no \"kty\"");
        let odd = parse(br#"{"keys":[{"kty":"OKP","kid":"x","crv":"X25519","x":"AA"}]}"#).unwrap();
        assert_eq!(odd.len(), 1);
    }
}
