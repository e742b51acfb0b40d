//! What runs the checks and keeps what they found: the scheduler (the only place that decides
//! when a check runs), the state (a store of results with one hysteresis rule and one readiness
//! rule), the observers of status changes, reload, and the drain by hand (`vigil drain`).

pub mod drain;
pub(crate) mod observe;
pub mod reload;
pub mod scheduler;
pub mod state;
