//! Per-client request and connection limits: ingress-nginx's `limit-rps`,
//! `limit-rpm`, `limit-connections`, `limit-burst-multiplier` and
//! `limit-allowlist`, with nginx's semantics.
//!
//! ingress-nginx gives every Ingress its own zones (`<ns>_<name>_rps`,
//! `_rpm`, `_conn`), keyed by the client address, and configures
//!
//! ```text
//! limit_req  zone=<ns>_<name>_rps burst=<rps × multiplier> nodelay;
//! limit_req  zone=<ns>_<name>_rpm burst=<rpm × multiplier> nodelay;
//! limit_conn <ns>_<name>_conn <connections>;
//! ```
//!
//! so the limits are shared by every path of the Ingress and reach across
//! hot reloads: a zone here is found by the Ingress and its numbers, and
//! the same Ingress with the same numbers in the next snapshot keeps its
//! counters.
//!
//! * **Requests** ([`admit`]): nginx's leaky bucket in thousandths of a
//!   request. A client's `excess` leaks at the rate; each request adds one
//!   request; above `burst` the request is refused (and not counted).
//!   With `nodelay`, an admitted request is never delayed: a fresh client
//!   gets `1 + burst` requests at once, then the rate. Every zone of the
//!   route must admit a request before any counts it (nginx accounts
//!   multiple `limit_req`s only when all pass).
//! * **Connections**: nginx's `limit_conn` counts the requests being
//!   processed per client (over HTTP/2 each stream is one), so a
//!   [`ConnSlot`] lives as long as the response.
//! * **Exempt** addresses (`limit-allowlist`) skip every limit, as
//!   ingress-nginx's `geo` map gives them an empty key.
//!
//! Memory per zone is bounded: a client whose bucket has leaked empty is
//! the same as an unknown one and is dropped at the next sweep (a sweep
//! runs when the table doubles since the last one); past
//! [`MAX_CLIENTS_PER_ZONE`] live clients an arbitrary one is evicted, as
//! nginx evicts from a full zone (it evicts the least recently used). A
//! connection entry goes when its last request ends. Idle zones go when
//! the zone table doubles.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use crate::annotations::limits::RateLimit;
use crate::routes::IngressRef;

/// At most this many clients are tracked per request zone (nginx's
/// ingress-nginx zones are 5 MB, about 80,000 states).
pub const MAX_CLIENTS_PER_ZONE: usize = 65_536;

/// Sweeps start once a table holds this many entries.
const MIN_SWEEP: usize = 1024;

/// One thousandth of a request, nginx's unit of `excess`.
const MILLI: u64 = 1000;

/// The leaky-bucket state of one client in a request zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Requests above the rate, in thousandths.
    pub excess: u64,
    /// When `excess` was last leaked.
    pub last: Instant,
}

/// A request zone's numbers: the rate in thousandths of a request per
/// second and the burst in thousandths of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestRate {
    /// Leak rate, thousandths of a request per second.
    pub milli_per_sec: u64,
    /// The most `excess` admitted, in thousandths.
    pub burst: u64,
}

impl RequestRate {
    /// `limit-rps: rps` with its multiplier.
    pub fn per_second(rps: u32, multiplier: u32) -> Self {
        Self {
            milli_per_sec: u64::from(rps) * MILLI,
            burst: u64::from(rps) * u64::from(multiplier) * MILLI,
        }
    }

    /// `limit-rpm: rpm` with its multiplier (nginx's `r/m`: the rate in
    /// thousandths per second is `rpm × 1000 / 60`).
    pub fn per_minute(rpm: u32, multiplier: u32) -> Self {
        Self {
            milli_per_sec: u64::from(rpm) * MILLI / 60,
            burst: u64::from(rpm) * u64::from(multiplier) * MILLI,
        }
    }

    /// The `excess` of `b` leaked until `now` (nginx counts whole
    /// milliseconds).
    fn leaked(&self, b: &Bucket, now: Instant) -> (u64, u64) {
        let ms = now.saturating_duration_since(b.last).as_millis() as u64;
        let leak = self.milli_per_sec.saturating_mul(ms) / 1000;
        (b.excess.saturating_sub(leak), ms)
    }
}

