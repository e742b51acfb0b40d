//! The one HTTP port: probes, metrics and diag.

pub mod diag_token;
pub mod render;
pub mod routes;
pub(crate) mod server;

pub use routes::App;
pub use server::serve;
