//! The fleet as `/diag` shows it: the peers, why none can be asked, and per shared check what
//! they answered last; built from the fleet's own view and the checks held now.

use std::fmt::Write as _;

use serde::Serialize;

use crate::core::fmt;
use crate::fleet::{Decision, Tally, View};

/// The fleet as `/diag` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// `fleet.peers` as configured.
    pub peers: Vec<String>,
    pub panic_threshold: f64,
    /// Left out of the peers.
    pub own_address: Option<String>,
    pub own_address_from: &'static str,
    /// This process's `Vigil-Instance`: an answer carrying it is this replica's, left out.
    pub instance: String,
    pub resolved_at: Option<String>,
    /// The peers the last resolution found.
    pub known: Vec<String>,
    pub resolution_errors: Vec<String>,
    /// Why no peer can be asked, when none can.
    pub problem: Option<String>,
    /// Runs that asked the peers, and requests sent, since start.
    pub consultations: u64,
    pub peer_requests: u64,
    /// Per shared critical check that asked: the last answers.
    pub checks: Vec<CheckAnswers>,
}

/// The last answers about one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckAnswers {
    pub check: String,
    /// The last decision holds readiness (a panic, or a tentative hold).
    pub panic: bool,
    /// A panic kept one more run to confirm its end.
    pub confirming: bool,
    /// A hold for one run at the start of a failure, asking again.
    pub tentative: bool,
    /// Readiness is held for this check now.
    pub holding: bool,
    /// The `/readyz?verbose` text while holding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    #[serde(flatten)]
    pub tally: Tally,
    pub answering: usize,
    pub at: String,
    pub answers: Vec<PeerAnswer>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerAnswer {
    pub peer: String,
    pub answer: String,
}

impl Snapshot {
    /// The fleet's `view`, with `held` the checks whose readiness is held now.
    pub fn of(view: &View, held: &[String]) -> Snapshot {
        let checks = view
            .decisions
            .iter()
            .map(|(name, d)| answers(name, d, held.contains(name), view.panic_threshold))
            .collect();
        let resolution = &view.resolution;
        Snapshot {
            peers: view.peers.clone(),
            panic_threshold: view.panic_threshold,
            own_address: view.own_address.map(|a| a.to_string()),
            own_address_from: view.own_address_from,
            instance: view.instance.to_owned(),
            resolved_at: resolution.at.map(fmt::timestamp),
            known: resolution.peers.iter().map(ToString::to_string).collect(),
            resolution_errors: resolution.errors.clone(),
            problem: resolution.problem(),
            consultations: view.consultations,
            peer_requests: view.peer_requests,
            checks,
        }
    }
}

fn answers(check: &str, d: &Decision, holding: bool, threshold: f64) -> CheckAnswers {
    use crate::fleet::Hold;
    CheckAnswers {
        check: check.to_owned(),
        panic: d.hold.holds(),
        confirming: d.hold == Hold::Confirming,
        tentative: d.hold == Hold::Tentative,
        holding,
        line: d.line(check, threshold),
        tally: d.tally,
        answering: d.tally.answering(),
        at: fmt::timestamp(d.at_wall),
        answers: d
            .answers
            .iter()
            .map(|(peer, answer)| PeerAnswer {
                peer: peer.to_string(),
                answer: answer.shown(),
            })
            .collect(),
    }
}

/// `[fleet]`: the peers, why none can be asked, and per shared check what they answered last.
pub(super) fn fleet_block(out: &mut String, fleet: &Snapshot) {
    let _ = writeln!(
        out,
        "\nfleet: peers {} ({} known, this replica {} left out, and any answering with Vigil-Instance {}), panic threshold {}",
        fleet.peers.join(", "),
        fleet.known.len(),
        fleet.own_address.as_deref().unwrap_or("unknown (set POD_IP):"),
        fleet.instance,
        fmt::percent(fleet.panic_threshold)
    );
    if let Some(at) = &fleet.resolved_at {
        let _ = writeln!(out, "  resolved at {at}: {}", listed_all(&fleet.known));
    }
    for error in &fleet.resolution_errors {
        let _ = writeln!(out, "  resolution: {error}");
    }
    if let Some(problem) = &fleet.problem {
        let _ = writeln!(out, "  {problem}");
    }
    let _ = writeln!(
        out,
        "  {} consultation(s), {} peer request(s) since start",
        fleet.consultations, fleet.peer_requests
    );
    for check in &fleet.checks {
        let state = match (check.holding, check.panic) {
            (true, _) => "PANIC, readiness held",
            (false, true) => "panic (not holding now)",
            (false, false) => "no panic",
        };
        let _ = writeln!(
            out,
            "  {} at {}: {state}: fails on {} of {} answering replicas, {} passing, {} unknown ({} peers asked)",
            check.check,
            check.at,
            check.tally.fails,
            check.answering,
            check.tally.passes,
            check.tally.unknown,
            check.tally.asked
        );
        for answer in &check.answers {
            let _ = writeln!(out, "    {} {}", answer.peer, answer.answer);
        }
    }
}

fn listed_all(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}
