//! The controller loop: events → snapshot → (debounced) [`compute()`] →
//! a [`watch`] channel of [`Update`]s that the gateway, the status writer
//! and the event publisher follow.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::gateway::CertStore;

use super::compute::{Computed, ControllerConfig, compute};
use super::snapshot::{Snapshot, SourceEvent};

/// How long the loop waits for more events before recomputing.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// The longest a burst of events can delay a recompute.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// One recomputed state: the objects and what was computed from them.
#[derive(Debug, Clone)]
pub struct Update {
    /// The objects.
    pub snapshot: Snapshot,
    /// The routing and reports.
    pub computed: Computed,
    /// Counts updates, from 1.
    pub generation: u64,
}

/// Applies events from `rx` and publishes an [`Update`] on `tx` after each
/// quiet period of `debounce`, once every kind has been listed. Returns when
/// `rx` closes.
pub async fn run(
    config: ControllerConfig,
    mut rx: mpsc::Receiver<SourceEvent>,
    tx: watch::Sender<Option<Arc<Update>>>,
    debounce: Duration,
) {
    let mut snapshot = Snapshot::new();
    let mut certs = CertStore::new();
    let mut generation = 0;
    while let Some(ev) = rx.recv().await {
        snapshot.apply(ev);
        let deadline = tokio::time::Instant::now() + MAX_DELAY;
        loop {
            let wait =
                debounce.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(ev)) => snapshot.apply(ev),
                Ok(None) => return,
                Err(_) => break,
            }
        }
        if !snapshot.is_synced() {
            continue;
        }
        let computed = compute(&config, &snapshot, &certs);
        certs = computed.routing.certs.as_ref().clone();
        generation += 1;
        tracing::debug!(
            generation,
            routes = computed.routing.table.len(),
            ours = computed.ours.len(),
            "recomputed routing"
        );
        tx.send_replace(Some(Arc::new(Update {
            snapshot: snapshot.clone(),
            computed,
            generation,
        })));
    }
}
