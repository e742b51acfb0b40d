//! `[kubernetes]`'s cluster keys: where the API server is, how vigil authenticates, which pod,
//! container and Service it watches, and whether it writes Events. The rest of the table is the
//! `pod` check's section.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::de::duration;
use super::error::Invalid;
use super::limits::{dns_name, yes};
use crate::core::url::HttpUrl;

/// The keys of `[kubernetes]` that are the cluster's: the loader takes them out of the table
/// before the `pod` check's section is read from what is left.
pub(super) const CLUSTER_KEYS: [&str; 9] = [
    "api_url",
    "token_file",
    "ca_file",
    "namespace",
    "pod",
    "container",
    "service",
    "metrics_interval",
    "events",
];

/// The least and the most time between two reads of the metrics API: metrics-server refreshes
/// its figures every 15 s by default (`--metric-resolution`, at least 10 s), so reading faster
/// only costs the API server proxied requests.
pub(crate) const METRICS_INTERVAL: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(5)..=Duration::from_secs(3600);

/// The environment variables `[kubernetes]` takes its defaults from, read once at load: the
/// API server's address (every pod has them) and the downward API's pod name and namespace. One
/// that is not UTF-8 counts as unset (`HOSTNAME` is everyone's: it must not refuse a
/// configuration without `[kubernetes]`).
pub const KUBERNETES_ENV: [&str; 5] = [
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "POD_NAMESPACE",
    "POD_NAME",
    "HOSTNAME",
];

/// The service account token's default place (a projected volume mounts it there too).
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The cluster CA's default place.
pub const SERVICE_ACCOUNT_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// `[kubernetes]`: the Kubernetes API, read for the check named `pod` (the gateway container's
/// state and use, the Service's endpoints) and written for Events; these are the cluster's keys
/// (the `pod` check's own thresholds and timing, in the same table, are its section:
/// `checks::pod::config`). Parsed once; a change needs a restart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kubernetes {
    /// The API server. Default `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` (an
    /// IPv6 host bracketed; the port 443 when unset); required when those are not set; an
    /// `https` URL without credentials or a path.
    pub api_url: HttpUrl,
    /// The service account token, read again before every request (projected tokens rotate).
    /// Default `/var/run/secrets/kubernetes.io/serviceaccount/token`; a missing or unreadable
    /// token is a warn of the `pod` check, not a start failure.
    pub token_file: PathBuf,
    /// The cluster CA (PEM) the API server's certificate must chain to, the only one trusted,
    /// read when the check is built. Default
    /// `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`; must hold a certificate.
    pub ca_file: PathBuf,
    /// This pod's namespace. Default `$POD_NAMESPACE`, else the `namespace` file next to
    /// `token_file`; a DNS label (1 to 63 of `a-z 0-9 -`).
    pub namespace: String,
    /// This pod's name. Default `$POD_NAME`, else `$HOSTNAME`; a DNS subdomain (1 to 253 of
    /// `a-z 0-9 - .`).
    pub pod: String,
    /// The gateway container. Default none: the pod's first regular container
    /// (`spec.containers[0]`); a DNS label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The Service whose EndpointSlices are watched (label `kubernetes.io/service-name`).
    /// Default none (no endpoints are watched); a DNS label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The least time between two reads of the metrics API, whatever the `pod` check's
    /// `interval` (a run in between reuses the last answer). Default `15s` (metrics-server's
    /// usual resolution); 5s to 1h.
    #[serde(with = "duration")]
    pub metrics_interval: Duration,
    /// Whether status changes of the checks become Kubernetes Events on this pod. Default true.
    pub events: bool,
}

/// `[kubernetes]` as written (see [`Kubernetes`]'s fields for each key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KubernetesKeys {
    /// [`Kubernetes::api_url`].
    #[serde(default)]
    api_url: Option<HttpUrl>,
    /// [`Kubernetes::token_file`].
    #[serde(default = "default_token_file")]
    token_file: PathBuf,
    /// [`Kubernetes::ca_file`].
    #[serde(default = "default_ca_file")]
    ca_file: PathBuf,
    /// [`Kubernetes::namespace`].
    #[serde(default)]
    namespace: Option<String>,
    /// [`Kubernetes::pod`].
    #[serde(default)]
    pod: Option<String>,
    /// [`Kubernetes::container`].
    #[serde(default)]
    container: Option<String>,
    /// [`Kubernetes::service`].
    #[serde(default)]
    service: Option<String>,
    /// [`Kubernetes::metrics_interval`].
    #[serde(default = "default_metrics_interval", with = "duration")]
    metrics_interval: Duration,
    /// [`Kubernetes::events`].
    #[serde(default = "yes")]
    events: bool,
}

/// What `[kubernetes]` takes from the environment (see [`KUBERNETES_ENV`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct KubernetesEnv {
    service_host: Option<String>,
    service_port: Option<String>,
    pod_namespace: Option<String>,
    pod_name: Option<String>,
    hostname: Option<String>,
}

