//! The connection budget across replicas: is the runbook's `kubectl scale` (or a larger
//! `DB_POOL_SIZE`) safe? With the gateway's pool max and the replica count known (the facts
//! board: the gateway check's scrape, the fleet's peers or the Service's ready endpoints), the
//! most replicas whose pools fit in the server's usable connections beside the other clients'.
//!
//! Other clients: every client backend that is neither vigil's (`application_name = vigil`, any
//! replica's) nor a gateway pool's, the pools' connections estimated as replicas × this
//! replica's open pool connections. Nothing is guessed: an input that is missing is said in
//! `/diag`, and no budget is given.

use serde_json::{Value as Json, json};

use super::queries::Stats;
use crate::checks::facts::Facts;
use crate::core::outcome::{FailureKind, Finding};

const BUDGET_HINT: &str = "before kubectl scale or a larger DB_POOL_SIZE: replicas × pool max + the other clients must \
     stay within the usable connections; lower the pool max, put PgBouncer in front of the database, or raise \
     max_connections (a restart of the database); the inputs are in /diag (postgres, budget)";

/// What the budget found.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Budget {
    pub replicas: u64,
    pub pool_max: u64,
    pub others: i64,
    pub usable: i64,
    /// The most replicas whose pools fit beside the others.
    pub fit: u64,
}

impl Budget {
    /// What the replicas running now would hold with full pools, the others included.
    pub(super) fn at_full_load(&self) -> i64 {
        (self.replicas * self.pool_max) as i64 + self.others
    }

    /// The warning when the replicas running now could exhaust the usable connections.
    pub(super) fn finding(&self) -> Option<Finding> {
        let total = self.at_full_load();
        (total > self.usable).then(|| {
            Finding::warn(
                FailureKind::Threshold,
                format!(
                    "{} replicas x pool max {} + {} other connections = {total} > {} usable: at full load the \
                     database refuses clients; at most {} {} fit",
                    self.replicas,
                    self.pool_max,
                    self.others,
                    self.usable,
                    self.fit,
                    if self.fit == 1 { "replica" } else { "replicas" }
                ),
            )
            .with_hint(BUDGET_HINT)
        })
    }
}

/// The budget from the server's figures and the board, and `/diag`'s account of it: the
/// inputs used, where each came from, and those missing.
pub(super) fn assess(s: &Stats, facts: &Facts) -> (Option<Budget>, Json) {
    let pool = facts.pool();
    let replicas = facts.replicas();
    let mut missing = Vec::new();
    let mut inputs = serde_json::Map::new();
    inputs.insert("usable_connections".to_owned(), json!(s.usable()));
    inputs.insert("connections_in_use".to_owned(), json!(s.connections_in_use));
    inputs.insert("vigil_connections".to_owned(), json!(s.why.vigil_connections));
    match &pool {
        Ok(p) => {
            inputs.insert(
                "pool".to_owned(),
                json!({"max": p.max, "open_here": p.open, "from": p.from}),
            );
        }
        Err(why) => missing.push(why.clone()),
    }
    match &replicas {
        Ok(r) => {
            inputs.insert("replicas".to_owned(), json!({"count": r.count, "from": r.from}));
        }
        Err(why) => missing.push(why.clone()),
    }
    let budget = match (pool, replicas) {
        (Ok(pool), Ok(replicas)) if pool.max >= 1.0 => {
            let pool_max = pool.max.round() as u64;
            let pools_now = (replicas.count as f64 * pool.open).round() as i64;
            let others = (s.connections_in_use - s.why.vigil_connections - pools_now).max(0);
            let room = (s.usable() - others).max(0) as u64;
            Some(Budget {
                replicas: replicas.count,
                pool_max,
                others,
                usable: s.usable(),
                fit: room / pool_max,
            })
        }
        _ => None,
    };
    let shown = match &budget {
        Some(b) => json!({
            "inputs": inputs,
            "missing": [],
            "other_connections": b.others,
            "at_full_load": b.at_full_load(),
            "replicas_that_fit": b.fit,
            "rule": "replicas x pool max + other connections <= usable; other = in use - vigil's - replicas x this replica's open pool connections",
        }),
        None => json!({
            "inputs": inputs,
            "missing": missing,
            "note": "no budget without both the gateway's pool max and the replica count: nothing is guessed",
        }),
    };
    (budget, shown)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::queries::Why;
    use super::*;
    use crate::checks::facts::{PoolFact, ReplicasFact};

    fn stats(in_use: i64, vigil: i64) -> Stats {
        Stats {
            max_connections: 100,
            superuser_reserved_connections: 3,
            reserved_connections: 0,
            in_recovery: false,
            server_version: "16".to_owned(),
            backend_pid: 1,
            connections_in_use: in_use,
            by_state: Json::Null,
            top_applications: Json::Null,
            long_queries: 0,
            longest_queries: Json::Null,
            why: Why {
                vigil_connections: vigil,
                ..Why::default()
            },
        }
    }

    #[test]
    fn the_spec_example_warns_and_says_how_many_fit() {
        let facts = Facts::default();
        let (none, shown) = assess(&stats(47, 2), &facts);
        assert_eq!(none, None);
        assert_eq!(shown["missing"].as_array().map(Vec::len), Some(2), "{shown}");
        facts.post_pool(
            PoolFact {
                max: 20.0,
                open: 5.0,
                from: "gateway".to_owned(),
            },
            Duration::from_secs(60),
        );
        facts.post_replicas(
            ReplicasFact {
                count: 4,
                from: "fleet".to_owned(),
            },
            Duration::from_secs(60),
        );
        // 20 pool connections (4 x 5), vigil's 2, 25 others.
        let (budget, _) = assess(&stats(47, 2), &facts);
        let budget = budget.unwrap();
        assert_eq!(
            budget.finding().unwrap().reason,
            "4 replicas x pool max 20 + 25 other connections = 105 > 97 usable: at full load the database refuses \
             clients; at most 3 replicas fit"
        );
        let (budget, _) = assess(&stats(22, 2), &facts);
        let budget = budget.unwrap();
        assert_eq!((budget.fit, budget.finding()), (4, None));
    }
}