/// nginx's `ngx_http_limit_req_lookup` for one client: the bucket after an
/// admitted request, or `None` when the request is over the burst (the
/// bucket is then left as it was). A client without a bucket is admitted
/// with an empty one.
pub fn admit(rate: &RequestRate, bucket: Option<&Bucket>, now: Instant) -> Option<Bucket> {
    let Some(b) = bucket else {
        return Some(Bucket {
            excess: 0,
            last: now,
        });
    };
    let (left, ms) = rate.leaked(b, now);
    let excess = left + MILLI;
    if excess > rate.burst {
        return None;
    }
    Some(Bucket {
        excess,
        // nginx moves `last` only when a whole millisecond went by, so
        // leaks shorter than a millisecond are not lost.
        last: if ms > 0 { now } else { b.last },
    })
}

/// Clients of one request zone.
#[derive(Debug)]
struct RequestZone {
    rate: RequestRate,
    clients: Mutex<Clients<Bucket>>,
}

/// Clients of one connection zone: requests in progress per client.
#[derive(Debug)]
struct ConnZone {
    limit: u32,
    clients: Mutex<HashMap<IpAddr, u32>>,
}

/// A client table that sweeps itself.
#[derive(Debug)]
struct Clients<V> {
    map: HashMap<IpAddr, V>,
    sweep_at: usize,
    /// Evictions left before the next sweep at the cap.
    evictions: usize,
}

impl<V> Default for Clients<V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            sweep_at: MIN_SWEEP,
            evictions: 0,
        }
    }
}

impl RequestZone {
    /// Room for `client`: drained buckets swept when the table doubled
    /// since the last sweep; at the cap an arbitrary bucket is evicted,
    /// with a sweep every `MAX_CLIENTS_PER_ZONE / 4` evictions (so a flood
    /// of new clients costs amortized O(1) per request).
    fn make_room(&self, clients: &mut Clients<Bucket>, client: IpAddr, now: Instant) {
        if clients.map.contains_key(&client) || clients.map.len() < clients.sweep_at {
            return;
        }
        if clients.map.len() < MAX_CLIENTS_PER_ZONE || clients.evictions == 0 {
            clients.map.retain(|_, b| self.rate.leaked(b, now).0 > 0);
            clients.sweep_at = (clients.map.len() * 2).clamp(MIN_SWEEP, MAX_CLIENTS_PER_ZONE);
            clients.evictions = MAX_CLIENTS_PER_ZONE / 4;
        }
        if clients.map.len() >= MAX_CLIENTS_PER_ZONE {
            clients.evictions -= 1;
            if let Some(k) = clients.map.keys().next().copied() {
                clients.map.remove(&k);
            }
        }
    }

    fn is_idle(&self, now: Instant) -> bool {
        lock(&self.clients)
            .map
            .values()
            .all(|b| self.rate.leaked(b, now).0 == 0)
    }
}

