//! Door alarms (issue 17 item 3), named as Matter's Door Lock cluster
//! names them.
//!
//! ```text
//!  Door(Open), bolt out, no unlock moving it ─► DoorForcedOpen: siren (FORCED_SIREN),
//!                                               snapshot, prompt, owner notice, event
//!  Door(Open) ─► ajar_at = now + settings.door_ajar   (first opening of an episode)
//!     └─ still open at ajar_at ─► DoorAjar: prompt + owner notice + event, no siren
//!  Door(Closed) ─► auto-lock countdown as before (B-8.3, engine.rs)
//!     └─ closed for DOOR_SETTLE ─► the episode ends: both alarms clear
//!                                  (the siren is never cut short)
//! ```
//!
//! One alarm per episode: an alarm that is active is not raised again,
//! and it clears only once the door has stayed closed for
//! [`DOOR_SETTLE`], so a sensor that chatters open/closed (a loose magnet,
//! a door banging in the wind, an attacker rattling it) raises each alarm
//! once, not once a bounce. Nothing here ever drives the motor: a door
//! alarm only tells.
//!
//! Decision: the door-left-open delay counts from the episode's first
//! opening, whatever opened it (an unlock, a key, or force): the owner is
//! told the door stands open either way.
//! Decision: "bolt out" is the bolt sensor reading `Extended` with the
//! motor not moving. A door that opens while the motor retracts the bolt
//! is an unlock in progress; one that opens while the bolt reads
//! `Between` cannot be called forced. A jammed motor whose bolt reads
//! `Extended` counts as out: the bolt is in the strike.
//! Decision: the first door report after a start (`was` unknown) is not
//! an opening: the lock did not see the door move.
//! Decision: the mechanical key and the inside handle turn the bolt by
//! hand; their bolt-sensor report may come after the door sensor's, so an
//! opening within [`MANUAL_GRACE`] of one of them is not forced.
use core::time::Duration;

use super::action::{Prompt, SnapshotReason};
use super::engine::{Engine, Out};
use super::event::AlarmKind;
use super::input::{BoltPosition, DoorPosition};
use super::lock::MotorState;
use super::time::Instant;

/// The forced-entry siren sounds this long (as long as the tamper alarm,
/// B-10.4).
pub const FORCED_SIREN: Duration = Duration::from_secs(60);
/// A door-alarm episode ends once the door has stayed closed this long.
pub const DOOR_SETTLE: Duration = Duration::from_secs(10);
/// An opening this soon after the mechanical key or the inside handle is
/// theirs, not forced.
pub const MANUAL_GRACE: Duration = Duration::from_secs(5);
/// The shortest door-ajar delay an app may set: anything shorter would
/// nag every person walking through.
pub const DOOR_AJAR_MIN: Duration = Duration::from_secs(10);

/// The door alarms' timers.
#[derive(Debug, Default)]
pub(super) struct DoorWatch {
    /// The door-ajar alarm fires then if the door is still open.
    ajar_at: Option<Instant>,
    /// The delay passed while a chattering door read closed: the next
    /// opening in the same episode raises the door-ajar alarm.
    ajar_due: bool,
    /// The door is closed since then (while an episode lasts).
    closed_since: Option<Instant>,
    /// The forced-entry siren ends then.
    siren_until: Option<Instant>,
    /// The mechanical key or the inside handle was last used then.
    manual_at: Option<Instant>,
}

impl DoorWatch {
    /// When a door timer has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let settle = self
            .closed_since
            .map(|t| (t + DOOR_SETTLE).max(self.siren_until.unwrap_or(t)));
        [self.ajar_at, settle].into_iter().flatten().min()
    }

    /// The key or the handle moved the bolt by hand.
    pub fn manual(&mut self, now: Instant) {
        self.manual_at = Some(now);
    }

    /// A factory reset: no timer of the old owner survives.
    pub fn reset(&mut self) {
        *self = DoorWatch::default();
    }
}

impl Engine {
    /// A door sensor report: forced entry, the door-ajar timer, and the
    /// start of the quiet period that ends an episode.
    pub(super) fn door_alarms(&mut self, out: &mut Out, was: Option<DoorPosition>) {
        let now = self.now.mono;
        match self.mech.door {
            Some(DoorPosition::Open) => {
                self.door_watch.closed_since = None;
                if was != Some(DoorPosition::Closed) {
                    return;
                }
                let bolt_out = self.mech.bolt == BoltPosition::Extended
                    && !matches!(self.mech.motor, MotorState::Moving { .. });
                let manual = self
                    .door_watch
                    .manual_at
                    .is_some_and(|t| now < t + MANUAL_GRACE);
                if bolt_out && !manual && !self.alarm_active(AlarmKind::DoorForcedOpen) {
                    self.door_watch.siren_until = Some(now + FORCED_SIREN);
                    self.raise_alarm(out, AlarmKind::DoorForcedOpen, Some(FORCED_SIREN));
                    self.snapshot(out, SnapshotReason::Alarm(AlarmKind::DoorForcedOpen));
                    self.say(out, Prompt::DoorForcedOpen);
                }
                if self.door_watch.ajar_due {
                    self.door_ajar(out);
                } else if self.door_watch.ajar_at.is_none()
                    && !self.alarm_active(AlarmKind::DoorAjar)
                {
                    self.door_watch.ajar_at = self.settings.door_ajar.map(|d| now + d);
                }
            }
            Some(DoorPosition::Closed) if self.door_watch.closed_since.is_none() => {
                self.door_watch.closed_since = Some(now);
            }
            Some(DoorPosition::Closed) | None => {}
        }
    }

    /// Raise the door-ajar alarm, once per episode: a prompt at the door
    /// and a notice to the owner, no siren.
    fn door_ajar(&mut self, out: &mut Out) {
        self.door_watch.ajar_due = false;
        if !self.alarm_active(AlarmKind::DoorAjar) {
            self.raise_alarm(out, AlarmKind::DoorAjar, None);
            self.say(out, Prompt::DoorAjar);
        }
    }

    /// The door timers that are due.
    pub(super) fn expire_door(&mut self, out: &mut Out) {
        let now = self.now.mono;
        if self.door_watch.ajar_at.is_some_and(|t| now >= t) {
            self.door_watch.ajar_at = None;
            if self.mech.door_open() {
                self.door_ajar(out);
            } else {
                self.door_watch.ajar_due = true;
            }
        }
        let Some(closed) = self.door_watch.closed_since else {
            return;
        };
        let siren_over = self.door_watch.siren_until.is_none_or(|t| now >= t);
        if now >= closed + DOOR_SETTLE && siren_over {
            // The episode is over: the door stayed shut.
            self.door_watch.closed_since = None;
            self.door_watch.ajar_at = None;
            self.door_watch.ajar_due = false;
            self.door_watch.siren_until = None;
            self.clear_alarm(out, AlarmKind::DoorAjar, false);
            self.clear_alarm(out, AlarmKind::DoorForcedOpen, true);
        }
    }
}
