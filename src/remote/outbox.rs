//! Which sealed event frames are out in this session, and how far the
//! persisted event cursor may move. Pure: the session loop tells it what
//! it published and what the broker acknowledged.
//!
//! ```text
//!  cursor (persisted: every event ≤ it reached the broker, for every owner key)
//!    │   id 40 ─ 2 frames, 1 acked        id 41 ─ skipped      id 42 ─ 1 of 2 frames queued (client queue full)
//!    ▼   ─────────────────────────────────────────────────────────────────────────────────────────────────
//!        unacked 1, complete              unacked 0, complete  unacked 1, NOT complete → sent again, whole
//! ```
//!
//! An event counts as delivered only when every frame of it was queued
//! and acknowledged, and the cursor moves over delivered events from the
//! oldest only. An event whose frames could not all be queued is read and
//! sealed again at the next pump (its first owners get it twice: QoS 1 is
//! at least once, and the app drops the repeat by id), so a full client
//! queue can never move the cursor past an owner who got nothing.
use std::collections::BTreeMap;

/// Sealed event frames published and not yet acknowledged, at most.
pub const FRAMES_IN_FLIGHT: usize = 16;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pending {
    /// Frames queued and not yet acknowledged.
    unacked: usize,
    /// Every frame of the event was queued (or it needed none).
    complete: bool,
}

/// The events of one session between the cursor and the newest published.
#[derive(Debug, Default)]
pub struct EventOutbox {
    pending: BTreeMap<u64, Pending>,
    /// Read the log after this id next.
    next_after: u64,
    frames_out: usize,
}

impl EventOutbox {
    /// A session starting after the persisted `cursor`.
    pub fn new(cursor: u64) -> Self {
        EventOutbox {
            next_after: cursor,
            ..Default::default()
        }
    }

    /// The log is read after this id.
    pub fn next_after(&self) -> u64 {
        self.next_after
    }

    /// Frames queued and not yet acknowledged.
    pub fn frames_out(&self) -> usize {
        self.frames_out
    }

    /// How many events to read now when each takes `owners` frames: what
    /// fits under [`FRAMES_IN_FLIGHT`], and at least one when nothing is
    /// out (more owner keys than the limit still get every event). No
    /// owner key: none (events wait).
    pub fn room(&self, owners: usize) -> usize {
        if owners == 0 {
            0
        } else if self.frames_out == 0 {
            (FRAMES_IN_FLIGHT / owners).max(1)
        } else {
            FRAMES_IN_FLIGHT.saturating_sub(self.frames_out) / owners
        }
    }

    /// One frame of event `id` was queued.
    pub fn sent(&mut self, id: u64) {
        self.pending.entry(id).or_default().unacked += 1;
        self.frames_out += 1;
    }

    /// Every frame of event `id` was queued, or it needs none: the log is
    /// read after it next.
    pub fn done(&mut self, id: u64) {
        self.pending.entry(id).or_default().complete = true;
        self.next_after = self.next_after.max(id);
    }

    /// The broker acknowledged one frame of event `id`.
    pub fn acked(&mut self, id: u64) {
        if let Some(p) = self.pending.get_mut(&id) {
            if p.unacked > 0 {
                p.unacked -= 1;
                self.frames_out -= 1;
            }
        }
    }

    /// Drop the delivered events at the front: the newest of them is the
    /// new cursor, if any moved.
    pub fn advance(&mut self) -> Option<u64> {
        let mut cursor = None;
        while let Some((&id, p)) = self.pending.first_key_value() {
            if p.unacked > 0 || !p.complete {
                break;
            }
            self.pending.remove(&id);
            cursor = Some(id);
        }
        cursor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cursor moves only over events every owner's frame of which was
    /// acknowledged, oldest first; skipped events move with them.
    #[test]
    fn the_cursor_waits_for_every_frame_of_every_earlier_event() {
        let mut o = EventOutbox::new(39);
        assert_eq!(o.room(2), 8);
        for id in [40, 42] {
            o.sent(id);
            o.sent(id);
            o.done(id);
        }
        o.done(41); // skipped (nothing to send)
        assert_eq!((o.next_after(), o.frames_out()), (42, 4));
        assert_eq!(o.room(2), 6);
        o.acked(42);
        o.acked(42);
        assert_eq!(o.advance(), None, "40 is still out");
        o.acked(40);
        assert_eq!(o.advance(), None, "one owner of 40 has no PUBACK yet");
        o.acked(40);
        assert_eq!(o.advance(), Some(42));
        assert_eq!(o.frames_out(), 0);
        // A PUBACK of an unknown or finished event changes nothing.
        o.acked(7);
        assert_eq!((o.advance(), o.frames_out()), (None, 0));
    }

    /// A full client queue after one owner's frame: the event is not
    /// delivered when that frame is acknowledged; it is read again and
    /// counts only once all its frames went out and came back.
    #[test]
    fn a_partly_queued_event_is_sent_again_whole() {
        let mut o = EventOutbox::new(0);
        o.sent(1);
        // The second owner's frame did not fit: no `done`.
        o.acked(1);
        assert_eq!(o.advance(), None, "the second owner got nothing yet");
        assert_eq!(o.next_after(), 0, "event 1 is read again");
        o.sent(1);
        o.sent(1);
        o.done(1);
        o.acked(1);
        assert_eq!(o.advance(), None);
        o.acked(1);
        assert_eq!(o.advance(), Some(1));
    }

    /// Issue 14 item 2: without an owner key nothing is read, so nothing
    /// is sent and the cursor stays; many owner keys still get one event
    /// at a time.
    #[test]
    fn room_by_owner_count() {
        let mut o = EventOutbox::new(5);
        assert_eq!(o.room(0), 0);
        assert_eq!(o.advance(), None);
        assert_eq!(o.next_after(), 5);
        assert_eq!(o.room(1), FRAMES_IN_FLIGHT);
        assert_eq!(o.room(40), 1, "more owners than the limit");
        for _ in 0..40 {
            o.sent(6);
        }
        o.done(6);
        assert_eq!(o.room(40), 0);
        assert_eq!(o.room(1), 0);
    }
}
