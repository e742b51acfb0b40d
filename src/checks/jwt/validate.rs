//! The end-to-end probe: does the gateway accept what the mounted secret signs, and refuse what
//! a random key signs?
//!
//! Protocol: `GET validate_url` with `Authorization: Bearer <token>`; 2xx is accept, 401/403 is
//! reject, anything else (another status, no answer) is neither and fails the check as such, so
//! "gateway unreachable" never reads as "gateway rejects valid tokens".

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde_json::{Value, json};

use crate::checks::cert;
use crate::core::outcome::FailureKind;
use crate::core::outcome::Finding;
use crate::core::secret::Secret;
use crate::core::url::HttpUrl;
use crate::net::attempt::ProbeError;
use crate::net::attempt::ProbeResponse;
use crate::net::http::{ProbeRequest, RequestError};
use crate::net::tls::HttpClient;

pub(super) const RESTART_HINT: &str = "kubectl rollout restart deployment/api-gateway -n api-gateway";
const GATEWAY_HINT: &str = "kubectl get pods -n api-gateway; kubectl logs deployment/api-gateway -n api-gateway";
const MISMATCH_HINT: &str = "the gateway verifies with another secret than the one mounted here: kubectl get secret \
                             jwt-secret -n api-gateway; kubectl logs deployment/api-gateway -n api-gateway | grep -i jwt";
const TRIM_HINT: &str = "recreate the Secret without the newline (printf '%s' instead of echo; kubectl create secret \
                         generic jwt-secret --from-literal=secret=... -n api-gateway --dry-run=client -o yaml | kubectl apply -f -)";
const FORGED_HINT: &str = "the gateway lets any token through: fix its JWT verification (key, algorithm allow-list) \
                           now; kubectl logs deployment/api-gateway -n api-gateway";

/// How the gateway answered one token.
#[derive(Debug)]
pub(super) enum Verdict {
    Accepted(u16),
    Rejected(u16),
    /// Another status: neither an accept nor a reject.
    Other(u16),
    Failed(ProbeError),
}

impl Verdict {
    fn from(result: Result<ProbeResponse, ProbeError>) -> Verdict {
        match result {
            Ok(answer) if (200..300).contains(&answer.status) => Verdict::Accepted(answer.status),
            Ok(answer) if matches!(answer.status, 401 | 403) => Verdict::Rejected(answer.status),
            Ok(answer) => Verdict::Other(answer.status),
            Err(error) => Verdict::Failed(error),
        }
    }

    fn describe(&self) -> Value {
        match self {
            Verdict::Accepted(status) | Verdict::Rejected(status) | Verdict::Other(status) => json!(status),
            Verdict::Failed(error) => json!(error.to_string()),
        }
    }
}

/// What the probe learned.
pub(super) struct ValidateReport {
    pub findings: Vec<Finding>,
    /// `Some` only when the gateway gave a definite accept or reject.
    pub accepts_valid: Option<bool>,
    pub rejects_forged: Option<bool>,
    pub details: Value,
}

/// The tokens of one probe, all with the same claims.
pub(super) struct Tokens {
    /// Signed with the mounted secret, byte for byte.
    pub valid: Secret<String>,
    /// Signed with a random key.
    pub forged: Secret<String>,
    /// Signed with the secret before the last rotation, if there was one.
    pub previous: Option<Secret<String>>,
    /// Signed with the mounted secret without its surrounding whitespace, when it has some.
    pub trimmed: Option<Secret<String>>,
}

/// Talks to one `validate_url`.
pub(super) struct ValidateProbe {
    url: HttpUrl,
    client: HttpClient,
    /// The request without its token: the `Authorization` header is added per token and run,
    /// so that no token outlives the run that signed it.
    request: ProbeRequest,
    /// Where the expiry of the chain each request was shown is noted (the check judges it).
    seen: Arc<cert::Earliest>,
}

impl ValidateProbe {
    pub(super) fn new(
        url: HttpUrl,
        client: HttpClient,
        seen: Arc<cert::Earliest>,
    ) -> Result<ValidateProbe, RequestError> {
        let request = super::get_request(&url)?;
        Ok(ValidateProbe {
            url,
            client,
            request,
            seen,
        })
    }

