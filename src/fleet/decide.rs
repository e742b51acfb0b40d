//! The panic rule, pure: what the peers' answers add up to ([`Tally`]), whether that is a
//! fleet-wide failure ([`decide`]), and how a check's hold moves from one decision to the next
//! ([`Hold::after`]).

use serde::Serialize;

/// What one peer said about one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `200`: the check passes there.
    Passes,
    /// `503`: the check fails there.
    Fails,
    /// Anything else, and why: not counted.
    Unknown(String),
    /// The answer carried this process's own `Vigil-Instance`: this replica, reached by
    /// another address (a dual-stack name, 127.0.0.1, a wildcard `listen`). Left out: not
    /// asked, not counted.
    Itself,
}

impl Answer {
    /// How `/diag` shows it.
    pub fn shown(&self) -> String {
        match self {
            Answer::Passes => "passes".to_owned(),
            Answer::Fails => "fails".to_owned(),
            Answer::Unknown(why) => format!("unknown: {why}"),
            Answer::Itself => "this replica (its own Vigil-Instance), left out".to_owned(),
        }
    }
}

/// The answers counted, this replica included (it fails).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Replicas failing the check: this one and the peers that answered 503.
    pub fails: usize,
    /// Peers that answered 200.
    pub passes: usize,
    /// Peers asked that gave no usable answer.
    pub unknown: usize,
    /// Peers asked.
    pub asked: usize,
}

impl Tally {
    /// This replica (failing) and the peers' answers; an answer from this replica itself is
    /// not a peer's.
    pub fn of(answers: &[Answer]) -> Tally {
        let mut tally = Tally {
            fails: 1,
            ..Tally::default()
        };
        for answer in answers {
            match answer {
                Answer::Passes => tally.passes += 1,
                Answer::Fails => tally.fails += 1,
                Answer::Unknown(_) => tally.unknown += 1,
                Answer::Itself => continue,
            }
            tally.asked += 1;
        }
        tally
    }

    /// Replicas that answered, this one included.
    pub fn answering(&self) -> usize {
        self.fails + self.passes
    }
}

/// The panic rule: at least one peer fails too, and at least `threshold` of the answering
/// replicas (this one included) fail.
pub(crate) fn decide(tally: &Tally, threshold: f64) -> bool {
    let peers_failing = tally.fails.saturating_sub(1);
    // A hair of tolerance: 0.6 × 5 must be 3, not 3.0000000000000004.
    peers_failing >= 1 && tally.fails as f64 + 1e-9 >= threshold * tally.answering() as f64
}

/// Whether, and why, the fleet holds a failing check's readiness after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Not held: the failure is this replica's, or no peer answered.
    None,
    /// Held for one run at the first decision of a failure that starts now, when peers
    /// answered but not enough of them fail: replicas detect a failure milliseconds apart, and
    /// a peer that has not confirmed its own failure yet still answers 200. The next run asks
    /// again, and its decision stands.
    Tentative,
    /// A fleet-wide failure: held.
    Panic,
    /// A panic kept for one more run although this decision alone would end it: leaving a
    /// panic takes two decisions in a row, so that replicas recovering a few milliseconds apart
    /// (the last ones seeing the first ones pass already) do not leave the Service meanwhile.
    Confirming,
}

impl Hold {
    /// The hold after a decision that found a panic (`decided`) or not, given the hold before
    /// it (`None` when the previous decision expired) and whether the failure starts now.
    pub fn after(previous: Hold, decided: bool, was_passing: bool, answering: usize) -> Hold {
        match (decided, previous) {
            (true, _) => Hold::Panic,
            (false, Hold::Panic) => Hold::Confirming,
            (false, _) if was_passing && answering >= 2 => Hold::Tentative,
            (false, _) => Hold::None,
        }
    }

    /// Whether readiness is held.
    pub fn holds(self) -> bool {
        self != Hold::None
    }

    /// Whether this is a panic (what starts and ends one, and `vigil_fleet_panic`).
    pub fn is_panic(self) -> bool {
        matches!(self, Hold::Panic | Hold::Confirming)
    }
}

