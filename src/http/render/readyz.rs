//! The Kubernetes API server's form of readiness: `/readyz?verbose` lines and `/readyz/NAME`.

use std::fmt::Write as _;

use super::WITHHELD;
use super::fleet::Snapshot;
use crate::core::outcome::Status;
use crate::engine::state::{CheckView, Readiness};

/// One `/readyz?verbose` line, e.g. `[+]upstream:orders warn: p95 1.4s over 5m exceeds 1s`.
pub fn check_line(check: &CheckView, excluded: bool, show_reasons: bool) -> String {
    let reason = |r: &str| {
        if show_reasons {
            r.to_owned()
        } else {
            WITHHELD.to_owned()
        }
    };
    match (excluded, check.status) {
        (true, _) => format!("[+]{} excluded: ok", check.name),
        (false, Some(Status::Pass)) => format!("[+]{} ok", check.name),
        (false, Some(Status::Warn)) => format!("[+]{} warn: {}", check.name, reason(&check.reason)),
        (false, Some(Status::Fail) | None) => format!("[-]{} failed: {}", check.name, reason(&check.reason)),
    }
}

/// The verbose `/readyz` body.
pub fn readyz_verbose(
    readiness: &Readiness,
    fleet: Option<&Snapshot>,
    excluded: &[&str],
    show_reasons: bool,
) -> String {
    let mut out = String::with_capacity(64 * (readiness.checks.len() + 2));
    for check in &readiness.checks {
        out.push_str(&check_line(
            check,
            excluded.contains(&check.name.as_str()),
            show_reasons,
        ));
        out.push('\n');
    }
    // [fleet] one line per check whose readiness a fleet-wide failure holds.
    for check in fleet.iter().flat_map(|f| &f.checks) {
        if let Some(line) = check
            .line
            .as_ref()
            .filter(|_| check.holding && !excluded.contains(&check.check.as_str()))
        {
            let _ = writeln!(out, "[+]fleet warn: {line}");
        }
    }
    // Taken out by hand (`vigil drain`): never held, never excluded.
    if let Some(drained) = &readiness.drained {
        let reason = if show_reasons {
            drained.describe()
        } else {
            WITHHELD.to_owned()
        };
        let _ = writeln!(out, "[-]drain failed: {reason}");
    }
    if readiness.draining {
        out.push_str("[-]shutdown failed: draining\n");
    }
    out.push_str(if readiness.ready {
        "readyz check passed\n"
    } else {
        "readyz check failed\n"
    });
    out
}

/// The `/readyz/NAME` body: `ok`, `warn: …` or `failed: …`.
pub fn single_check(check: &CheckView, show_reasons: bool) -> String {
    let reason = if show_reasons { check.reason.as_str() } else { WITHHELD };
    match check.status {
        Some(Status::Pass) => "ok\n".to_owned(),
        Some(Status::Warn) => format!("warn: {reason}\n"),
        Some(Status::Fail) | None => format!("failed: {reason}\n"),
    }
}
