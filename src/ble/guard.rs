//! Who may stay connected to the lock's BLE service, and how much each
//! connection may ask of it (issue 14.3): the availability policy, sans-IO,
//! generic over the peer's address so it is tested with simulated time.
//!
//! ```text
//!  BlueZ (gatt.rs)                       Guard
//!  ───────────────                       ─────
//!  every write (channel or Improv) ──► admit_write(peer, now)
//!                                       stranger: per-peer bucket, then the shared bucket
//!                                       empty ─► Refuse (write fails, nothing parsed)
//!                                       refused STRIKES times ─► Evict
//!  session opened / lost (slot.rs) ──► set_standing(peer, Owner | Guest | Stranger)
//!  Improv join under way            ──► provisioning(peer, true/false)
//!  sentry, every TICK ──────────────► seen_connected(each connected peer) + tick(now, pairing_mode)
//!                                       └─► peers to disconnect:
//!                                           stranger connected > grace (pairing mode: longer),
//!                                           session idle > SESSION_IDLE
//!  disconnected                     ──► gone(peer)
//! ```
//!
//! A *stranger* is any connection without an open session: it has proved
//! nothing, so it gets a short grace ([`UNAUTH_GRACE`]; in pairing mode,
//! when the owner is at the lock setting it up, [`PAIRING_GRACE`]) and a
//! write budget. A session of a registered key outranks a stranger (and an
//! owner a guest): see [`Guard::may_preempt`]. Figures are in the constants.
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::core::time::Instant;
use crate::link::limit::TokenBucket;

/// How long a connection may stay without opening a session. An honest
/// app opens one within a second of connecting; an Improv client that
/// is evicted while idle reconnects for its next step.
pub const UNAUTH_GRACE: Duration = Duration::from_secs(15);
/// The same while the lock is in pairing mode (B-5.1: someone is at the
/// lock, holding SET): long enough to type a Wi-Fi password into Home
/// Assistant. Pairing mode lasts 3 minutes.
pub const PAIRING_GRACE: Duration = Duration::from_secs(180);
/// An open session with no frame for this long is disconnected (the
/// protocol's own idle limit: the session could not be used any more).
pub const SESSION_IDLE: Duration = crate::app::protocol::DEFAULT_IDLE_TIMEOUT;
/// A session idle this long may be displaced by another session of equal
/// rank (the owner's phone after the owner's laptop).
pub const PREEMPT_IDLE: Duration = Duration::from_secs(5);
/// Writes a stranger may make in a burst, and per second after it. An
/// owner pairing plus a first request is about 20 writes of 20 bytes.
pub const PEER_BURST: u32 = 40;
pub const PEER_PER_S: u32 = 20;
/// Writes all strangers together may make (addresses are cheap to change).
pub const SHARED_BURST: u32 = 120;
pub const SHARED_PER_S: u32 = 60;
/// Refused writes after which a stranger is disconnected.
pub const STRIKES: u32 = 40;
/// Connections tracked at once; a further stranger is refused and evicted.
pub const MAX_PEERS: usize = 16;
/// How often the sentry looks at the connections.
pub const TICK: Duration = Duration::from_secs(1);
/// A disconnect that did not take is asked for again after this.
const EVICT_RETRY: Duration = Duration::from_secs(5);

/// What a connection has proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// No open session (connecting, pairing, Improv, or nothing at all).
    Stranger,
    /// A guest key's session.
    Guest,
    /// An owner key's session.
    Owner,
}

/// The verdict on one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Handle it.
    Yes,
    /// Refuse it unread (the write fails).
    Refuse,
    /// Refuse it and disconnect the peer.
    Evict,
}

/// The limits, all in one place (tests shrink them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub unauth_grace: Duration,
    pub pairing_grace: Duration,
    pub session_idle: Duration,
    pub preempt_idle: Duration,
    pub peer_burst: u32,
    pub peer_per_s: u32,
    pub shared_burst: u32,
    pub shared_per_s: u32,
    pub strikes: u32,
    pub max_peers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            unauth_grace: UNAUTH_GRACE,
            pairing_grace: PAIRING_GRACE,
            session_idle: SESSION_IDLE,
            preempt_idle: PREEMPT_IDLE,
            peer_burst: PEER_BURST,
            peer_per_s: PEER_PER_S,
            shared_burst: SHARED_BURST,
            shared_per_s: SHARED_PER_S,
            strikes: STRIKES,
            max_peers: MAX_PEERS,
        }
    }
}

