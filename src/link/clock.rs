//! The daemon's clocks, shared by the engine task and every channel.
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;

use crate::core::Now;

/// The daemon's two clocks, read once per engine call.
///
/// The wall clock is the system's when it comes from a trusted source:
/// `lock.trust_system_clock` (an RTC nobody outside can reach), or systemd
/// reporting it NTP-synchronised (`daemon::timedate`). Otherwise it is
/// unknown until an owner syncs the time from the app (`Action::SetClock`),
/// after which it is kept as an offset from the system clock (and
/// remembered across a daemon restart in the same boot,
/// `daemon::clock_sync`). The engine checks every reading against its
/// trusted-time floor. Clones share the offset and the NTP flag.
#[derive(Debug, Clone)]
pub struct Clock {
    /// Monotonic origin (tokio time, so paused tests control it).
    pub origin: TokioInstant,
    /// Whether the system clock is believed (config `lock.trust_system_clock`).
    pub trust_wall: bool,
    /// Seconds to add to the system clock since an owner set the time;
    /// [`CLOCK_NOT_SET`] until then.
    offset: Arc<AtomicI64>,
    /// systemd says the system clock is NTP-synchronised (a watch, so the
    /// diagnostics follow a change of time source, issue 22).
    ntp_synchronized: Arc<watch::Sender<bool>>,
}

/// Where the wall time the lock trusts comes from now (issue 22:
/// `TimeSource`), in the order [`Clock::now`] prefers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// An owner synced the time from the app (this boot).
    OwnerSync,
    /// systemd reports the system clock NTP-synchronised.
    Ntp,
    /// `lock.trust_system_clock`: an RTC nobody outside can reach.
    RtcTrusted,
    /// No trusted source: the wall time is unknown.
    None,
}

impl TimeSource {
    /// The word on D-Bus and in `latchctl status`.
    pub fn word(self) -> &'static str {
        match self {
            TimeSource::OwnerSync => "owner-sync",
            TimeSource::Ntp => "ntp",
            TimeSource::RtcTrusted => "rtc-trusted",
            TimeSource::None => "none",
        }
    }
}

/// Sentinel of [`Clock::offset`]: no owner has set the time.
const CLOCK_NOT_SET: i64 = i64::MIN;

impl Clock {
    pub fn new(trust_wall: bool) -> Self {
        Clock {
            origin: TokioInstant::now(),
            trust_wall,
            offset: Arc::new(AtomicI64::new(CLOCK_NOT_SET)),
            ntp_synchronized: Arc::new(watch::Sender::new(false)),
        }
    }

    /// What `org.freedesktop.timedate1` says of NTP synchronisation.
    pub fn set_ntp_synchronized(&self, synced: bool) {
        self.ntp_synchronized.send_if_modified(|s| {
            let changed = *s != synced;
            *s = synced;
            changed
        });
    }

    /// Wakes when the NTP flag changes (the engine task republishes the
    /// diagnostics then).
    pub fn ntp_changes(&self) -> watch::Receiver<bool> {
        self.ntp_synchronized.subscribe()
    }

    /// The source [`Clock::now`] takes the wall time from now.
    pub fn source(&self) -> TimeSource {
        if self.owner_offset().is_some() {
            TimeSource::OwnerSync
        } else if *self.ntp_synchronized.borrow() {
            TimeSource::Ntp
        } else if self.trust_wall {
            TimeSource::RtcTrusted
        } else {
            TimeSource::None
        }
    }

    /// Seconds an owner's time sync added to the system clock, if any.
    pub fn owner_offset(&self) -> Option<i64> {
        let o = self.offset.load(Ordering::Relaxed);
        (o != CLOCK_NOT_SET).then_some(o)
    }

    /// Take back an offset remembered from earlier in this boot.
    pub fn restore_owner_offset(&self, offset: i64) {
        self.offset
            .store(offset.max(CLOCK_NOT_SET + 1), Ordering::Relaxed);
    }

    pub fn now(&self) -> Now {
        let mono = TokioInstant::now().duration_since(self.origin).as_millis() as u64;
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs() as i64);
        let offset = self.offset.load(Ordering::Relaxed);
        let wall = if offset != CLOCK_NOT_SET {
            system.map(|s| s.saturating_add(offset))
        } else if self.trust_wall || *self.ntp_synchronized.borrow() {
            system
        } else {
            None
        };
        Now::new(mono, wall)
    }

    /// An owner set the time: from now on the wall clock reads `to` + the
    /// time elapsed since.
    pub fn set(&self, to: crate::core::WallTime) {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let offset = to.0.saturating_sub(system);
        // The sentinel is reserved; an offset of i64::MIN is nonsense anyway.
        self.offset
            .store(offset.max(CLOCK_NOT_SET + 1), Ordering::Relaxed);
    }

    /// The tokio instant of an engine instant (a deadline to sleep until).
    pub fn to_tokio(&self, at: crate::core::Instant) -> TokioInstant {
        self.origin + Duration::from_millis(at.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::WallTime;

    /// Issue 15: stepping the wall clock a day either way (an owner's time
    /// sync here; NTP or `date -s` move `SystemTime` the same way) leaves
    /// the monotonic reading and the deadlines derived from it unchanged.
    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_jump_does_not_move_the_monotonic_clock() {
        let clock = Clock::new(true);
        tokio::time::advance(Duration::from_secs(5)).await;
        let before = clock.now();
        let deadline = clock.to_tokio(before.mono.after(Duration::from_secs(180)));
        let wall = before.wall.expect("trusted system clock").0;
        for by in [86_400, -86_400] {
            clock.set(WallTime(wall + by));
            let after = clock.now();
            assert_eq!(after.mono, before.mono, "jump {by}");
            let w = after.wall.expect("set").0;
            assert!((w - (wall + by)).abs() <= 1, "jump {by}: wall {w}");
            assert_eq!(
                clock.to_tokio(before.mono.after(Duration::from_secs(180))),
                deadline
            );
        }
    }

    /// Issue 22: `TimeSource` names the source `now()` takes the wall time
    /// from, in its order of preference, and "none" when it has none (the
    /// wall time is then unknown); a change of the NTP flag wakes the
    /// diagnostics.
    #[tokio::test(start_paused = true)]
    async fn the_time_source_is_the_one_now_uses() {
        let clock = Clock::new(false);
        let mut changes = clock.ntp_changes();
        assert_eq!(clock.source(), TimeSource::None);
        assert_eq!(clock.now().wall, None);
        clock.set_ntp_synchronized(true);
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert_eq!(clock.source(), TimeSource::Ntp);
        assert!(clock.now().wall.is_some());
        clock.set_ntp_synchronized(true); // no change, no wake-up
        assert!(!changes.has_changed().unwrap());
        clock.set(WallTime(1_800_000_000));
        assert_eq!(clock.source(), TimeSource::OwnerSync);
        clock.set_ntp_synchronized(false);
        assert_eq!(clock.source(), TimeSource::OwnerSync);

        let rtc = Clock::new(true);
        assert_eq!(rtc.source(), TimeSource::RtcTrusted);
        rtc.set_ntp_synchronized(true);
        assert_eq!(rtc.source(), TimeSource::Ntp);
        let words: Vec<_> = [
            TimeSource::Ntp,
            TimeSource::OwnerSync,
            TimeSource::RtcTrusted,
            TimeSource::None,
        ]
        .map(TimeSource::word)
        .into();
        assert_eq!(words, ["ntp", "owner-sync", "rtc-trusted", "none"]);
    }
}
