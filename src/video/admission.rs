//! Which accepted sockets the video server keeps: a cap on all connections
//! and on those not yet authenticated ("pending": TLS handshake and
//! request head still to come), overall and per peer address.
//!
//! ```text
//!  accept ─► admit(peer)
//!              ├─ all connections at max_connections ──────────► closed at once (no task)
//!              ├─ this peer has max_pending_per_peer pending ──► closed at once (no task)
//!              ├─ max_pending pending ─► the OLDEST pending one is told to close (evicted),
//!              │                         the new one takes its place
//!              └─► Pending ticket ─► task: TLS + head within 5 s (HEAD_TIMEOUT), or evicted
//!                                     └─ token right ─► ticket.authenticated(): no longer pending,
//!                                                       still counted in max_connections
//! ```
//!
//! Why evict the oldest rather than refuse the newest: an idle attacker's
//! sockets are the old ones. Refusing newcomers would let a few hundred
//! idle sockets (spread over a few addresses to pass the per-peer cap)
//! shut out every viewer for as long as the attacker renews them; evicting
//! the oldest means an attacker must open `max_pending` new connections in
//! the time a genuine viewer needs for one handshake and one request head.
//!
//! The file descriptors the video server can hold are therefore bounded by
//! `max_connections` (plus the listener), whatever arrives: the rest of the
//! daemon (SQLite, BLE, MQTT, the control socket) keeps its descriptors.
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::limit::peer_key;

/// The caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Connections held at once, whatever their state.
    pub max_connections: usize,
    /// Connections not yet authenticated.
    pub max_pending: usize,
    /// Connections not yet authenticated from one address (IPv6: one /64).
    pub max_pending_per_peer: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            max_connections: 64,
            max_pending: 32,
            max_pending_per_peer: 4,
        }
    }
}

/// Why an accepted socket was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Full,
    PeerPending,
}

/// The shared admission state.
#[derive(Debug)]
pub struct Admission {
    caps: Caps,
    all: Arc<Semaphore>,
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    next_id: u64,
    /// Oldest first.
    queue: VecDeque<(u64, IpAddr, Arc<Notify>)>,
    per_peer: HashMap<IpAddr, usize>,
    evicted: u64,
}

impl Pending {
    fn forget_peer(&mut self, key: IpAddr) {
        if let Some(n) = self.per_peer.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&key);
            }
        }
    }
}

/// An admitted connection: holds its place in `max_connections`, and in
/// the pending caps until [`Ticket::authenticated`] or drop.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    key: IpAddr,
    evict: Arc<Notify>,
    pending: bool,
    _place: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(caps: Caps) -> Arc<Self> {
        Arc::new(Admission {
            caps,
            all: Arc::new(Semaphore::new(caps.max_connections)),
            pending: Mutex::new(Pending::default()),
        })
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock leaves counts, not broken
        // invariants worth dying for.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decide on a socket just accepted from `peer`.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refused> {
        let place = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Full)?;
        let key = peer_key(peer);
        let mut p = self.pending();
        if p.per_peer.get(&key).copied().unwrap_or(0) >= self.caps.max_pending_per_peer {
            return Err(Refused::PeerPending);
        }
        while p.queue.len() >= self.caps.max_pending {
            let Some((_, old_key, notify)) = p.queue.pop_front() else {
                break;
            };
            p.forget_peer(old_key);
            p.evicted += 1;
            // Stored if the task is not waiting yet: it sees it at once.
            notify.notify_one();
        }
        let id = p.next_id;
        p.next_id += 1;
        let evict = Arc::new(Notify::new());
        p.queue.push_back((id, key, evict.clone()));
        *p.per_peer.entry(key).or_insert(0) += 1;
        Ok(Ticket {
            admission: self.clone(),
            id,
            key,
            evict,
            pending: true,
            _place: place,
        })
    }

    /// Pending connections closed to make room so far.
    pub fn evicted(&self) -> u64 {
        self.pending().evicted
    }

    /// Connections held now (pending or not).
    pub fn connections(&self) -> usize {
        self.caps.max_connections - self.all.available_permits()
    }

    fn leave_pending(&self, id: u64, key: IpAddr) {
        let mut p = self.pending();
        // Not found: it was evicted, and its peer count already given back.
        if let Some(i) = p.queue.iter().position(|(qid, _, _)| *qid == id) {
            p.queue.remove(i);
            p.forget_peer(key);
        }
    }
}

impl Ticket {
    /// Resolves when a newer connection took this one's pending place.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// The token was right: the connection no longer counts as pending
    /// (and can no longer be evicted), only towards `max_connections`.
    pub fn authenticated(&mut self) {
        if std::mem::take(&mut self.pending) {
            self.admission.leave_pending(self.id, self.key);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.authenticated();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn per_peer_and_total_caps() {
        let a = Admission::new(Caps {
            max_connections: 6,
            max_pending: 10,
            max_pending_per_peer: 2,
        });
        let t1 = a.admit(ip(1)).expect("1");
        let _t2 = a.admit(ip(1)).expect("2");
        assert_eq!(a.admit(ip(1)).unwrap_err(), Refused::PeerPending);
        drop(t1);
        let mut t3 = a.admit(ip(1)).expect("a place again");
        // Authenticated: no longer pending for its peer.
        t3.authenticated();
        let _t4 = a.admit(ip(1)).expect("4");
        let _t5 = a.admit(ip(2)).expect("5");
        let _t6 = a.admit(ip(3)).expect("6");
        assert_eq!(a.connections(), 5);
        let _t7 = a.admit(ip(4)).expect("7");
        assert_eq!(a.admit(ip(5)).unwrap_err(), Refused::Full);
    }

    #[tokio::test]
    async fn a_full_pending_pool_evicts_the_oldest() {
        let a = Admission::new(Caps {
            max_connections: 100,
            max_pending: 3,
            max_pending_per_peer: 3,
        });
        let old = a.admit(ip(1)).expect("old");
        let mid = a.admit(ip(2)).expect("mid");
        let _new = a.admit(ip(3)).expect("new");
        let _newer = a.admit(ip(3)).expect("newer");
        assert_eq!(a.evicted(), 1);
        tokio::time::timeout(Duration::from_secs(5), old.evicted())
            .await
            .expect("the oldest is told");
        // Its peer may open another pending connection: its count went back.
        let _again = a.admit(ip(1)).expect("peer 1 again");
        tokio::time::timeout(Duration::from_secs(5), mid.evicted())
            .await
            .expect("then the next oldest");
        drop(old);
        drop(mid);
        assert_eq!(a.pending().queue.len(), 3);
    }
}
