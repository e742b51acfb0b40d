//! The whole configuration, every kind's section included, as `vigil` loads it.
use std::path::Path;
use std::time::Duration;

use http::Method;

use super::load;
use crate::checks::gateway::config::Gateway;
use crate::checks::jwt::config::Jwt;
use crate::checks::kind::{CheckKind, Typed};
use crate::checks::pod::config::PodKeys;
use crate::checks::postgres::config::Postgres;
use crate::checks::postgres::url::{PostgresTarget, SslMode};
use crate::checks::system::config::System;
use crate::checks::upstream::config::{Upstream, UpstreamUrl};
use crate::checks::{gateway, jwt, pgbouncer, pod, postgres, sockets, system, upstream};
use crate::config::*;
use crate::net::http::HttpVersion;

fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("vigil.toml");
    std::fs::write(&file, toml).expect("written");
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    load(&Sources {
        file: Some(file),
        env,
        not_utf8: Vec::new(),
    })
}

/// A section with its common keys, read as the fields of its own type.
#[derive(Debug)]
struct Sec<T> {
    settings: CheckSettings,
    keys: T,
}

impl<T> std::ops::Deref for Sec<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.keys
    }
}

/// `[kubernetes]` as one table again: the cluster's keys and the `pod` check's.
struct Kube {
    settings: CheckSettings,
    cluster: Kubernetes,
    keys: PodKeys,
}

impl std::ops::Deref for Kube {
    type Target = Kubernetes;
    fn deref(&self) -> &Kubernetes {
        &self.cluster
    }
}

/// The configuration by section, as the tests read it.
struct View {
    postgres: Option<Sec<Postgres>>,
    gateway: Option<Sec<Gateway>>,
    jwt: Option<Sec<Jwt>>,
    system: Option<Sec<System>>,
    upstreams: Vec<Sec<Upstream>>,
    kubernetes: Option<Kube>,
}

fn sections<K: CheckKind>(config: &Config) -> Vec<Sec<K::Section>>
where
    K::Section: Clone,
{
    config
        .enabled_checks()
        .filter(|c| c.table == K::TABLE)
        .filter_map(|c| {
            Some(Sec {
                settings: c.settings,
                keys: c.keys::<Typed<K>>()?.0.clone(),
            })
        })
        .collect()
}

fn view(config: &Config) -> View {
    View {
        postgres: sections::<postgres::Kind>(config).pop(),
        gateway: sections::<gateway::Kind>(config).pop(),
        jwt: sections::<jwt::Kind>(config).pop(),
        system: sections::<system::Kind>(config).pop(),
        upstreams: sections::<upstream::Kind>(config),
        kubernetes: config.kubernetes.clone().and_then(|cluster| {
            let pod = sections::<pod::Kind>(config).pop()?;
            Some(Kube {
                settings: pod.settings,
                cluster,
                keys: pod.keys,
            })
        }),
    }
}

fn error(toml: &str, env: &[(&str, &str)]) -> String {
    load_str(toml, env)
        .expect_err("configuration must be refused")
        .to_string()
}

mod printed;
mod sections;
mod values;
