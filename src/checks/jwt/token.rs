//! Probe tokens: short-lived, standard HS256/384/512 JWTs that the gateway can verify, and the
//! same claims signed with a random key that it must refuse.
//!
//! Every token is a `Secret<String>`: a valid one is a credential for a minute.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::checks::jwt::config::JwtAlgorithm;
use crate::core::secret::Secret;

/// How long a probe token is valid: long enough for a slow gateway, short enough that a
/// leaked one is worthless soon.
pub(super) const LIFETIME_SECS: u64 = 60;

/// The `sub` of every probe token, so that gateway logs show where they come from.
pub(super) const SUBJECT: &str = "vigil-probe";

/// Why a token could not be made or did not verify.
#[derive(Debug, thiserror::Error)]
pub(super) enum TokenError {
    #[error("no randomness from the operating system: {0}")]
    Random(getrandom::Error),
    #[error("{0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    #[error("{0:?} does not use a shared secret")]
    NotShared(JwtAlgorithm),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    aud: Option<String>,
    sub: String,
    iat: u64,
    exp: u64,
    jti: String,
}

/// The claims of one probe: minted once per run, then signed with each key.
pub(super) struct Probe {
    algorithm: Algorithm,
    claims: Claims,
}

pub(super) fn algorithm(algorithm: JwtAlgorithm) -> Algorithm {
    match algorithm {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

impl Probe {
    /// Claims for a token issued now: `iss`/`aud` from the configuration, `exp` a minute
    /// ahead, a random `jti` so that a gateway with replay protection sees a new token.
    pub(super) fn new(alg: JwtAlgorithm, issuer: Option<&str>, audience: Option<&str>) -> Result<Probe, TokenError> {
        if !matches!(alg, JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512) {
            return Err(TokenError::NotShared(alg));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let jti: String = random_bytes::<16>()?.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Probe {
            algorithm: algorithm(alg),
            claims: Claims {
                iss: issuer.map(str::to_owned),
                aud: audience.map(str::to_owned),
                sub: SUBJECT.to_owned(),
                iat: now,
                exp: now + LIFETIME_SECS,
                jti,
            },
        })
    }

    /// The token signed with `key`.
    pub(super) fn sign(&self, key: &Secret<Vec<u8>>) -> Result<Secret<String>, TokenError> {
        let token = jsonwebtoken::encode(
            &Header::new(self.algorithm),
            &self.claims,
            &EncodingKey::from_secret(key.expose()),
        )?;
        Ok(Secret::new(token))
    }

    /// The token signed with a fresh random key as long as the hash's output: what an attacker
    /// without the secret could present.
    pub(super) fn forge(&self) -> Result<Secret<String>, TokenError> {
        let key = Secret::new(random_bytes::<64>()?.to_vec());
        self.sign(&key)
    }

    /// Verifies `token` with `key` as a careful gateway would: algorithm pinned, signature,
    /// `exp`, and `iss`/`aud` when configured.
    pub(super) fn verify(&self, token: &Secret<String>, key: &Secret<Vec<u8>>) -> Result<(), TokenError> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.claims.iss {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.claims.aud {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        jsonwebtoken::decode::<Claims>(token.expose(), &DecodingKey::from_secret(key.expose()), &validation)?;
        Ok(())
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], TokenError> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(TokenError::Random)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Secret<Vec<u8>> {
        Secret::new(text.as_bytes().to_vec())
    }

    #[test]
    fn a_probe_token_verifies_with_its_key_and_not_with_another() {
        let probe = Probe::new(JwtAlgorithm::HS384, Some("api-gateway"), Some("api")).unwrap();
        let secret = key(&"k9".repeat(30));
        let token = probe.sign(&secret).unwrap();
        probe.verify(&token, &secret).unwrap();
        assert!(probe.verify(&token, &key(&"z7".repeat(30))).is_err());
        assert!(probe.verify(&probe.forge().unwrap(), &secret).is_err());
        let header = jsonwebtoken::decode_header(token.expose()).unwrap();
        assert_eq!(header.alg, Algorithm::HS384);
    }

    #[test]
    fn tokens_are_never_printed() {
        let probe = Probe::new(JwtAlgorithm::HS256, None, None).unwrap();
        let token = probe.sign(&key("q8Vw2LmZ3xT9rK4pN7sB1yD6fH0jC5gA")).unwrap();
        assert_eq!(format!("{token:?}"), "<redacted>");
    }
}