/// The `/readyz?verbose` line's text while `check` is held: `panic: postgres fails on 5 of 5
/// replicas (threshold 50%), staying in the Service`, or during a tentative hold `pending:
/// postgres fails on 2 of 5 replicas (threshold 50%), asking again next run`. `tally` is the
/// decision's for a tentative hold, the last one that found the panic otherwise.
pub(crate) fn hold_line(hold: Hold, check: &str, tally: &Tally, threshold: f64) -> String {
    let (word, end) = match hold {
        Hold::Tentative => ("pending", "asking again next run"),
        _ => ("panic", "staying in the Service"),
    };
    format!(
        "{word}: {check} fails on {} of {} replicas (threshold {}), {end}",
        tally.fails,
        tally.answering(),
        crate::core::fmt::percent(threshold)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn tally(fails_there: usize, passes: usize, unknown: usize) -> Tally {
        let mut answers = vec![Answer::Fails; fails_there];
        answers.extend(vec![Answer::Passes; passes]);
        answers.extend(vec![Answer::Unknown("timed out after 1s".to_owned()); unknown]);
        Tally::of(&answers)
    }

    #[test]
    fn a_fleet_wide_failure_is_a_panic_and_the_line_says_so() {
        let all = tally(4, 0, 0);
        assert!(decide(&all, 0.5));
        assert_eq!(
            hold_line(Hold::Panic, "postgres", &all, 0.5),
            "panic: postgres fails on 5 of 5 replicas (threshold 50%), staying in the Service"
        );
        assert!(decide(&tally(2, 2, 0), 0.5), "3 of 5 is 60%");
    }

    #[test]
    fn two_of_five_at_half_is_this_replicas_problem() {
        assert!(!decide(&tally(1, 3, 0), 0.5), "2 of 5 is 40% < 50%");
        assert!(decide(&tally(1, 3, 0), 0.4), "at 40% it is the fleet's");
    }

    #[test]
    fn a_failure_here_alone_is_never_a_panic() {
        assert!(!decide(&tally(0, 0, 0), 0.5), "no peer answered");
        assert!(
            !decide(&tally(0, 0, 4), 0.5),
            "peers unknown (slow, refused) are not counted"
        );
        assert!(!decide(&tally(0, 1, 0), 0.5), "1 of 2, the peer passes");
        assert!(!decide(&tally(0, 0, 0), 0.01));
    }

    #[test]
    fn unknown_answers_are_left_out_of_the_share() {
        // 2 failing, 1 passing, 2 slow: 2 of 3 answering.
        let t = tally(1, 1, 2);
        assert_eq!((t.fails, t.answering(), t.unknown, t.asked), (2, 3, 2, 4));
        assert!(decide(&t, 0.5));
        assert!(!decide(&t, 0.7));
    }

    #[test]
    fn an_answer_from_this_replica_itself_is_not_counted() {
        let mut answers = vec![Answer::Fails, Answer::Passes, Answer::Itself, Answer::Itself];
        let t = Tally::of(&answers);
        assert_eq!((t.fails, t.answering(), t.unknown, t.asked), (2, 3, 0, 2));
        answers.truncate(2);
        assert_eq!(Tally::of(&answers), t);
    }

    #[test]
    fn the_threshold_is_inclusive_without_float_noise() {
        assert!(decide(&tally(2, 2, 0), 0.6), "3 of 5 at 60%");
        assert!(decide(&tally(1, 1, 0), 0.5), "exactly half at 50%");
        assert!(!decide(&tally(1, 1, 0), 0.67));
        assert!(decide(&tally(4, 0, 0), 1.0), "every replica at 100%");
        assert!(!decide(&tally(3, 1, 0), 1.0));
    }

    #[test]
    fn holds_move_from_decision_to_decision() {
        assert_eq!(Hold::after(Hold::None, true, false, 5), Hold::Panic);
        assert_eq!(
            Hold::after(Hold::Panic, false, false, 5),
            Hold::Confirming,
            "leaving takes two"
        );
        assert_eq!(Hold::after(Hold::Confirming, false, false, 5), Hold::None);
        assert_eq!(
            Hold::after(Hold::None, false, true, 2),
            Hold::Tentative,
            "a failure starting now"
        );
        assert_eq!(
            Hold::after(Hold::Tentative, false, false, 5),
            Hold::None,
            "the next decision stands"
        );
        assert_eq!(Hold::after(Hold::None, false, true, 1), Hold::None, "no peer answered");
    }
}
