//! Caps on the upstream HTTP/1.1 connections in use: in total, per
//! endpoint, and per client connection.
//!
//! Every HTTP/1.1 request in flight to an endpoint holds one upstream
//! connection, so without a cap one HTTP/2 client connection with 128
//! streams holds 128 of them, and a few such clients exhaust the
//! gateway's memory and the pods' connection tables. A request takes a
//! slot of each kind before its upstream connection is checked out or
//! made, and gives them back when its response ends (or, for an upgrade,
//! when the tunnel closes). A request over a cap waits for a slot, first
//! come first served (tokio's fair semaphore), at most the queue timeout
//! (the upstream connect timeout); then it is answered 503 with the name
//! of the cap ([`SlotLimit`]).
//!
//! HTTP/2 (h2c, gRPC) upstreams multiplex every request on one connection
//! per endpoint and take no slots.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Which cap a request could not get a slot under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotLimit {
    /// Upstream connections of the whole gateway.
    Total,
    /// Upstream connections to one endpoint.
    Endpoint,
    /// Upstream connections of one client connection.
    ClientConnection,
}

impl fmt::Display for SlotLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Total => "total",
            Self::Endpoint => "endpoint",
            Self::ClientConnection => "client connection",
        })
    }
}

/// The slots a request holds; released when dropped.
#[derive(Debug, Default)]
pub struct Slots {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Slots {
    pub(crate) fn push(&mut self, p: OwnedSemaphorePermit) {
        self.permits.push(p);
    }
}

/// A semaphore of `max` slots; 0 = no cap.
pub(crate) fn semaphore(max: usize) -> Arc<Semaphore> {
    let max = if max == 0 {
        Semaphore::MAX_PERMITS
    } else {
        max.min(Semaphore::MAX_PERMITS)
    };
    Arc::new(Semaphore::new(max))
}

/// Takes a slot of `sem`, waiting until `deadline` at most.
pub(crate) async fn acquire(
    sem: &Arc<Semaphore>,
    deadline: Instant,
    limit: SlotLimit,
) -> Result<OwnedSemaphorePermit, SlotLimit> {
    if let Ok(p) = sem.clone().try_acquire_owned() {
        return Ok(p);
    }
    match tokio::time::timeout_at(deadline, sem.clone().acquire_owned()).await {
        Ok(Ok(p)) => Ok(p),
        // Timed out, or (never) closed.
        _ => Err(limit),
    }
}

/// When a request that starts waiting now must give up.
pub(crate) fn deadline(queue_timeout: Duration) -> Instant {
    Instant::now() + queue_timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_then_gives_up() {
        let sem = semaphore(1);
        let held = acquire(&sem, deadline(Duration::ZERO), SlotLimit::Total)
            .await
            .unwrap();
        let e = acquire(&sem, deadline(Duration::from_secs(1)), SlotLimit::Endpoint).await;
        assert_eq!(e.unwrap_err(), SlotLimit::Endpoint);
        // A slot given back within the wait is taken.
        let sem2 = sem.clone();
        let waiter = tokio::spawn(async move {
            acquire(&sem2, deadline(Duration::from_secs(5)), SlotLimit::Total).await
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
        assert_eq!(semaphore(0).available_permits(), Semaphore::MAX_PERMITS);
    }
}
