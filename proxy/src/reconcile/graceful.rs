//! Bounded graceful termination of real servers.
//!
//! kube-proxy gives a removed TCP real server weight 0 and retries deleting
//! it every minute with no upper bound (kubernetes#57841, #99162). Here a
//! draining real server is deleted as soon as it has no connections, or when
//! its bound expires, whichever comes first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ipvs_sys::ServiceKey;

/// Real servers that are draining, with the time they must be gone by.
#[derive(Debug, Default, Clone)]
pub struct DrainQueue {
    deadlines: BTreeMap<(ServiceKey, SocketAddr), Instant>,
}

impl DrainQueue {
    /// Starts draining a real server (keeps the earlier deadline if it is
    /// already draining).
    pub fn start(&mut self, key: ServiceKey, addr: SocketAddr, now: Instant, bound: Duration) {
        self.deadlines.entry((key, addr)).or_insert(now + bound);
    }

    /// Stops draining (the endpoint came back, or it was deleted).
    pub fn cancel(&mut self, key: &ServiceKey, addr: &SocketAddr) {
        self.deadlines.remove(&(*key, *addr));
    }

    /// Whether this real server is draining.
    pub fn contains(&self, key: &ServiceKey, addr: &SocketAddr) -> bool {
        self.deadlines.contains_key(&(*key, *addr))
    }

    /// Whether the bound of a draining real server has passed.
    pub fn expired(&self, key: &ServiceKey, addr: &SocketAddr, now: Instant) -> bool {
        self.deadlines
            .get(&(*key, *addr))
            .is_some_and(|d| *d <= now)
    }

    /// Every draining real server.
    pub fn entries(&self) -> impl Iterator<Item = (ServiceKey, SocketAddr)> + '_ {
        self.deadlines.keys().copied()
    }

    /// Number of draining real servers.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether nothing is draining.
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }

    /// Forgets every entry of a virtual server (it was deleted).
    pub fn forget_service(&mut self, key: &ServiceKey) {
        self.deadlines.retain(|(k, _), _| k != key);
    }
}
