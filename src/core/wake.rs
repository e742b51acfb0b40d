//! The wake a check rings between runs.

use std::sync::Arc;

use tokio::sync::Notify;

/// Rung by a check (or a watch feeding it) between runs: "my dependency changed, look again".
/// Rings coalesce; the scheduler spaces the runs they cause (see `engine::scheduler`).
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn new() -> Wake {
        Wake::default()
    }

    pub fn ring(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next ring (or at once for a ring since the last wait).
    pub async fn rung(&self) {
        self.0.notified().await;
    }
}
