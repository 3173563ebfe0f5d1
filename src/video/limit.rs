//! Rate limit on failed token checks at the video endpoint: one token
//! bucket per peer and one for everybody, both asked *before* a presented
//! token is compared, both charged by a wrong one. Pure: the caller passes
//! the monotonic time.
//!
//! ```text
//!  request with a token ─► before(peer, now) ── peer and global buckets hold a token ──► compare
//!                               │                                                        │ wrong
//!                               │                                                        ▼
//!                               │                                   failed(peer, now): take one from each
//!                               └─ either bucket empty ─► 429 Too Many Requests, Retry-After: <s>
//!                                  (the token is not compared, right or wrong: no oracle)
//! ```
//!
//! Figures ([`FailureLimits::default`]): a peer may be wrong 5 times in a
//! row, then once every 2 s; all peers together 30 times, then 10 a second.
//! A viewer who mistyped the token a few times never meets the limit; a
//! guesser from one address gets 1,800 tries an hour, from a botnet 36,000
//! an hour — against a token of at least 16 URL-safe characters (≥ 96
//! bits), which is what keeps it out, while the limit keeps the log and
//! the CPU quiet. The price of the global bucket: while a distributed
//! guesser keeps it empty, a viewer with the right token is answered 429
//! too (it is not compared). That is the fail-closed choice; the stream is
//! a convenience, the lock does not depend on it.
//!
//! Peers are keyed by IPv4 address or IPv6 /64 (one host owns a /64). The
//! map holds at most [`MAX_PEERS`]; when it is full, peers whose bucket has
//! refilled are forgotten, and if none has, new peers share one bucket
//! (stricter, never looser).
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::core::time::Instant;

/// Peers remembered at once.
pub const MAX_PEERS: usize = 4096;

/// Burst and refill of the two buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimits {
    /// Wrong tokens one peer may send in a row.
    pub per_peer_burst: u32,
    /// Then one more each this long.
    pub per_peer_every: Duration,
    /// Wrong tokens all peers together may send in a row.
    pub global_burst: u32,
    /// Then one more each this long.
    pub global_every: Duration,
}

impl Default for FailureLimits {
    fn default() -> Self {
        FailureLimits {
            per_peer_burst: 5,
            per_peer_every: Duration::from_secs(2),
            global_burst: 30,
            global_every: Duration::from_millis(100),
        }
    }
}

/// The address a limit is kept for: IPv4 as is (an IPv4-mapped IPv6
/// address too), IPv6 by its /64.
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A token bucket: `burst` tokens, one more every `every_ms`.
#[derive(Debug, Clone)]
struct Bucket {
    /// Tokens × `every_ms` (integer arithmetic, no drift).
    level: u64,
    cap: u64,
    every_ms: u64,
    last: Instant,
}

impl Bucket {
    fn new(burst: u32, every: Duration, now: Instant) -> Self {
        let every_ms = (every.as_millis() as u64).max(1);
        let cap = u64::from(burst.max(1)) * every_ms;
        Bucket {
            level: cap,
            cap,
            every_ms,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A clock that went backwards refills nothing.
        let elapsed = now.as_millis().saturating_sub(self.last.as_millis());
        self.level = self.level.saturating_add(elapsed).min(self.cap);
        self.last = now;
    }

    /// `None` when a token is there, else the time until one is.
    fn wait(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        (self.level < self.every_ms).then(|| Duration::from_millis(self.every_ms - self.level))
    }

    fn take(&mut self, now: Instant) {
        self.refill(now);
        self.level = self.level.saturating_sub(self.every_ms);
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level == self.cap
    }
}

/// The per-peer and global buckets.
#[derive(Debug)]
pub struct FailureLimiter {
    limits: FailureLimits,
    peers: HashMap<IpAddr, Bucket>,
    /// Shared by new peers while the map is full of active ones.
    overflow: Bucket,
    global: Bucket,
}

impl FailureLimiter {
    pub fn new(limits: FailureLimits, now: Instant) -> Self {
        FailureLimiter {
            limits,
            peers: HashMap::new(),
            overflow: Bucket::new(limits.per_peer_burst, limits.per_peer_every, now),
            global: Bucket::new(limits.global_burst, limits.global_every, now),
        }
    }

