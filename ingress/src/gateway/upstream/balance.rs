//! Endpoint choice: power of two choices on in-flight requests, with
//! passive ejection of endpoints that keep refusing connections.
//!
//! * The first candidate is taken round-robin, the second at random; the
//!   one with fewer requests in flight wins, the round-robin one on a tie.
//!   So an idle service is spread evenly (sequential requests visit every
//!   endpoint in turn) and a loaded one avoids its slowest endpoints.
//! * An endpoint with `eject_after_failures` consecutive connect failures
//!   is skipped for `ejection_cooldown`; any success resets its count.
//!   When every endpoint is ejected they are all used again (better a
//!   probably-failing endpoint than a certain 503).
//! * `load-balance: ewma` ([`Pool::pick_ewma`]): two distinct candidates
//!   at random, the one with the lower response-time EWMA times one plus
//!   its requests in flight wins. The EWMA decays towards 0 with a 10 s
//!   time constant, also
//!   while an endpoint gets no traffic, so a slow endpoint is tried again
//!   later (ingress-nginx's `ewma.lua` decay).
//! * Endpoint state is kept per address in a [`Registry`], outside the
//!   routing snapshot, so it survives snapshot swaps.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::h1_pool::IdleConnections;
use crate::gateway::routing::{AppProtocol, EndpointSet};

/// The live state of one endpoint address.
#[derive(Debug)]
pub struct EndpointState {
    addr: SocketAddr,
    /// `addr` as a URI authority, formatted once for every request.
    authority: http::uri::Authority,
    in_flight: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// Milliseconds since the registry's epoch; 0 = not ejected.
    ejected_until: AtomicU64,
    epoch: Instant,
    /// Keep-alive HTTP/1.1 connections to this address.
    idle: IdleConnections,
    /// Slots for HTTP/1.1 connections in use ([`super::slots`]).
    slots: Arc<Semaphore>,
    /// Response-time EWMA (seconds) and when it was last updated.
    ewma: Mutex<(f64, Instant)>,
}

/// The time constant of the response-time EWMA (ingress-nginx's
/// `DECAY_TIME`).
const EWMA_DECAY: Duration = Duration::from_secs(10);

impl EndpointState {
    fn new(addr: SocketAddr, epoch: Instant, max_connections: usize) -> Self {
        Self {
            addr,
            authority: http::uri::Authority::try_from(addr.to_string())
                .expect("a socket address is a valid authority"),
            in_flight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            epoch,
            idle: IdleConnections::default(),
            slots: super::slots::semaphore(max_connections),
            ewma: Mutex::new((0.0, epoch)),
        }
    }

    /// Folds a response time into the EWMA.
    pub fn record_latency(&self, rtt: Duration) {
        let now = Instant::now();
        let mut g = self.ewma.lock().unwrap_or_else(|e| e.into_inner());
        let w = decay(now.saturating_duration_since(g.1));
        *g = (g.0 * w + rtt.as_secs_f64() * (1.0 - w), now);
    }

    /// The EWMA decayed to now, times the requests in flight plus one.
    fn ewma_score(&self) -> f64 {
        let g = self.ewma.lock().unwrap_or_else(|e| e.into_inner());
        let ewma = g.0 * decay(Instant::now().saturating_duration_since(g.1));
        ewma * (self.in_flight() as f64 + 1.0)
    }

