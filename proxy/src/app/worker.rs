//! The kernel worker: one dedicated thread owns the [`Engine`] (every
//! netlink socket and the netfilter runner, all blocking) for the life of
//! the proxy; the async loop sends it jobs over a channel and awaits each
//! answer. Nothing moves the engine in and out of `spawn_blocking`, and a
//! job can never find it missing.

use std::sync::mpsc as std_mpsc;

use tokio::sync::oneshot;

use super::engine::Engine;
use super::errors::RunError;

type Job = Box<dyn FnOnce(&mut Engine) + Send>;

/// A handle on the thread that owns the engine. Dropping it ends the
/// thread once the queued jobs are done.
pub struct EngineWorker {
    jobs: std_mpsc::Sender<Job>,
}

impl EngineWorker {
    /// Starts the thread with `open` (run on it: the engine is created
    /// where it lives), and returns once it is open.
    pub async fn start<E>(
        open: impl FnOnce() -> Result<Engine, E> + Send + 'static,
    ) -> Result<Self, E>
    where
        E: From<RunError> + Send + 'static,
    {
        let (jobs, queue) = std_mpsc::channel::<Job>();
        let (opened_tx, opened) = oneshot::channel();
        std::thread::Builder::new()
            .name("sluice-kernel".into())
            .spawn(move || {
                let mut engine = match open() {
                    Ok(e) => {
                        let _ = opened_tx.send(Ok(()));
                        e
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(&mut engine);
                }
            })
            .map_err(|_| E::from(RunError::WorkerGone))?;
        opened.await.map_err(|_| E::from(RunError::WorkerGone))??;
        Ok(Self { jobs })
    }

    /// Runs `f` with the engine on its thread and returns its answer.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine) -> T + Send + 'static,
    ) -> Result<T, RunError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |engine| {
                let _ = tx.send(f(engine));
            }))
            .map_err(|_| RunError::WorkerGone)?;
        rx.await.map_err(|_| RunError::WorkerGone)
    }
}
