//! The thread the check loops run on: one single-threaded runtime, driven by a thread of its
//! own, beside the server's.
//!
//! Why not a multi-threaded runtime with one worker, as before: the checks never needed more
//! than one thread (they wait on the network), and once neither runtime is multi-threaded,
//! tokio's work-stealing scheduler is not in the binary at all. It cost an idle agent in two ways
//! a sidecar notices: with the server's two workers, a wake-up could wake the second one to look
//! for work to steal; and it is the only code in the agent that calls `pow`, which alone kept
//! `libm` loaded, about 0.5 MiB of resident memory (bench/README.md, "Two more cuts").

use std::io;
use std::thread;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The checks' runtime, running until dropped.
pub(crate) struct ChecksThread {
    handle: Handle,
    /// Dropping (or sending) it ends the thread's `block_on`; the thread then drops the runtime,
    /// and with it every task still on it.
    stop: Option<oneshot::Sender<()>>,
}

impl ChecksThread {
    /// Starts the thread. Name lookups (tokio's and tokio-postgres') and file reads run on the
    /// runtime's blocking threads: a lookup cut at its check's timeout keeps its thread until the
    /// resolver gives up, so a slow DNS must not leave the other checks' lookups queued behind a
    /// few threads. Idle blocking threads exit after 10 s.
    pub(crate) fn start() -> io::Result<ChecksThread> {
        let runtime = Builder::new_current_thread()
            .max_blocking_threads(64)
            .thread_name("vigil-checks")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        thread::Builder::new().name("vigil-checks".into()).spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
            // Not waiting for the blocking threads: a name lookup may hold one for seconds.
            runtime.shutdown_background();
        })?;
        Ok(ChecksThread {
            handle,
            stop: Some(stop),
        })
    }

    /// Where to spawn a check's loop.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for ChecksThread {
    /// Returns at once; the tasks are dropped on the checks' thread right after.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Set when dropped: tells whether a task was dropped with the runtime.
    struct DropFlag(Option<std::sync::mpsc::Sender<()>>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            if let Some(tell) = self.0.take() {
                let _ = tell.send(());
            }
        }
    }

    #[test]
    fn tasks_run_on_their_own_thread_and_end_when_it_is_dropped() {
        let checks = ChecksThread::start().expect("the checks' thread starts");
        let (ran, on) = std::sync::mpsc::channel();
        checks.handle().spawn(async move {
            let _ = ran.send(thread::current().name().map(str::to_owned));
        });
        let name = on.recv_timeout(Duration::from_secs(10)).expect("a spawned task ran");
        assert_eq!(name.as_deref(), Some("vigil-checks"), "tasks run on the checks' thread");

        let (tell, told) = std::sync::mpsc::channel();
        let flag = DropFlag(Some(tell));
        checks.handle().spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        drop(checks);
        told.recv_timeout(Duration::from_secs(10))
            .expect("a task still running was dropped with the checks' thread");
    }
}
