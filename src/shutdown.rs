//! Stopping: the signal future, and the supervisor that runs every task of the process.
//!
//! One [`CancellationToken`] stops the process; a child token stops only the source, so the
//! stages after it end when their input ends and the sinks flush (spec section 1). Every task
//! is spawned through a [`Supervisor`]: a critical task that ends before shutdown was asked for
//! is logged by name and stops the process with a failure. A panic in any supervised task
//! (critical or not: the pipeline stages, the sinks, the publisher, persistence) is caught,
//! logged with the task's name and the panic message, and stops the process with a failure
//! too, so a bug never leaves a half-dead gateway that answers `/health` but moves nothing.

use std::{
    future::Future,
    sync::{Arc, Mutex},
};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Installs the SIGINT and SIGTERM handlers now and returns a future that resolves on either.
///
/// Installing eagerly (before the app is built) matters: until a handler exists, SIGTERM's
/// default action kills the process, so a stop requested during startup would not be clean.
#[cfg(unix)]
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (mut term, mut int) = match (term, int) {
            (Ok(term), Ok(int)) => (term, int),
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "Cannot listen for SIGINT/SIGTERM.");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = int.recv() => tracing::info!(signal = "SIGINT", "Shutdown requested."),
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "Shutdown requested."),
        }
    }
}

/// Resolves on Ctrl-C (non-Unix platforms).
#[cfg(not(unix))]
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!(signal = "SIGINT", "Shutdown requested.");
    }
}

/// Runs and watches every task of the process.
#[derive(Debug, Clone)]
pub struct Supervisor {
    /// Cancelled to stop the whole process (signal, or a critical task died).
    pub shutdown: CancellationToken,
    /// Every spawned task, so a stop can wait for all of them.
    pub tracker: TaskTracker,
    /// Names of critical tasks that died early; non-empty means exit non-zero.
    failures: Arc<Mutex<Vec<String>>>,
    /// Names of tasks still running, to report the unfinished ones on a slow stop.
    running: Arc<Mutex<Vec<String>>>,
    /// A configuration fault found after startup (exit code 2).
    config_fault: Arc<Mutex<Option<String>>>,
}

/// A configuration fault that shows only once the gateway talks to a service (a RabbitMQ queue
/// declared with other arguments): stops the process, which exits with code 2 as for a bad
/// setting at startup.
#[derive(Debug, Clone)]
pub struct ConfigFault {
    slot: Arc<Mutex<Option<String>>>,
    shutdown: CancellationToken,
}

impl ConfigFault {
    /// Records the fault (the first one is kept) and stops the process. The caller has logged
    /// it (one ERROR line).
    pub fn raise(&self, message: String) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(message);
        }
        self.shutdown.cancel();
    }
}

/// The error `App::run` returns after a [`ConfigFault`]; `main` maps it to exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigFailure(pub String);

impl Supervisor {
    /// A supervisor whose tasks stop when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            tracker: TaskTracker::new(),
            failures: Arc::default(),
            running: Arc::default(),
            config_fault: Arc::default(),
        }
    }

    /// A handle that stops the process as a configuration error (exit code 2).
    pub fn config_fault(&self) -> ConfigFault {
        ConfigFault {
            slot: self.config_fault.clone(),
            shutdown: self.shutdown.clone(),
        }
    }

    /// The configuration fault raised, if any.
    pub fn config_error(&self) -> Option<String> {
        self.config_fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Spawns a task that is expected to run until shutdown. If it returns (or errors) while the
    /// process is not stopping, that is logged with its name and the process is stopped.
    pub fn spawn_critical<F, E>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let this = self.clone();
        self.track(name, async move {
            let result = fut.await;
            if this.shutdown.is_cancelled() {
                if let Err(error) = result {
                    tracing::warn!(task = name, %error, "Task ended with an error during shutdown.");
                }
                return;
            }
            match result {
                Ok(()) => tracing::error!(task = name, "Critical task ended unexpectedly; stopping."),
                Err(error) => tracing::error!(task = name, %error, "Critical task failed; stopping."),
            }
            this.failures.lock().unwrap_or_else(|e| e.into_inner()).push(name.to_owned());
            this.shutdown.cancel();
        });
    }

    /// Spawns a task whose end is not a fault (a per-client task, a one-off job).
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.track(name, fut);
    }

    fn track<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        use futures::FutureExt;
        let running = self.running.clone();
        running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_owned());
        let this = self.clone();
        self.tracker.spawn(async move {
            if let Err(payload) = std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                let panic = panic_message(payload.as_ref());
                tracing::error!(task = name, %panic, "Task panicked; stopping.");
                this.failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(name.to_owned());
                this.shutdown.cancel();
            }
            let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = r.iter().position(|n| n == name) {
                r.swap_remove(i);
            }
        });
    }

    /// Critical tasks that died early.
    pub fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tasks still running (for the slow-stop report).
    pub fn unfinished(&self) -> Vec<String> {
        let mut r = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        r.sort();
        r.dedup();
        r
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_named_and_stops_the_process() {
        for critical in [true, false] {
            let sup = Supervisor::new(CancellationToken::new());
            if critical {
                sup.spawn_critical("publish", async {
                    if true {
                        panic!("test-only panic");
                    }
                    Ok::<(), String>(())
                });
            } else {
                sup.spawn("persistence-writer", async { panic!("test-only panic") });
            }
            tokio::time::timeout(std::time::Duration::from_secs(5), sup.shutdown.cancelled())
                .await
                .expect("a panic stops the process");
            sup.tracker.close();
            sup.tracker.wait().await;
            let name = if critical {
                "publish"
            } else {
                "persistence-writer"
            };
            assert_eq!(sup.failures(), vec![name.to_owned()]);
            assert!(sup.unfinished().is_empty());
        }
    }

    #[tokio::test]
    async fn a_critical_task_that_dies_early_is_named_and_stops_the_process() {
        let sup = Supervisor::new(CancellationToken::new());
        sup.spawn_critical("doomed", async { Err::<(), _>("socket gone") });
        sup.spawn_critical("steady", {
            let stop = sup.shutdown.clone();
            async move {
                stop.cancelled().await;
                Ok::<(), String>(())
            }
        });

        tokio::time::timeout(std::time::Duration::from_secs(5), sup.shutdown.cancelled())
            .await
            .expect("the death stops the process");
        sup.tracker.close();
        sup.tracker.wait().await;

        assert_eq!(sup.failures(), vec!["doomed".to_owned()]);
        assert!(sup.unfinished().is_empty());
    }
}
