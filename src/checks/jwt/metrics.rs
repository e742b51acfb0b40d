//! The `jwt` check's figures: `vigil_jwt_*`, `vigil_jwks_keys` and `vigil_jwks_rotations_total`.

use prometheus::core::Collector;
use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts};

use crate::metrics::{Metrics, MetricsError};

/// The `jwt` check's figures, registered only when `[jwt]` is configured, and each group only
/// when the check measures it: a gauge that is never set would export a misleading 0 (a
/// `vigil_jwt_gateway_rejects_forged_token 0` without `validate_url` would page someone).
#[derive(Clone, Default)]
pub(crate) struct JwtMetrics {
    /// With a shared secret (HS256/384/512).
    pub secret: Option<JwtSecretMetrics>,
    /// With `validate_url` and a shared secret.
    pub gateway: Option<JwtGatewayMetrics>,
    /// With `jwks_url`: the keys in the last good set, and the changes of its key ids.
    pub jwks_keys: Option<IntGauge>,
    pub jwks_rotations_total: Option<IntCounter>,
}

/// The mounted secret: valid or not, which one (by fingerprint), how often it changed.
#[derive(Clone)]
pub(crate) struct JwtSecretMetrics {
    pub valid: IntGauge,
    /// One series at 1, labelled with the current fingerprint; the previous one is removed.
    pub info: IntGaugeVec,
    pub rotations_total: IntCounter,
}

/// What the gateway's `validate_url` answered to the probe tokens.
#[derive(Clone)]
pub(crate) struct JwtGatewayMetrics {
    pub accepts_valid_token: IntGauge,
    pub rejects_forged_token: IntGauge,
}

impl JwtMetrics {
    /// Registers the groups asked for in `metrics`' registry.
    pub(crate) fn register(
        metrics: &Metrics,
        name: &str,
        secret: bool,
        gateway: bool,
        jwks: bool,
    ) -> Result<JwtMetrics, MetricsError> {
        let secret = if secret {
            let group = JwtSecretMetrics {
                valid: IntGauge::new(
                    "vigil_jwt_secret_valid",
                    "1 when the mounted JWT secret passes every hygiene rule and signs a token that verifies.",
                )?,
                info: IntGaugeVec::new(
                    Opts::new(
                        "vigil_jwt_secret_info",
                        "Always 1; labels: the algorithm and the fingerprint (first 8 hex digits of the SHA-256) of the current secret.",
                    ),
                    &["algorithm", "fingerprint"],
                )?,
                rotations_total: IntCounter::new(
                    "vigil_jwt_secret_rotations_total",
                    "Changes of the mounted JWT secret seen since the agent started.",
                )?,
            };
            let handles = group.clone();
            let collectors = move || -> Vec<Box<dyn Collector>> {
                vec![
                    Box::new(handles.valid.clone()),
                    Box::new(handles.info.clone()),
                    Box::new(handles.rotations_total.clone()),
                ]
            };
            metrics.register_group(name, collectors)?;
            Some(group)
        } else {
            None
        };
        let gateway = if gateway {
            let group = JwtGatewayMetrics {
                accepts_valid_token: IntGauge::new(
                    "vigil_jwt_gateway_accepts_valid_token",
                    "1 when the gateway accepted (2xx) a fresh token signed with the mounted secret, 0 when it rejected it.",
                )?,
                rejects_forged_token: IntGauge::new(
                    "vigil_jwt_gateway_rejects_forged_token",
                    "1 when the gateway rejected (401/403) a token signed with a random key, 0 when it accepted it.",
                )?,
            };
            let handles = group.clone();
            let collectors = move || -> Vec<Box<dyn Collector>> {
                vec![
                    Box::new(handles.accepts_valid_token.clone()),
                    Box::new(handles.rejects_forged_token.clone()),
                ]
            };
            metrics.register_group(name, collectors)?;
            Some(group)
        } else {
            None
        };
        let (jwks_keys, jwks_rotations_total) = if jwks {
            let gauge = IntGauge::new(
                "vigil_jwks_keys",
                "Keys in the last good JWKS fetched from the auth service.",
            )?;
            let rotations = IntCounter::new(
                "vigil_jwks_rotations_total",
                "Changes of the set of key ids (kid) of the auth service's JWKS seen since the agent started (the first set is none).",
            )?;
            let handles = (gauge.clone(), rotations.clone());
            metrics.register_group(name, move || -> Vec<Box<dyn Collector>> {
                vec![Box::new(handles.0.clone()), Box::new(handles.1.clone())]
            })?;
            (Some(gauge), Some(rotations))
        } else {
            (None, None)
        };
        Ok(JwtMetrics {
            secret,
            gateway,
            jwks_keys,
            jwks_rotations_total,
        })
    }
}
