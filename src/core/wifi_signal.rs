//! Weak Wi-Fi as a state (B-10.7: "the device reports when Wi-Fi is
//! weak"), not just a number in the status.
//!
//! ```text
//!  Wifi{connected, rssi < weak_dbm}            ─► check_at = now + WEAK_HOLD
//!     └─ still below at check_at ─► weak: event + owner notice (≤ 1 per NOTICE_GAP)
//!  weak, rssi ≥ weak_dbm + HYSTERESIS_DB       ─► check_at = now + WEAK_HOLD
//!     └─ still above at check_at ─► recovered: event
//!  disconnected ─► the episode ends without an event (offline is its own state)
//! ```
//!
//! The Wi-Fi monitor sends a reading only when it changes, so a signal
//! that stays weak sends nothing more: the hold is a deadline of the
//! engine, not a count of readings. The hold and the hysteresis keep a
//! signal wavering around the line (a door, a microwave oven) from
//! flapping the state; the notice gap keeps a lock at the edge of range
//! from telling the owner every few minutes.
use core::time::Duration;

use super::action::{Action, Notice};
use super::engine::{Engine, Out};
use super::event::EventKind;
use super::input::WifiStatus;
use super::time::Instant;

/// A reading must stay on the other side of the line this long.
pub const WEAK_HOLD: Duration = Duration::from_secs(5 * 60);
/// Recovery needs this many dB above the line.
pub const HYSTERESIS_DB: i16 = 5;
/// At most one weak-signal notice to the owner this often.
pub const NOTICE_GAP: Duration = Duration::from_secs(6 * 3600);
/// Below this the signal is weak by default (dBm): about where a 2.4 GHz
/// link starts to lose MQTT keep-alives and video frames.
pub const DEFAULT_WEAK_DBM: i16 = -75;

#[derive(Debug, Default)]
pub(super) struct SignalWatch {
    pub weak: bool,
    /// The state flips then if the readings stay where they are.
    check_at: Option<Instant>,
    last_notice: Option<Instant>,
}

impl SignalWatch {
    pub fn next_deadline(&self) -> Option<Instant> {
        self.check_at
    }
}

impl Engine {
    /// A new Wi-Fi reading.
    pub(super) fn on_wifi(&mut self, w: WifiStatus) {
        self.wifi = Some(w);
        let now = self.now.mono;
        let line = self.config.weak_wifi_dbm;
        let watch = &mut self.signal;
        if !w.connected {
            watch.weak = false;
            watch.check_at = None;
            return;
        }
        let across = if watch.weak {
            w.rssi >= line.saturating_add(HYSTERESIS_DB)
        } else {
            w.rssi < line
        };
        match (across, watch.check_at) {
            (true, None) => watch.check_at = Some(now + WEAK_HOLD),
            (false, Some(_)) => watch.check_at = None,
            _ => {}
        }
    }

    /// The hold ended: flip the state if the signal stayed across.
    pub(super) fn expire_signal(&mut self, out: &mut Out) {
        let now = self.now.mono;
        if self.signal.check_at.is_none_or(|t| now < t) {
            return;
        }
        self.signal.check_at = None;
        let Some(w) = self.wifi.filter(|w| w.connected) else {
            return;
        };
        self.signal.weak = !self.signal.weak;
        if self.signal.weak {
            self.log(out, EventKind::WifiWeak { rssi: w.rssi });
            if self
                .signal
                .last_notice
                .is_none_or(|t| now >= t + NOTICE_GAP)
            {
                self.signal.last_notice = Some(now);
                out.push(Action::Notify(Notice::WifiWeak { rssi: w.rssi }));
            }
        } else {
            self.log(out, EventKind::WifiRecovered { rssi: w.rssi });
        }
    }
}
