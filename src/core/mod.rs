//! What every part of the agent shares and that imports nothing from the crate: the outcome
//! vocabulary, how a figure is printed for a person, dependency text made one printable line,
//! secrets, the one file reader, and the wake a check rings between runs.

pub(crate) mod files;
pub mod fmt;
pub mod outcome;
pub mod secret;
pub(crate) mod text;
pub(crate) mod url;
pub mod wake;