    /// May `peer` have a token compared now? `Err(wait)`: answer 429 with
    /// `Retry-After` of at least `wait`.
    pub fn before(&mut self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = peer_key(peer);
        let full = self.peers.len() >= MAX_PEERS;
        let peer_wait = match self.peers.get_mut(&key) {
            Some(b) => b.wait(now),
            None if full => self.overflow.wait(now),
            // Never failed (or forgotten after a full refill): a full bucket.
            None => None,
        };
        match (peer_wait, self.global.wait(now)) {
            (None, None) => Ok(()),
            (a, b) => Err(a.unwrap_or_default().max(b.unwrap_or_default())),
        }
    }

    /// A token from `peer` was wrong.
    pub fn failed(&mut self, peer: IpAddr, now: Instant) {
        self.global.take(now);
        let key = peer_key(peer);
        if !self.peers.contains_key(&key) && self.peers.len() >= MAX_PEERS {
            self.peers.retain(|_, b| !b.is_full(now));
        }
        if self.peers.len() < MAX_PEERS || self.peers.contains_key(&key) {
            let l = self.limits;
            self.peers
                .entry(key)
                .or_insert_with(|| Bucket::new(l.per_peer_burst, l.per_peer_every, now))
                .take(now);
        } else {
            self.overflow.take(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_peer_gets_its_burst_then_waits() {
        let t0 = Instant::from_millis(1_000);
        let mut l = FailureLimiter::new(FailureLimits::default(), t0);
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            assert_eq!(l.before(a, t0), Ok(()));
            l.failed(a, t0);
        }
        assert_eq!(l.before(a, t0), Err(Duration::from_secs(2)));
        // Another peer is not held back by the first one.
        assert_eq!(l.before(ip("192.0.2.2"), t0), Ok(()));
        // 1.5 s later: 0.5 s to go; 2 s later: one more try.
        assert_eq!(
            l.before(a, t0.after(Duration::from_millis(1_500))),
            Err(Duration::from_millis(500))
        );
        assert_eq!(l.before(a, t0.after(Duration::from_secs(2))), Ok(()));
    }

    #[test]
    fn all_peers_share_the_global_bucket() {
        let t0 = Instant::from_millis(0);
        let mut l = FailureLimiter::new(FailureLimits::default(), t0);
        for i in 0..30u8 {
            let p = IpAddr::from([10, 0, 0, i]);
            assert_eq!(l.before(p, t0), Ok(()));
            l.failed(p, t0);
        }
        assert!(l.before(ip("10.0.1.1"), t0).is_err());
        assert_eq!(
            l.before(ip("10.0.1.1"), t0.after(Duration::from_millis(100))),
            Ok(())
        );
    }

    #[test]
    fn ipv6_peers_are_keyed_by_their_64() {
        assert_eq!(
            peer_key(ip("2001:db8:1:2:aaaa::1")),
            peer_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            peer_key(ip("2001:db8:1:2::1")),
            peer_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(peer_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn a_full_map_makes_new_peers_share_one_bucket() {
        let t0 = Instant::from_millis(0);
        let limits = FailureLimits {
            global_burst: u32::MAX,
            ..FailureLimits::default()
        };
        let mut l = FailureLimiter::new(limits, t0);
        for i in 0..MAX_PEERS as u32 {
            l.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        // Every remembered peer is still active: newcomers share a bucket.
        for i in 0..5u32 {
            let p = IpAddr::from((0x8000_0000 + i).to_be_bytes());
            assert_eq!(l.before(p, t0), Ok(()));
            l.failed(p, t0);
        }
        assert!(l.before(ip("200.0.0.1"), t0).is_err());
    }
}
