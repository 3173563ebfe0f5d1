//! The one secure-channel slot of the lock's BLE service, and who gets it
//! (issue 14.3), sans-IO: `gatt.rs` hands every write to the latchd
//! channel here with the writer's address and applies the outcome.
//!
//! BlueZ sends a characteristic's notifications to every subscribed
//! central, so only one app at a time can hold a channel (a second would
//! read the first one's frames). Whoever writes first holds the slot;
//! another device may still take it, but only by opening a session with a
//! registered key whose standing beats the holder's ([`Guard::may_preempt`]):
//!
//! ```text
//!  write from P ─► P holds the slot? ─yes─► holder's ChannelConn ─► notify; standing(P) := its session
//!                    │ no holder: P takes it (fresh ChannelConn)
//!                    └ another holds it: P is a contender
//!                        contender ChannelConn (SessionInit only, at most MAX_CONTENDERS)
//!                        ├ fragment of a frame ─► Ok, nothing else
//!                        ├ SessionInit opens a session ─► may_preempt(holder)?
//!                        │     yes ─► Outcome { evict: holder, notify: accept }: P holds the slot
//!                        │     no  ─► refused (the holder's session is in use)
//!                        └ anything else ─► refused (NotPermitted), nothing parsed beyond the type
//! ```
//!
//! The holder that is displaced is disconnected by the caller before the
//! new holder's answer is notified, so it never sees the new session's
//! frames.
use std::sync::Arc;

use crate::app::crypto::StaticKeypair;
use crate::app::pairing::CurrentCode;
use crate::app::{ChannelConn, LockLink};
use crate::core::time::Instant;
use crate::core::types::AppKeyRole;

use super::guard::{Guard, Standing};

/// Devices that may be half-way through a `SessionInit` while another
/// holds the slot; a further one is refused until one finishes.
pub const MAX_CONTENDERS: usize = 4;

/// What the caller does after a write.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome<P> {
    /// Disconnect this device first (displaced from the slot).
    pub evict: Option<P>,
    /// Then notify these fragments on the channel's tx characteristic.
    pub notify: Vec<Vec<u8>>,
    /// Fail the write (`NotPermitted`): another device holds the slot.
    pub refused: bool,
    /// The writer took a free slot (an app connected, B-9.1).
    pub took_slot: bool,
}

/// The slot, its holder's channel and the contenders' half-received
/// frames.
pub struct Slot<P> {
    lock: Arc<StaticKeypair>,
    code: CurrentCode,
    holder: Option<(P, ChannelConn)>,
    contenders: Vec<(P, ChannelConn)>,
}

impl<P> std::fmt::Debug for Slot<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("held", &self.holder.is_some())
            .field("contenders", &self.contenders.len())
            .finish_non_exhaustive()
    }
}

/// The standing a channel's open session gives.
pub fn standing_of(conn: &ChannelConn) -> Standing {
    match conn.session_role() {
        Some(AppKeyRole::Owner { .. }) => Standing::Owner,
        Some(AppKeyRole::Guest) => Standing::Guest,
        None => Standing::Stranger,
    }
}

impl<P: Copy + Eq + std::hash::Hash> Slot<P> {
    pub fn new(lock: Arc<StaticKeypair>, code: CurrentCode) -> Self {
        Slot {
            lock,
            code,
            holder: None,
            contenders: Vec::new(),
        }
    }

    /// Who holds the slot.
    pub fn holder(&self) -> Option<P> {
        self.holder.as_ref().map(|(p, _)| *p)
    }

    /// `p` disconnected: its channel (and any half-open session) ends.
    /// `true` if it held the slot.
    pub fn release(&mut self, p: P) -> bool {
        self.contenders.retain(|(c, _)| *c != p);
        if self.holder() == Some(p) {
            self.holder = None;
            return true;
        }
        false
    }

    fn conn(&self, mtu: u16) -> ChannelConn {
        ChannelConn::new(self.lock.clone(), self.code.clone(), mtu)
    }

    /// One write to the channel's rx characteristic from `p`.
    pub async fn on_write(
        &mut self,
        link: &dyn LockLink,
        guard: &mut Guard<P>,
        p: P,
        bytes: &[u8],
        mtu: u16,
        now: Instant,
    ) -> Outcome<P> {
        let mut out = Outcome {
            evict: None,
            notify: Vec::new(),
            refused: false,
            took_slot: false,
        };
        let holder = match self.holder() {
            None => {
                self.contenders.retain(|(c, _)| *c != p);
                self.holder = Some((p, self.conn(mtu)));
                out.took_slot = true;
                p
            }
            Some(h) => h,
        };
        if holder == p {
            if let Some((_, conn)) = &mut self.holder {
                out.notify = conn.on_write(link, bytes).await;
                guard.set_standing(p, standing_of(conn), now);
            }
            return out;
        }
        // A contender: only a session may displace the holder.
        let idx = match self.contenders.iter().position(|(c, _)| *c == p) {
            Some(i) => i,
            None if self.contenders.len() < MAX_CONTENDERS => {
                let conn = self.conn(mtu).session_init_only();
                self.contenders.push((p, conn));
                self.contenders.len() - 1
            }
            None => {
                out.refused = true;
                return out;
            }
        };
        let answer = self.contenders[idx].1.on_write(link, bytes).await;
        if answer.is_empty() {
            return out; // a fragment; the frame is not complete yet
        }
        let (_, conn) = self.contenders.swap_remove(idx);
        let rank = standing_of(&conn);
        if conn.is_open() && guard.may_preempt(holder, rank, now) {
            tracing::info!(
                ?rank,
                "BLE: a registered key's session takes the channel from the device holding it"
            );
            self.holder = Some((p, conn));
            guard.set_standing(p, rank, now);
            out.evict = Some(holder);
            out.notify = answer;
        } else {
            out.refused = true;
        }
        out
    }
}