    /// Sends `token` as `Authorization: Bearer <token>`. The body is read at most as far as an
    /// upstream's ([`crate::net::http::BODY_LIMIT`]): only the status matters.
    async fn ask(&self, token: &Secret<String>, deadline: Duration) -> Verdict {
        let mut request = self.request.clone();
        // Sensitive: hyper and the request's Debug output never show it. A JWT is base64url and
        // dots, always a valid header value; the error (which does not quote it) is a safeguard.
        match HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
            Ok(mut value) => {
                value.set_sensitive(true);
                request.headers.push((http::header::AUTHORIZATION, value));
            }
            Err(error) => return Verdict::Failed(ProbeError::Request(error.into())),
        }
        Verdict::from(
            super::get(
                &self.client,
                &request,
                deadline,
                crate::net::http::BODY_LIMIT,
                &self.seen,
            )
            .await,
        )
    }

    /// Sends the valid token, then the forged one, then (only when the valid one was refused)
    /// the one of the previous secret and the one of the trimmed secret, to say why. Each
    /// request gets the time that is left of `deadline`.
    pub(super) async fn probe(&self, tokens: &Tokens, deadline: Duration) -> ValidateReport {
        let end = tokio::time::Instant::now() + deadline;
        let left = || end.saturating_duration_since(tokio::time::Instant::now());
        let url = self.url.as_str();
        let valid = self.ask(&tokens.valid, left()).await;
        if let Verdict::Failed(error) = &valid {
            return ValidateReport {
                findings: vec![
                    Finding::fail(error.kind(), format!("gateway unreachable: GET {url}: {error}"))
                        .with_hint(GATEWAY_HINT),
                ],
                accepts_valid: None,
                rejects_forged: None,
                details: json!({ "url": url, "valid_token": valid.describe() }),
            };
        }
        let forged = self.ask(&tokens.forged, left()).await;
        let previous = match (&valid, &tokens.previous) {
            (Verdict::Rejected(_), Some(token)) => Some(self.ask(token, left()).await),
            _ => None,
        };
        let trimmed = match (&valid, &previous, &tokens.trimmed) {
            (Verdict::Rejected(_), None | Some(Verdict::Rejected(_)), Some(token)) => {
                Some(self.ask(token, left()).await)
            }
            _ => None,
        };

        let forged_finding = judge_forged(&forged, url);
        let valid_finding = judge_valid(&valid, previous.as_ref(), trimmed.as_ref());
        // A forged token that gets in outranks everything else; otherwise what happened to the
        // valid token comes first (a gateway answering 500 to both is about the valid one).
        let findings: Vec<Finding> = if matches!(forged, Verdict::Accepted(_)) {
            forged_finding.into_iter().chain(valid_finding).collect()
        } else {
            valid_finding.into_iter().chain(forged_finding).collect()
        };

        // A gateway that accepts the trimmed secret's token does accept valid tokens: its own.
        let valid = match (valid, &trimmed) {
            (Verdict::Rejected(_), Some(Verdict::Accepted(status))) => Verdict::Accepted(*status),
            (valid, _) => valid,
        };
        let definite = |verdict: &Verdict, accepted: bool| match verdict {
            Verdict::Accepted(_) => Some(accepted),
            Verdict::Rejected(_) => Some(!accepted),
            _ => None,
        };
        ValidateReport {
            findings,
            accepts_valid: definite(&valid, true),
            rejects_forged: definite(&forged, false),
            details: json!({
                "url": url,
                "valid_token": valid.describe(),
                "forged_token": forged.describe(),
                "previous_secret_token": previous.as_ref().map(Verdict::describe),
                "trimmed_secret_token": trimmed.as_ref().map(Verdict::describe),
            }),
        }
    }
}

/// What the answer to the forged token says.
fn judge_forged(forged: &Verdict, url: &str) -> Option<Finding> {
    match forged {
        Verdict::Accepted(status) => Some(
            Finding::fail(
                FailureKind::Misconfigured,
                format!("gateway accepts tokens signed with a random key ({status}): it does not verify signatures"),
            )
            .with_hint(FORGED_HINT),
        ),
        Verdict::Rejected(_) => None,
        Verdict::Other(status) => Some(
            Finding::fail(
                FailureKind::HttpStatus,
                format!("gateway answered {status} to a token signed with a random key (expected 401 or 403)"),
            )
            .with_hint(GATEWAY_HINT),
        ),
        Verdict::Failed(error) => Some(
            Finding::fail(error.kind(), format!("gateway unreachable: GET {url}: {error}")).with_hint(GATEWAY_HINT),
        ),
    }
}

/// What the answers to the valid token (and, when it was refused, to the previous and trimmed
/// secrets' tokens) say.
fn judge_valid(valid: &Verdict, previous: Option<&Verdict>, trimmed: Option<&Verdict>) -> Option<Finding> {
    match (valid, previous) {
        (Verdict::Accepted(_) | Verdict::Failed(_), _) => None,
        (Verdict::Rejected(_), _) if matches!(trimmed, Some(Verdict::Accepted(_))) => Some(
            Finding::warn(
                FailureKind::Misconfigured,
                "gateway trims the secret: it accepts tokens signed without the secret's trailing whitespace and rejects those signed with it",
            )
            .with_hint(TRIM_HINT),
        ),
        (Verdict::Rejected(_), Some(Verdict::Accepted(_))) => Some(
            Finding::fail(
                FailureKind::Auth,
                "gateway rejects tokens signed with the mounted secret but accepts the previous one: it still runs the old secret",
            )
            .with_hint(RESTART_HINT),
        ),
        (Verdict::Rejected(status), _) => Some(
            Finding::fail(
                FailureKind::Auth,
                format!("gateway rejects tokens signed with the mounted secret ({status})"),
            )
            .with_hint(MISMATCH_HINT),
        ),
        (Verdict::Other(status), _) => Some(
            Finding::fail(
                FailureKind::HttpStatus,
                format!("gateway answered {status} to a valid token (expected 2xx)"),
            )
            .with_hint(GATEWAY_HINT),
        ),
    }
}