#[derive(Debug)]
struct Peer {
    /// Since when it has been what it is (connected, or lost its session).
    since: Instant,
    /// Its last write.
    last_write: Instant,
    standing: Standing,
    /// It sent Wi-Fi credentials and the lock is joining: not evicted.
    provisioning: bool,
    bucket: TokenBucket,
    strikes: u32,
    /// When it was last handed out for disconnection.
    evicted_at: Option<Instant>,
}

/// `p`'s entry, made on first sight unless the table is full.
fn entry<'a, P: Eq + Hash>(
    peers: &'a mut HashMap<P, Peer>,
    limits: &Limits,
    p: P,
    now: Instant,
) -> Option<&'a mut Peer> {
    if !peers.contains_key(&p) && peers.len() >= limits.max_peers {
        return None;
    }
    Some(peers.entry(p).or_insert_with(|| Peer {
        since: now,
        last_write: now,
        standing: Standing::Stranger,
        provisioning: false,
        bucket: TokenBucket::new(limits.peer_burst, limits.peer_per_s, now),
        strikes: 0,
        evicted_at: None,
    }))
}

/// The policy's state: one entry per connected peer.
#[derive(Debug)]
pub struct Guard<P> {
    limits: Limits,
    peers: HashMap<P, Peer>,
    shared: TokenBucket,
}

impl<P: Copy + Eq + Hash> Guard<P> {
    pub fn new(limits: Limits, now: Instant) -> Self {
        Guard {
            limits,
            peers: HashMap::new(),
            shared: TokenBucket::new(limits.shared_burst, limits.shared_per_s, now),
        }
    }

    fn entry(&mut self, p: P, now: Instant) -> Option<&mut Peer> {
        entry(&mut self.peers, &self.limits, p, now)
    }

    /// `p` is connected (the sentry's poll, or its first write): its grace
    /// runs from the first time it is seen. `false` when the table is full
    /// (the caller disconnects it).
    pub fn seen_connected(&mut self, p: P, now: Instant) -> bool {
        self.entry(p, now).is_some()
    }

    /// `p` disconnected.
    pub fn gone(&mut self, p: P) {
        self.peers.remove(&p);
    }

