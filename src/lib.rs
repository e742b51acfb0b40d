//! vigil: a health-probe sidecar for API gateways on Kubernetes.
//!
//! The layers, each importing only from those before it (ARCHITECTURE.md has the code map):
//! [`core`] (the outcome vocabulary, human units, secrets, the one file reader) ← [`metrics`] and
//! [`config`] ← [`net`] (the one network engine) ← [`kube`] (the Kubernetes client) ← [`checks`]
//! (one folder per kind, listed once in the registry) ← [`engine`] (the scheduler, the state,
//! reload) and [`fleet`] ← [`http`] (the endpoints and their rendering) ← [`agent`] ← `main`.
//! Only check tasks do I/O on dependencies; endpoints read the state.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

pub mod agent;
pub mod checks;
pub mod config;
pub mod core;
pub mod engine;
pub(crate) mod fleet;
pub mod http;
pub(crate) mod kube;
pub mod logging;
pub mod metrics;
pub(crate) mod net;
pub mod promtext;

pub use kube::Cluster;
