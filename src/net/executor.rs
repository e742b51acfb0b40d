//! HTTP/2 on one fresh connection, with every task hyper wants run kept inside the run.
//!
//! hyper's HTTP/2 client does not drive itself: at the handshake it hands the connection's task
//! (the one that reads and writes the socket) to an executor, and one more task per request. The
//! usual executor, `tokio::spawn`, would let those tasks outlive the run that made them: a run
//! cut at its timeout would leave a connection behind, reading, until the server closed it. The
//! agent's rule is that nothing a probe starts outlives its run, so [`RunExecutor`] spawns
//! nothing: it passes each task to the [`in_run`] future that the run itself is awaiting, which
//! polls them beside the request. Dropping the run's future (it finished, or the scheduler cut
//! it) drops those tasks with it, and the socket with them, at once and on the same thread.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

/// A task hyper asked to have run.
type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor given to hyper's HTTP/2 client: it hands every task to the run's [`in_run`].
/// Cheap to clone (hyper keeps a clone in its connection task).
#[derive(Clone)]
pub(crate) struct RunExecutor(mpsc::UnboundedSender<Task>);

impl<F> hyper::rt::Executor<F> for RunExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, task: F) {
        // The receiver is gone only once the run has ended: the task is then dropped unrun,
        // which is what ending the run means.
        let _ = self.0.send(Box::pin(task));
    }
}

/// Runs `work`, given the [`RunExecutor`] to build its HTTP/2 connection with, and polls every
/// task handed to that executor beside it until `work` finishes. The tasks still running then
/// are dropped with this future: nothing is spawned, nothing outlives it.
pub(crate) async fn in_run<W, Fut, T>(work: W) -> T
where
    W: FnOnce(RunExecutor) -> Fut,
    Fut: Future<Output = T>,
{
    let (sender, received) = mpsc::unbounded_channel();
    let work = work(RunExecutor(sender));
    let mut tasks = Tasks {
        received,
        running: FuturesUnordered::new(),
    };
    tokio::select! {
        biased;
        out = work => out,
        never = tasks.drive() => match never {},
    }
}

/// The tasks handed to one run's executor.
struct Tasks {
    received: mpsc::UnboundedReceiver<Task>,
    running: FuturesUnordered<Task>,
}

impl Tasks {
    /// Takes in new tasks and polls the running ones; never finishes (the work it runs beside
    /// decides when the run ends).
    async fn drive(&mut self) -> Infallible {
        loop {
            tokio::select! {
                Some(task) = self.received.recv() => self.running.push(task),
                Some(()) = self.running.next(), if !self.running.is_empty() => {}
                else => std::future::pending::<()>().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Sets its flag when dropped: tells whether a task was dropped with the run.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn tasks_run_beside_the_work_and_end_with_it() {
        use hyper::rt::Executor as _;
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(Arc::clone(&dropped));
        let answer = in_run(|executor| async move {
            let (tell, told) = tokio::sync::oneshot::channel();
            executor.execute(async move {
                let _ = tell.send(42);
            });
            // A task that never ends, as a connection task waiting on a quiet socket.
            executor.execute(async move {
                let _flag = flag;
                std::future::pending::<()>().await;
            });
            told.await.unwrap_or(0)
        })
        .await;
        assert_eq!(answer, 42, "a task handed to the executor ran");
        assert!(
            dropped.load(Ordering::SeqCst),
            "a task still running when the work ended was dropped with it"
        );
    }
}