impl KubernetesEnv {
    pub(crate) fn read(env: &[(String, String)]) -> KubernetesEnv {
        let get = |name: &str| {
            env.iter()
                .find(|(k, v)| k == name && !v.trim().is_empty())
                .map(|(_, v)| v.trim().to_owned())
        };
        KubernetesEnv {
            service_host: get("KUBERNETES_SERVICE_HOST"),
            service_port: get("KUBERNETES_SERVICE_PORT"),
            pod_namespace: get("POD_NAMESPACE"),
            pod_name: get("POD_NAME"),
            hostname: get("HOSTNAME"),
        }
    }

    /// `https://host:port` from the in-cluster variables.
    fn api_url(&self) -> Option<Result<HttpUrl, String>> {
        let host = self.service_host.as_deref()?;
        let port = self.service_port.as_deref().unwrap_or("443");
        let host = match host.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{host}]"),
            Err(_) => host.to_owned(),
        };
        Some(
            HttpUrl::parse(&format!("https://{host}:{port}"))
                .map_err(|e| format!("KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT do not make a URL: {e}")),
        )
    }
}

impl KubernetesKeys {
    /// Fills the defaults from the environment and the service account's files, and validates.
    pub(crate) fn resolve(self, env: &KubernetesEnv) -> Result<Kubernetes, Invalid> {
        let api_url = match (self.api_url, env.api_url()) {
            (Some(url), _) => url,
            (None, Some(url)) => url.map_err(|m| Invalid::new("kubernetes.api_url", m))?,
            (None, None) => {
                return Err(Invalid::new(
                    "kubernetes.api_url",
                    "required outside a pod: set api_url (in a pod, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT give it)",
                ));
            }
        };
        let namespace = match (self.namespace, &env.pod_namespace) {
            (Some(namespace), _) => namespace,
            (None, Some(namespace)) => namespace.clone(),
            (None, None) => {
                let file = self.token_file.with_file_name("namespace");
                crate::core::files::read_text(&file, crate::core::files::SECRET_CAP)
                    .map(|text| text.trim().to_owned())
                    .map_err(|e| {
                        Invalid::new(
                            "kubernetes.namespace",
                            format!(
                                "required: set namespace, or POD_NAMESPACE from the downward API (metadata.namespace); the service account's {} cannot be read: {e}",
                                file.display()
                            ),
                        )
                    })?
            }
        };
        let pod = match (self.pod, &env.pod_name, &env.hostname) {
            (Some(pod), _, _) => pod,
            (None, Some(pod), _) | (None, None, Some(pod)) => pod.clone(),
            (None, None, None) => {
                return Err(Invalid::new(
                    "kubernetes.pod",
                    "required: set pod, or POD_NAME from the downward API (metadata.name)",
                ));
            }
        };
        let kubernetes = Kubernetes {
            api_url,
            token_file: self.token_file,
            ca_file: self.ca_file,
            namespace,
            pod,
            container: self.container,
            service: self.service,
            metrics_interval: self.metrics_interval,
            events: self.events,
        };
        kubernetes.validate()?;
        Ok(kubernetes)
    }
}

impl Kubernetes {
    pub fn validate(&self) -> Result<(), Invalid> {
        let url = self.api_url.uri();
        if url.scheme_str() != Some("https") {
            return Err(Invalid::new(
                "kubernetes.api_url",
                format!(
                    "must be an https:// URL (vigil sends its service account token), got {:?}",
                    self.api_url.as_str()
                ),
            ));
        }
        if url.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(Invalid::new(
                "kubernetes.api_url",
                format!("must name the server only (no path), got {:?}", self.api_url.as_str()),
            ));
        }
        dns_name("kubernetes.namespace", &self.namespace, 63, false)?;
        dns_name("kubernetes.pod", &self.pod, 253, true)?;
        if let Some(container) = &self.container {
            dns_name("kubernetes.container", container, 63, false)?;
        }
        if let Some(service) = &self.service {
            dns_name("kubernetes.service", service, 63, false)?;
        }
        if !METRICS_INTERVAL.contains(&self.metrics_interval) {
            return Err(Invalid::new(
                "kubernetes.metrics_interval",
                format!(
                    "must be between 5s and 1h (metrics-server refreshes every 15s by default), got {}",
                    crate::core::fmt::duration(self.metrics_interval)
                ),
            ));
        }
        Ok(())
    }
}

fn default_metrics_interval() -> Duration {
    Duration::from_secs(15)
}

fn default_token_file() -> PathBuf {
    PathBuf::from(SERVICE_ACCOUNT_TOKEN)
}

fn default_ca_file() -> PathBuf {
    PathBuf::from(SERVICE_ACCOUNT_CA)
}
