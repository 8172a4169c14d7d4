//! One shutdown signal for every service of a daemon.

use tokio::sync::watch;

/// Sender side: trigger once, every [`Shutdown`] clone sees it.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Receiver side: cheap to clone, `wait()` resolves once shutdown starts.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger + signal pair.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Start shutdown.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolve once shutdown starts (immediately if it has).
    pub async fn wait(&mut self) {
        // An error means every trigger is gone: treat as shutdown.
        let _ = self.0.wait_for(|v| *v).await;
    }

    /// An owned future, handy for `serve_with_shutdown`.
    pub async fn wait_owned(mut self) {
        self.wait().await
    }
}

/// Resolve on SIGINT or SIGTERM.
pub async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The daemons' `main` after config: a multi-threaded runtime running `run`
/// until it returns, with SIGINT/SIGTERM triggering its shutdown signal.
/// Errors are one `NAME: error` line on stderr and exit code 1; blocking
/// work still running at exit is given two seconds.
pub fn run_daemon<F, Fut, E>(name: &str, run: F) -> std::process::ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    run_daemon_with_threads(name, None, run)
}

/// [`run_daemon`] with `threads` runtime worker threads (`None`: tokio's
/// default, one per CPU or `TOKIO_WORKER_THREADS`).
pub fn run_daemon_with_threads<F, Fut, E>(
    name: &str,
    threads: Option<usize>,
    run: F,
) -> std::process::ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads.filter(|n| *n > 0) {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (trigger, shutdown) = channel();
        tokio::spawn(async move {
            os_signal().await;
            trigger.trigger();
        });
        run(shutdown).await
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