    /// The slots for HTTP/1.1 connections in use to this endpoint.
    pub(crate) fn slots(&self) -> &Arc<Semaphore> {
        &self.slots
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as a URI authority (`ip:port`, IPv6 in brackets).
    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// The idle HTTP/1.1 connections to this endpoint.
    pub fn idle_connections(&self) -> &IdleConnections {
        &self.idle
    }

    /// Requests in flight to this endpoint.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether the endpoint is in its ejection cool-down.
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Counts a connect failure; true when it ejected the endpoint. A
    /// zero threshold or cool-down disables ejection.
    pub fn record_connect_failure(&self, threshold: u32, cooldown: Duration) -> bool {
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if threshold > 0 && !cooldown.is_zero() && n >= threshold {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            let until = self.now_ms() + u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
            self.ejected_until.store(until.max(1), Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Counts a success: resets the failure count.
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Marks a request in flight until the guard is dropped.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// The weight an EWMA keeps after `dt`.
fn decay(dt: Duration) -> f64 {
    (-dt.as_secs_f64() / EWMA_DECAY.as_secs_f64()).exp()
}

/// A request in flight on an endpoint.
#[derive(Debug)]
pub struct InFlight(Arc<EndpointState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Endpoint states by address, shared by all snapshots.
#[derive(Debug)]
pub struct Registry {
    states: Mutex<HashMap<SocketAddr, Weak<EndpointState>>>,
    epoch: Instant,
    max_connections_per_endpoint: usize,
}

impl Default for Registry {
    /// A registry whose endpoints have no connection cap.
    fn default() -> Self {
        Self::new(0)
    }
}

impl Registry {
    /// A registry whose endpoints allow `max_connections_per_endpoint`
    /// HTTP/1.1 connections in use each (0 = no cap).
    pub fn new(max_connections_per_endpoint: usize) -> Self {
        Self {
            states: Mutex::default(),
            epoch: Instant::now(),
            max_connections_per_endpoint,
        }
    }

    /// The balancer for an endpoint set, reusing the state of addresses
    /// already known (and forgetting addresses nobody uses any more).
    pub fn pool(&self, set: &EndpointSet) -> Pool {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if states.len() > 64 && states.len() > 2 * set.addrs().len() {
            states.retain(|_, w| w.strong_count() > 0);
        }
        let endpoints = set
            .addrs()
            .iter()
            .map(|&addr| {
                if let Some(s) = states.get(&addr).and_then(Weak::upgrade) {
                    return s;
                }
                let s = Arc::new(EndpointState::new(
                    addr,
                    self.epoch,
                    self.max_connections_per_endpoint,
                ));
                states.insert(addr, Arc::downgrade(&s));
                s
            })
            .collect();
        Pool {
            endpoints,
            protocol: set.protocol(),
            cursor: AtomicUsize::new(0),
        }
    }
}

/// The endpoints of one Service port, ready to pick from.
#[derive(Debug)]
pub struct Pool {
    endpoints: Vec<Arc<EndpointState>>,
    protocol: AppProtocol,
    cursor: AtomicUsize,
}

impl Pool {
    /// The protocol spoken to these endpoints.
    pub fn protocol(&self) -> AppProtocol {
        self.protocol
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[Arc<EndpointState>] {
        &self.endpoints
    }

    /// Whether there is no endpoint.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Picks an endpoint not in `exclude` by the response-time EWMA (see
    /// the module docs), skipping ejected endpoints unless all are.
    pub fn pick_ewma(&self, exclude: &[SocketAddr]) -> Option<Arc<EndpointState>> {
        let candidates = self.candidates(exclude);
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].clone()),
            n => {
                let i = random_below(n);
                let j = (i + 1 + random_below(n - 1)) % n;
                let (a, b) = (candidates[i], candidates[j]);
                Some(if b.ewma_score() < a.ewma_score() {
                    b.clone()
                } else {
                    a.clone()
                })
            }
        }
    }

    /// The endpoints not in `exclude`, the ejected ones left out unless
    /// all are.
    fn candidates(&self, exclude: &[SocketAddr]) -> Vec<&Arc<EndpointState>> {
        let usable = |e: &&Arc<EndpointState>| !exclude.contains(&e.addr);
        let healthy: Vec<&Arc<EndpointState>> = self
            .endpoints
            .iter()
            .filter(usable)
            .filter(|e| !e.is_ejected())
            .collect();
        if healthy.is_empty() {
            self.endpoints.iter().filter(usable).collect()
        } else {
            healthy
        }
    }

    /// Picks an endpoint not in `exclude`: P2C on in-flight requests,
    /// skipping ejected endpoints unless all are ejected.
    pub fn pick(&self, exclude: &[SocketAddr]) -> Option<Arc<EndpointState>> {
        let candidates = self.candidates(exclude);
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].clone()),
            n => {
                let first = candidates[self.cursor.fetch_add(1, Ordering::Relaxed) % n];
                let second = candidates[random_below(n)];
                Some(if second.in_flight() < first.in_flight() {
                    second.clone()
                } else {
                    first.clone()
                })
            }
        }
    }
}

/// A cheap thread-local xorshift in `0..n`.
fn random_below(n: usize) -> usize {
    use std::cell::Cell;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x9e37_79b9_7f4a_7c15);
            h.finish() | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        usize::try_from(x % (n as u64)).unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, 0, 1], 8000 + i)))
            .collect()
    }

    #[test]
    fn idle_pool_visits_every_endpoint() {
        let reg = Registry::default();
        let pool = reg.pool(&EndpointSet::new(addrs(10), AppProtocol::Http1));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10 {
            seen.insert(pool.pick(&[]).unwrap().addr());
        }
        assert_eq!(seen.len(), 10);
    }

    #[test]
    fn prefers_fewer_in_flight() {
        let reg = Registry::default();
        let a = addrs(2);
        let pool = reg.pool(&EndpointSet::new(a.clone(), AppProtocol::Http1));
        let busy = pool.endpoints()[0].clone();
        let _g: Vec<InFlight> = (0..5).map(|_| busy.start()).collect();
        // The idle endpoint wins whenever it is one of the two choices:
        // over many picks the busy one is chosen only when both choices
        // fall on it (round-robin on it and random on it).
        let busy_picks = (0..1000)
            .filter(|_| pool.pick(&[]).unwrap().addr() == a[0])
            .count();
        assert!(busy_picks < 400, "{busy_picks}");
    }

    #[test]
    fn ejection_and_exclusion() {
        let reg = Registry::default();
        let a = addrs(3);
        let pool = reg.pool(&EndpointSet::new(a.clone(), AppProtocol::Http1));
        let bad = pool.endpoints()[1].clone();
        assert!(!bad.record_connect_failure(2, Duration::from_secs(60)));
        assert!(bad.record_connect_failure(2, Duration::from_secs(60)));
        assert!(bad.is_ejected());
        for _ in 0..50 {
            assert_ne!(pool.pick(&[]).unwrap().addr(), a[1]);
        }
        // Only ejected endpoints left: they are used anyway.
        assert_eq!(pool.pick(&[a[0], a[2]]).unwrap().addr(), a[1]);
        assert!(pool.pick(&a).is_none());

        // State survives a new pool for the same addresses.
        let pool2 = reg.pool(&EndpointSet::new(a.clone(), AppProtocol::Http1));
        assert!(pool2.endpoints()[1].is_ejected());
        // Cool-down over.
        assert!(bad.record_connect_failure(1, Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!bad.is_ejected());
    }
}
