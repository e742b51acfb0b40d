//! `[jwt]`: the check named `jwt`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Invalid;
use crate::config::de::duration;
use crate::config::limits::{cert_warn, client_cert_pair, default_cert_warn};
use crate::core::url::HttpUrl;

/// `[jwt]`: the check named `jwt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Jwt {
    /// The algorithm the gateway verifies with. Default `HS256`; `HS256`, `HS384`, `HS512`
    /// (need `secret_file` or `secret_env`), `RS256`, `ES256` (need `jwks_url`).
    #[serde(default)]
    pub algorithm: JwtAlgorithm,
    /// A file holding the shared secret, used byte for byte. Re-read on every run, so that a
    /// Secret rotation is seen within one interval. Default none; with an `HS*` algorithm,
    /// exactly one of `secret_file` and `secret_env` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// The name of the environment variable holding the secret (not the secret). Default
    /// none; letters, digits and `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// The `iss` claim of the probe tokens vigil signs. Default none (no claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The `aud` claim of the probe tokens vigil signs. Default none (no claim).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The gateway endpoint that a valid and a forged probe token are sent to (end-to-end
    /// test). Default none; an `http(s)` URL without credentials; `HS*` algorithms only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate_url: Option<HttpUrl>,
    /// The auth service's JWKS. Default none; an `http(s)` URL without credentials; required
    /// for `RS256` and `ES256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<HttpUrl>,
    /// A PEM file of extra CA certificates for an https `validate_url` or `jwks_url` (beside the
    /// built-in Mozilla roots; an in-cluster auth service's private CA), read when the check is
    /// built. Default none; must hold at least one certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How close the earliest `notAfter` of the certificate chains an https `validate_url` or
    /// `jwks_url` presents may come before the check warns (expired fails). Default `14d`; at
    /// most 365d.
    #[serde(default = "default_cert_warn", with = "duration")]
    pub cert_warn: Duration,
    /// Our client certificate (PEM) for an auth service or gateway whose https `jwks_url` or
    /// `validate_url` requires mutual TLS: presented when the server asks, read when the check
    /// is built and again on every run (a renewal is picked up without a restart); its expiry is
    /// judged against `cert_warn`. Default none; only with `client_key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// The private key of `client_cert_file` (PEM: PKCS#8, PKCS#1 or SEC1); never printed.
    /// Default none; only with `client_cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

impl Jwt {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        cert_warn("jwt.cert_warn", self.cert_warn)?;
        client_cert_pair("jwt", self.client_cert_file.as_deref(), self.client_key_file.as_deref())?;
        let https = |url: &Option<HttpUrl>| url.as_ref().is_some_and(|u| u.uri().scheme_str() == Some("https"));
        if self.client_cert_file.is_some() && !https(&self.validate_url) && !https(&self.jwks_url) {
            return Err(Invalid::new(
                "jwt.client_cert_file",
                "applies only to an https:// jwks_url or validate_url (a client certificate needs TLS)",
            ));
        }
        if self.algorithm.uses_shared_secret() {
            match (&self.secret_file, &self.secret_env) {
                (Some(_), Some(_)) => {
                    return Err(Invalid::new(
                        "jwt.secret_file",
                        "set either secret_file or secret_env, not both",
                    ));
                }
                (None, None) => {
                    return Err(Invalid::new(
                        "jwt.secret_file",
                        format!("required for {:?}: set secret_file or secret_env", self.algorithm),
                    ));
                }
                _ => {}
            }
        } else if self.jwks_url.is_none() {
            return Err(Invalid::new(
                "jwt.jwks_url",
                format!("required for {:?}", self.algorithm),
            ));
        } else if self.validate_url.is_some() {
            // The probe tokens are signed with the shared secret; vigil holds no private key.
            return Err(Invalid::new(
                "jwt.validate_url",
                format!(
                    "needs HS256, HS384 or HS512 (vigil signs its probe tokens with the shared secret), got {:?}",
                    self.algorithm
                ),
            ));
        }
        if let Some(name) = &self.secret_env
            && (name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(Invalid::new(
                "jwt.secret_env",
                format!("must be an environment variable name, got {name:?}"),
            ));
        }
        Ok(())
    }
}

/// The JWT signing algorithm the gateway uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and the shared secret (the default).
    #[default]
    HS256,
    /// HMAC with SHA-384 and the shared secret.
    HS384,
    /// HMAC with SHA-512 and the shared secret.
    HS512,
    /// RSA with SHA-256; keys from `jwks_url`.
    RS256,
    /// ECDSA P-256 with SHA-256; keys from `jwks_url`.
    ES256,
}

impl JwtAlgorithm {
    fn uses_shared_secret(self) -> bool {
        matches!(self, JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512)
    }
}
