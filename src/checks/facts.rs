//! The facts board: figures one part of the agent measures and another part needs.
//!
//! The postgres check's connection budget ("is the runbook's `kubectl scale` safe?") needs the
//! gateway's DB pool max, which the `gateway` check reads from the gateway's `/metrics`, and the
//! replica count, which the fleet resolves from `[fleet] peers` (or, with `[kubernetes] service`,
//! the Service's ready endpoints say). No check calls another and no check waits for another:
//! the gateway check posts what its last scrape read, the fleet posts what its last resolution
//! found, and the postgres check reads the board during its own run. Each posted fact carries how
//! long it stays true, so a fact whose writer was removed by a reload, or stopped reading, is
//! never used stale: it is reported missing, with why.
//!
//! One board per agent, built before the checks and kept across reloads (a rebuilt postgres check
//! reads what an unchanged gateway check keeps posting).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::kube::Cluster;
use crate::kube::objects::EndpointSlice;
use crate::kube::store::Store;

/// The gateway's DB pool, as its last scrape read it (pools summed).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PoolFact {
    /// The pool's maximum size.
    pub max: f64,
    /// Connections the pool holds open now, in use and idle (where the pool metrics carry no
    /// idle count, its in-use figure), so the pools' share at the server is an estimate.
    pub open: f64,
    /// Where the figure comes from, for `/diag`.
    pub from: String,
}

/// How many replicas of the gateway run now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReplicasFact {
    pub count: u64,
    /// Where the figure comes from, for `/diag`.
    pub from: String,
}

/// A posted figure and until when it holds.
#[derive(Debug, Clone)]
struct Stamped<T> {
    value: T,
    until: Instant,
}

#[derive(Debug, Default)]
struct Board {
    pool: Option<Stamped<PoolFact>>,
    /// Why the pool is not known, as its writer said (the gateway exports no pool, …).
    pool_unknown: Option<String>,
    replicas: Option<Stamped<ReplicasFact>>,
    replicas_unknown: Option<String>,
}

/// See the module docs.
#[derive(Default)]
pub struct Facts {
    board: Mutex<Board>,
    /// With `[kubernetes] service`: the Service's EndpointSlices, as the watch keeps them.
    service: Option<(String, Arc<Store<EndpointSlice>>)>,
}

impl std::fmt::Debug for Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Facts")
            .field("board", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl Facts {
    /// The board of one agent; with `[kubernetes] service`, it also counts the Service's ready
    /// endpoints when the fleet has no replica count.
    pub fn new(cluster: Option<&Arc<Cluster>>) -> Facts {
        let service = cluster.and_then(|c| Some((c.config.service.clone()?, Arc::clone(c.slices.as_ref()?))));
        Facts {
            board: Mutex::default(),
            service,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The gateway check's pool, true for `valid_for` (a few of its intervals).
    pub(crate) fn post_pool(&self, fact: PoolFact, valid_for: Duration) {
        let mut board = self.lock();
        board.pool = Some(Stamped {
            value: fact,
            until: Instant::now() + valid_for,
        });
        board.pool_unknown = None;
    }

    /// The gateway check read no usable pool this run: why.
    pub(crate) fn pool_unknown(&self, why: impl Into<String>) {
        let mut board = self.lock();
        board.pool = None;
        board.pool_unknown = Some(why.into());
    }

    /// The fleet's replica count (its peers and itself), true for `valid_for`.
    pub(crate) fn post_replicas(&self, fact: ReplicasFact, valid_for: Duration) {
        let mut board = self.lock();
        board.replicas = Some(Stamped {
            value: fact,
            until: Instant::now() + valid_for,
        });
        board.replicas_unknown = None;
    }

    /// The fleet could not count the replicas: why.
    pub(crate) fn replicas_unknown(&self, why: impl Into<String>) {
        let mut board = self.lock();
        board.replicas = None;
        board.replicas_unknown = Some(why.into());
    }

    /// The gateway's pool, or why it is missing.
    pub(crate) fn pool(&self) -> Result<PoolFact, String> {
        let board = self.lock();
        match (&board.pool, &board.pool_unknown) {
            (Some(fact), _) if Instant::now() < fact.until => Ok(fact.value.clone()),
            (Some(_), _) => Err("the gateway's pool max: the gateway check has not read it lately".to_owned()),
            (None, Some(why)) => Err(format!("the gateway's pool max: {why}")),
            (None, None) => Err(
                "the gateway's pool max: no [gateway] check with metrics_url reads the gateway's pool metrics"
                    .to_owned(),
            ),
        }
    }

    /// The replica count: the fleet's, else the Service's ready endpoints; or why it is missing.
    pub(crate) fn replicas(&self) -> Result<ReplicasFact, String> {
        let fleet_said = {
            let board = self.lock();
            match (&board.replicas, &board.replicas_unknown) {
                (Some(fact), _) if Instant::now() < fact.until => return Ok(fact.value.clone()),
                (Some(_), _) => Some("the fleet has not resolved its peers lately".to_owned()),
                (None, why) => why.clone(),
            }
        };
        if let Some((service, store)) = &self.service {
            let view = store.view();
            if view.listed {
                let ready: BTreeSet<&String> = view
                    .items
                    .iter()
                    .flat_map(|s| &s.endpoints)
                    .filter(|e| e.conditions.is_ready())
                    .filter_map(|e| e.addresses.first())
                    .collect();
                return Ok(ReplicasFact {
                    count: ready.len() as u64,
                    from: format!("the ready endpoints of Service {service}"),
                });
            }
            return Err(format!(
                "the replica count: the EndpointSlices of Service {service} are not listed yet{}",
                fleet_said.map(|w| format!(" ({w})")).unwrap_or_default()
            ));
        }
        Err(match fleet_said {
            Some(why) => format!("the replica count: {why}"),
            None => "the replica count: set [fleet] peers, or [kubernetes] service, to count the replicas".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fact_holds_until_it_expires_and_a_missing_one_says_why() {
        let facts = Facts::default();
        assert!(facts.pool().unwrap_err().contains("no [gateway] check"));
        assert!(facts.replicas().unwrap_err().contains("set [fleet] peers"));
        let pool = PoolFact {
            max: 20.0,
            open: 5.0,
            from: "gateway".to_owned(),
        };
        facts.post_pool(pool.clone(), Duration::from_secs(60));
        assert_eq!(facts.pool(), Ok(pool.clone()));
        facts.post_pool(pool, Duration::ZERO);
        assert!(facts.pool().unwrap_err().contains("not read it lately"));
        facts.pool_unknown("the gateway exports no connection_pool_max");
        assert!(facts.pool().unwrap_err().contains("exports no connection_pool_max"));

        let replicas = ReplicasFact {
            count: 4,
            from: "fleet.peers".to_owned(),
        };
        facts.post_replicas(replicas.clone(), Duration::from_secs(60));
        assert_eq!(facts.replicas(), Ok(replicas));
        facts.replicas_unknown("no peer resolved");
        assert_eq!(facts.replicas().unwrap_err(), "the replica count: no peer resolved");
    }
}
