//! The registry: every check kind, once, in the order their checks are listed (`/readyz`,
//! `/diag`, `/metrics`). The loader reads the sections through these rows, and `build_all` builds
//! the checks through them. A new kind is a folder under `checks/` and one row here.

use super::kind::{Registered, Row};
use super::{gateway, jwt, pgbouncer, pod, postgres, system, upstream};
use crate::config::{self, Config, ConfigError, SectionKind, Sources};

/// Every check kind.
static ROWS: &[&dyn Row] = &[
    &Registered::<postgres::Kind>::ROW,
    &Registered::<pgbouncer::Kind>::ROW,
    &Registered::<jwt::Kind>::ROW,
    &Registered::<gateway::Kind>::ROW,
    &Registered::<upstream::Kind>::ROW,
    &Registered::<system::Kind>::ROW,
    &Registered::<pod::Kind>::ROW,
];

/// The row that reads `table`.
pub(crate) fn row(table: &str) -> Option<&'static dyn Row> {
    ROWS.iter().copied().find(|row| row.table() == table)
}

/// Loads and validates the configuration, every check kind's section included.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    let kinds: Vec<&dyn SectionKind> = ROWS.iter().map(|row| *row as &dyn SectionKind).collect();
    config::load(sources, &kinds)
}

#[cfg(test)]
mod tests;
