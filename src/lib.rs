//! vigil: a health-probe sidecar for API gateways on Kubernetes.
//!
//! Data flows one way: [`config`] → [`checks`] → [`scheduler`] → [`state`] → [`http`] and
//! [`metrics`]; [`outcome`] (what a run found) and [`fmt`] (how a figure is printed) are leaves
//! every part uses. Only check tasks do I/O on dependencies; endpoints read the state.
#![forbid(unsafe_code)]

pub mod agent;
pub mod checks;
pub mod config;
pub mod dns;
pub mod files;
pub mod fleet;
pub mod fmt;
pub mod http;
pub mod kubernetes;
pub mod logging;
pub mod metrics;
pub mod outcome;
pub mod promtext;
pub mod reload;
pub mod render;
pub mod scheduler;
pub mod secret;
pub mod state;