/// A request counted against a connection zone; dropping it (when the
/// response ends) releases the count.
#[derive(Debug)]
pub struct ConnSlot {
    zone: Arc<ConnZone>,
    client: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut clients = lock(&self.zone.clients);
        if let Some(n) = clients.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                clients.remove(&self.client);
            }
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// Over `limit-rps` or `limit-rpm`: answer with this status
    /// (`limit-req-status-code`).
    Requests(u16),
    /// Over `limit-connections`: answer with this status
    /// (`limit-conn-status-code`).
    Connections(u16),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ZoneKind {
    Requests(RequestRate),
    Connections(u32),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ZoneKey {
    ingress: IngressRef,
    kind: ZoneKind,
}

#[derive(Debug, Clone)]
enum Zone {
    Requests(Arc<RequestZone>),
    Connections(Arc<ConnZone>),
}

/// Every Ingress's limit zones, shared by all connections and snapshots.
#[derive(Debug, Default)]
pub struct RateLimits {
    zones: Mutex<ZoneTable>,
}

#[derive(Debug, Default)]
struct ZoneTable {
    map: HashMap<ZoneKey, Zone>,
    sweep_at: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves counters, never a broken
    // invariant worth refusing every later request for.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RateLimits {
    /// Applies the Ingress's `limit` to a request of `client`: `Ok` with
    /// the connection slot to hold until the response ends (when
    /// `limit-connections` is set), or the refusal.
    pub fn check(
        &self,
        ingress: &IngressRef,
        limit: &RateLimit,
        client: IpAddr,
    ) -> Result<Option<ConnSlot>, Over> {
        if !limit.is_active() || limit.exempt.as_ref().is_some_and(|e| e.contains(client)) {
            return Ok(None);
        }
        let now = Instant::now();
        let multiplier = limit.burst_multiplier;
        let rates = [
            limit
                .rps
                .map(|r| RequestRate::per_second(r.get(), multiplier)),
            limit
                .rpm
                .map(|r| RequestRate::per_minute(r.get(), multiplier)),
        ];
        let zones: Vec<Arc<RequestZone>> = rates
            .into_iter()
            .flatten()
            .filter_map(|r| match self.zone(ingress, ZoneKind::Requests(r), now) {
                Zone::Requests(z) => Some(z),
                Zone::Connections(_) => None,
            })
            .collect();
        self.take_requests(&zones, client, now)
            .map_err(|()| Over::Requests(limit.req_status))?;
        let Some(max) = limit.connections else {
            return Ok(None);
        };
        let Zone::Connections(zone) = self.zone(ingress, ZoneKind::Connections(max.get()), now)
        else {
            return Ok(None);
        };
        {
            let mut clients = lock(&zone.clients);
            let n = clients.entry(client).or_insert(0);
            if *n >= zone.limit {
                if *n == 0 {
                    clients.remove(&client);
                }
                return Err(Over::Connections(limit.conn_status));
            }
            *n += 1;
        }
        Ok(Some(ConnSlot { zone, client }))
    }

    /// Admits one request of `client` in every zone, or in none.
    fn take_requests(
        &self,
        zones: &[Arc<RequestZone>],
        client: IpAddr,
        now: Instant,
    ) -> Result<(), ()> {
        let mut guards: Vec<_> = zones.iter().map(|z| lock(&z.clients)).collect();
        let mut next = Vec::with_capacity(zones.len());
        for (zone, clients) in zones.iter().zip(&guards) {
            next.push(admit(&zone.rate, clients.map.get(&client), now).ok_or(())?);
        }
        for ((zone, clients), bucket) in zones.iter().zip(guards.iter_mut()).zip(next) {
            zone.make_room(clients, client, now);
            clients.map.insert(client, bucket);
        }
        Ok(())
    }

    /// The zone of `key`, made on first use; idle zones of other Ingresses
    /// are dropped when the table doubled.
    fn zone(&self, ingress: &IngressRef, kind: ZoneKind, now: Instant) -> Zone {
        let key = ZoneKey {
            ingress: ingress.clone(),
            kind,
        };
        let mut zones = lock(&self.zones);
        if let Some(z) = zones.map.get(&key) {
            return z.clone();
        }
        if zones.map.len() >= zones.sweep_at.max(64) {
            zones.map.retain(|_, z| match z {
                Zone::Requests(r) => Arc::strong_count(r) > 1 || !r.is_idle(now),
                Zone::Connections(c) => Arc::strong_count(c) > 1 || !lock(&c.clients).is_empty(),
            });
            zones.sweep_at = zones.map.len() * 2;
        }
        let zone = match key.kind {
            ZoneKind::Requests(rate) => Zone::Requests(Arc::new(RequestZone {
                rate,
                clients: Mutex::new(Clients::default()),
            })),
            ZoneKind::Connections(limit) => Zone::Connections(Arc::new(ConnZone {
                limit,
                clients: Mutex::new(HashMap::new()),
            })),
        };
        zones.map.insert(key, zone.clone());
        zone
    }

    /// How many clients the zones track in all (for tests of the bound).
    pub fn tracked_clients(&self) -> usize {
        lock(&self.zones)
            .map
            .values()
            .map(|z| match z {
                Zone::Requests(r) => lock(&r.clients).map.len(),
                Zone::Connections(c) => lock(&c.clients).len(),
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;
    use std::time::Duration;

    fn ing() -> IngressRef {
        IngressRef {
            namespace: "demo".into(),
            name: "app".into(),
        }
    }

    fn limit(rps: u32, mult: u32) -> RateLimit {
        RateLimit {
            rps: NonZeroU32::new(rps),
            burst_multiplier: mult,
            req_status: 503,
            conn_status: 503,
            ..RateLimit::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A reference of nginx's arithmetic over a request schedule: how many
    /// pass.
    #[tokio::test(start_paused = true)]
    async fn burst_then_rate() {
        let l = RateLimits::default();
        let lim = limit(5, 2); // burst 10: 11 at once
        let pass = (0..20)
            .filter(|_| l.check(&ing(), &lim, ip("10.0.0.1")).is_ok())
            .count();
        assert_eq!(pass, 11);
        // Another client has its own bucket.
        assert!(l.check(&ing(), &lim, ip("10.0.0.2")).is_ok());
        // 200 ms leak one request at 5 r/s.
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(l.check(&ing(), &lim, ip("10.0.0.1")).is_ok());
        assert_eq!(
            l.check(&ing(), &lim, ip("10.0.0.1")).unwrap_err(),
            Over::Requests(503)
        );
        // Refused requests in between do not reset the leak.
        for _ in 0..199 {
            tokio::time::advance(Duration::from_micros(999)).await;
            assert!(l.check(&ing(), &lim, ip("10.0.0.1")).is_err());
        }
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(l.check(&ing(), &lim, ip("10.0.0.1")).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn every_zone_or_none() {
        let l = RateLimits::default();
        let mut lim = limit(100, 1);
        lim.rpm = NonZeroU32::new(2); // burst 2 × 1: 3 at once
        let pass = (0..10)
            .filter(|_| l.check(&ing(), &lim, ip("10.0.0.1")).is_ok())
            .count();
        assert_eq!(pass, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn connections_are_released_with_the_slot() {
        let l = RateLimits::default();
        let lim = RateLimit {
            connections: NonZeroU32::new(2),
            burst_multiplier: 5,
            req_status: 503,
            conn_status: 429,
            ..RateLimit::default()
        };
        let a = l.check(&ing(), &lim, ip("10.0.0.1")).unwrap();
        let b = l.check(&ing(), &lim, ip("10.0.0.1")).unwrap();
        assert_eq!(
            l.check(&ing(), &lim, ip("10.0.0.1")).unwrap_err(),
            Over::Connections(429)
        );
        drop(a);
        let c = l.check(&ing(), &lim, ip("10.0.0.1")).unwrap();
        drop((b, c));
        assert_eq!(l.tracked_clients(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn exempt_clients_are_not_counted() {
        let l = RateLimits::default();
        let mut lim = limit(1, 1);
        lim.exempt = Some("10.0.0.0/8".parse().unwrap());
        for _ in 0..10 {
            assert!(l.check(&ing(), &lim, ip("10.1.2.3")).is_ok());
        }
        assert_eq!(l.tracked_clients(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded() {
        let l = RateLimits::default();
        let lim = limit(1000, 1);
        // Two requests each: a bucket that holds excess.
        for i in 0..(MAX_CLIENTS_PER_ZONE as u32 + 5000) {
            let _ = l.check(&ing(), &lim, IpAddr::from(i.to_be_bytes()));
            let _ = l.check(&ing(), &lim, IpAddr::from(i.to_be_bytes()));
        }
        assert!(l.tracked_clients() <= MAX_CLIENTS_PER_ZONE);
        // Once drained, the next sweep drops them.
        tokio::time::advance(Duration::from_secs(5)).await;
        for i in 0..(MAX_CLIENTS_PER_ZONE as u32 / 4 + 10) {
            let _ = l.check(&ing(), &lim, IpAddr::from((i | 0x0b00_0000).to_be_bytes()));
        }
        assert!(
            l.tracked_clients() < MAX_CLIENTS_PER_ZONE / 2,
            "{}",
            l.tracked_clients()
        );
    }
}