    /// Connected peers.
    pub fn peers(&self) -> impl Iterator<Item = P> + '_ {
        self.peers.keys().copied()
    }

    /// One write from `p` (a fragment for the channel, or an Improv RPC
    /// write). A session's writes are free; a stranger's cost one token of
    /// its own bucket and one of the shared one.
    pub fn admit_write(&mut self, p: P, now: Instant) -> Admit {
        let strikes = self.limits.strikes;
        let Some(peer) = entry(&mut self.peers, &self.limits, p, now) else {
            return Admit::Evict;
        };
        peer.last_write = now;
        if peer.standing != Standing::Stranger {
            return Admit::Yes;
        }
        let own = peer.bucket.has_token(now);
        if own && self.shared.has_token(now) {
            peer.bucket.take(now);
            self.shared.take(now);
            return Admit::Yes;
        }
        if own {
            // Refused for the others' flood: no strike against this peer.
            return Admit::Refuse;
        }
        peer.strikes += 1;
        if peer.strikes >= strikes {
            Admit::Evict
        } else {
            Admit::Refuse
        }
    }

    /// What `p` has proved so far.
    pub fn standing(&self, p: P) -> Standing {
        self.peers
            .get(&p)
            .map_or(Standing::Stranger, |peer| peer.standing)
    }

    /// `p` opened a session (or lost it: [`Standing::Stranger`]). Losing a
    /// session starts a fresh grace, so an app whose request went wrong is
    /// not cut off at once.
    pub fn set_standing(&mut self, p: P, standing: Standing, now: Instant) {
        if let Some(peer) = self.entry(p, now) {
            if peer.standing != standing {
                peer.standing = standing;
                peer.since = now;
                peer.strikes = 0;
            }
        }
    }

    /// `p` sent Wi-Fi credentials (`true`) and the join ended (`false`).
    /// Until then it is not evicted: it waits for the result.
    pub fn provisioning(&mut self, p: P, busy: bool, now: Instant) {
        if let Some(peer) = self.entry(p, now) {
            peer.provisioning = busy;
            if !busy {
                // The result notifications follow; give it a fresh grace.
                peer.since = now;
            }
        }
    }

    /// May `contender`, whose session of standing `rank` just opened,
    /// take the slot `holder` has? A registered key outranks a stranger
    /// and an owner a guest; an equal rank wins once the holder has been
    /// idle for [`PREEMPT_IDLE`].
    pub fn may_preempt(&self, holder: P, rank: Standing, now: Instant) -> bool {
        if rank == Standing::Stranger {
            return false;
        }
        let Some(h) = self.peers.get(&holder) else {
            return true;
        };
        if rank > h.standing {
            return true;
        }
        rank == h.standing
            && now.as_millis().saturating_sub(h.last_write.as_millis())
                >= self.limits.preempt_idle.as_millis() as u64
    }

    /// The connections to end now: strangers past their grace, sessions
    /// idle past [`SESSION_IDLE`]. A peer handed out is handed out again
    /// only if it is still there [`EVICT_RETRY`] later.
    pub fn tick(&mut self, now: Instant, pairing_mode: bool) -> Vec<P> {
        let grace = if pairing_mode {
            self.limits.pairing_grace
        } else {
            self.limits.unauth_grace
        };
        let idle = self.limits.session_idle;
        let ms = |d: Duration| d.as_millis() as u64;
        let since = |t: Instant| now.as_millis().saturating_sub(t.as_millis());
        let mut out = Vec::new();
        for (p, peer) in &mut self.peers {
            if let Some(at) = peer.evicted_at {
                if since(at) < ms(EVICT_RETRY) {
                    continue;
                }
            }
            let overdue = match peer.standing {
                Standing::Stranger => !peer.provisioning && since(peer.since) > ms(grace),
                Standing::Guest | Standing::Owner => since(peer.last_write) > ms(idle),
            };
            if overdue {
                peer.evicted_at = Some(now);
                out.push(*p);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }
    fn secs(s: u64) -> Instant {
        t(s * 1000)
    }

    #[test]
    fn a_silent_or_one_byte_squatter_is_evicted_after_its_grace() {
        let mut g = Guard::new(Limits::default(), secs(0));
        // One connects and never writes; the other writes one byte.
        assert!(g.seen_connected(1u8, secs(0)));
        assert_eq!(g.admit_write(2u8, secs(1)), Admit::Yes);
        assert!(g.tick(secs(15), false).is_empty(), "within the grace");
        let mut evicted = g.tick(secs(17), false);
        evicted.sort();
        assert_eq!(evicted, vec![1, 2]);
        // Handed out once, again only if it is still there later.
        assert!(g.tick(secs(18), false).is_empty());
        assert_eq!(g.tick(secs(23), false).len(), 2);
        g.gone(1);
        g.gone(2);
        assert_eq!(g.peers().count(), 0);
    }

    #[test]
    fn pairing_mode_gives_strangers_longer_and_a_join_is_not_cut() {
        let mut g = Guard::new(Limits::default(), secs(0));
        g.seen_connected(1u8, secs(0));
        g.seen_connected(2u8, secs(0));
        assert!(g.tick(secs(60), true).is_empty());
        g.provisioning(2, true, secs(60));
        assert_eq!(g.tick(secs(181), true), vec![1]);
        g.gone(1);
        // Joining takes as long as it takes; then a fresh grace.
        assert!(g.tick(secs(400), false).is_empty());
        g.provisioning(2, false, secs(400));
        assert!(g.tick(secs(410), false).is_empty());
        assert_eq!(g.tick(secs(416), false), vec![2]);
    }

    #[test]
    fn a_session_is_cut_when_idle_not_while_used() {
        let mut g = Guard::new(Limits::default(), secs(0));
        g.admit_write(1u8, secs(0));
        g.set_standing(1, Standing::Owner, secs(1));
        for s in (10..200).step_by(10) {
            assert_eq!(g.admit_write(1, secs(s)), Admit::Yes);
            assert!(g.tick(secs(s + 5), false).is_empty());
        }
        assert!(g.tick(secs(250), false).is_empty());
        assert_eq!(g.tick(secs(251), false), vec![1]);
        // Losing the session makes it a stranger with a fresh grace.
        let mut g = Guard::new(Limits::default(), secs(0));
        g.set_standing(1u8, Standing::Owner, secs(0));
        g.set_standing(1, Standing::Stranger, secs(40));
        assert!(g.tick(secs(50), false).is_empty());
        assert_eq!(g.tick(secs(56), false), vec![1]);
    }

    #[test]
    fn a_flooding_stranger_is_refused_then_evicted_and_others_still_get_in() {
        let mut g = Guard::new(Limits::default(), secs(0));
        let mut yes = 0;
        let mut verdict = Admit::Yes;
        // 200 writes in 100 ms.
        for i in 0..200u64 {
            verdict = g.admit_write(1u8, t(i / 2));
            match verdict {
                Admit::Yes => yes += 1,
                Admit::Refuse => {}
                Admit::Evict => break,
            }
        }
        assert_eq!(verdict, Admit::Evict);
        assert!((PEER_BURST..=PEER_BURST + 2).contains(&yes), "{yes}");
        // Its flood used 40 of the shared 120: an honest app still gets in.
        for i in 0..30 {
            assert_eq!(g.admit_write(2u8, t(100 + i)), Admit::Yes);
        }
        // A session's writes are never rate-limited.
        g.set_standing(3u8, Standing::Owner, t(200));
        for i in 0..1000 {
            assert_eq!(g.admit_write(3, t(200 + i / 100)), Admit::Yes);
        }
    }

    #[test]
    fn strangers_together_share_one_budget() {
        let mut g = Guard::new(Limits::default(), secs(0));
        let mut yes = 0;
        // Four addresses, 40 writes each, at once.
        for p in 0..4u8 {
            for _ in 0..40 {
                if g.admit_write(p, t(0)) == Admit::Yes {
                    yes += 1;
                }
            }
        }
        assert_eq!(yes, SHARED_BURST);
        // One second later the shared bucket gave 60 more.
        for _ in 0..100 {
            if g.admit_write(4u8, secs(1)) == Admit::Yes {
                yes += 1;
            }
        }
        assert_eq!(yes, SHARED_BURST + PEER_BURST.min(SHARED_PER_S));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut g = Guard::new(Limits::default(), secs(0));
        for p in 0..MAX_PEERS as u16 {
            assert!(g.seen_connected(p, secs(0)));
        }
        assert!(!g.seen_connected(999u16, secs(0)));
        assert_eq!(g.admit_write(999, secs(0)), Admit::Evict);
        g.gone(0);
        assert!(g.seen_connected(999, secs(1)));
    }

    #[test]
    fn who_may_take_the_slot() {
        let mut g = Guard::new(Limits::default(), secs(0));
        g.admit_write(1u8, secs(0)); // a stranger holds it
        assert!(g.may_preempt(1, Standing::Owner, secs(1)));
        assert!(g.may_preempt(1, Standing::Guest, secs(1)));
        assert!(!g.may_preempt(1, Standing::Stranger, secs(1)));
        g.set_standing(1, Standing::Guest, secs(1));
        assert!(g.may_preempt(1, Standing::Owner, secs(1)));
        assert!(!g.may_preempt(1, Standing::Guest, secs(2)), "busy guest");
        assert!(g.may_preempt(1, Standing::Guest, secs(7)), "idle guest");
        g.set_standing(1, Standing::Owner, secs(7));
        g.admit_write(1, secs(8));
        assert!(!g.may_preempt(1, Standing::Owner, secs(9)), "busy owner");
        assert!(!g.may_preempt(1, Standing::Guest, secs(100)));
        assert!(g.may_preempt(1, Standing::Owner, secs(14)), "idle owner");
        // A holder already gone may be replaced by any session.
        assert!(g.may_preempt(9, Standing::Guest, secs(14)));
    }
}
