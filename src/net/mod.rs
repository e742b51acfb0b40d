//! The one network engine under every check, the fleet and the Kubernetes client: name
//! resolution ([`dns`]), connecting Happy Eyeballs style ([`connect`]), TLS with the certificate
//! recorder ([`tls`]) and our client certificate for mutual TLS ([`client_cert`]), HTTP/1.1 and HTTP/2 with capped bodies, a line stream and kept-alive
//! connections ([`http`]), the executor that runs HTTP/2's tasks inside a run ([`executor`]), and
//! gRPC's framing and health protocol ([`grpc`]).

pub(crate) mod attempt;
pub(crate) mod cert_time;
pub(crate) mod client_cert;
pub(crate) mod connect;
pub(crate) mod dns;
pub(crate) mod executor;
pub(crate) mod grpc;
pub(crate) mod grpc_probe;
pub(crate) mod http;
pub(crate) mod kept;
pub(crate) mod socket;
pub(crate) mod tls;
