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
/// after which it is kept as an offset from the system clock (remembered
/// across a daemon restart in the same boot, and across reboots from the
/// board's RTC, `daemon::clock_sync`). A board whose RTC is trusted and
/// read at start (`lock.rtc`) gives its time as another offset. The engine checks every reading against its
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
    /// Seconds to add to the system clock to read the trusted RTC as it
    /// read at start ([`CLOCK_NOT_SET`]: none).
    rtc: Arc<AtomicI64>,
    /// The board's RTC (`lock.rtc`, e.g. `rtc0`), read at start and at
    /// each owner's sync.
    rtc_name: Option<Arc<str>>,
    /// systemd says the system clock is NTP-synchronised (a watch, so the
    /// diagnostics follow a change of time source, issue 22).
    ntp_synchronized: Arc<watch::Sender<bool>>,
}

/// Where the wall time the lock trusts comes from now (issue 22:
/// `TimeSource`), in the order [`Clock::now`] prefers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// An owner synced the time from the app (this boot, or before a
    /// reboot and carried by the RTC).
    OwnerSync,
    /// systemd reports the system clock NTP-synchronised.
    Ntp,
    /// `lock.trust_system_clock` with `lock.rtc`: the RTC itself, read at
    /// start.
    Rtc,
    /// `lock.trust_system_clock` without an RTC to read: the system clock
    /// as the kernel set it from one.
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
            TimeSource::Rtc => "rtc",
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
            rtc: Arc::new(AtomicI64::new(CLOCK_NOT_SET)),
            rtc_name: None,
            ntp_synchronized: Arc::new(watch::Sender::new(false)),
        }
    }

    /// The board has the RTC `name` (`lock.rtc`).
    pub fn with_rtc(mut self, name: &str) -> Self {
        self.rtc_name = Some(Arc::from(name));
        self
    }

    /// The board's RTC, if it has one.
    pub fn rtc_name(&self) -> Option<&str> {
        self.rtc_name.as_deref()
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
        } else if self.rtc_offset().is_some() {
            TimeSource::Rtc
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

    /// Take back an owner's sync remembered from earlier in this boot (an
    /// offset from the system clock).
    pub fn restore_owner_offset(&self, offset: i64) {
        self.offset
            .store(offset.max(CLOCK_NOT_SET + 1), Ordering::Relaxed);
    }

    /// Take back an owner's sync made before a reboot: the RTC carried it,
    /// and it reads `wall` now.
    pub fn restore_owner_time(&self, wall: i64) {
        self.restore_owner_offset(wall.saturating_sub(system_seconds()));
    }

    /// The trusted RTC reads `rtc` now (at start).
    pub fn adopt_rtc(&self, rtc: i64) {
        let offset = rtc.saturating_sub(system_seconds());
        self.rtc
            .store(offset.max(CLOCK_NOT_SET + 1), Ordering::Relaxed);
    }

    fn rtc_offset(&self) -> Option<i64> {
        let o = self.rtc.load(Ordering::Relaxed);
        (o != CLOCK_NOT_SET).then_some(o)
    }

    pub fn now(&self) -> Now {
        let mono = TokioInstant::now().duration_since(self.origin).as_millis() as u64;
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs() as i64);
        let wall = match self.source() {
            TimeSource::OwnerSync => self
                .owner_offset()
                .and_then(|o| system.map(|s| s.saturating_add(o))),
            TimeSource::Rtc => self
                .rtc_offset()
                .and_then(|o| system.map(|s| s.saturating_add(o))),
            TimeSource::Ntp | TimeSource::RtcTrusted => system,
            TimeSource::None => None,
        };
        Now::new(mono, wall)
    }

    /// An owner set the time: from now on the wall clock reads `to` + the
    /// time elapsed since.
    pub fn set(&self, to: crate::core::WallTime) {
        // The sentinel is reserved; an offset of i64::MIN is nonsense anyway.
        self.restore_owner_offset(to.0.saturating_sub(system_seconds()));
    }

    /// The tokio instant of an engine instant (a deadline to sleep until).
    pub fn to_tokio(&self, at: crate::core::Instant) -> TokioInstant {
        self.origin + Duration::from_millis(at.as_millis())
    }
}

/// The system clock in whole seconds since the epoch (0 before it).
fn system_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::WallTime;

    const T: i64 = 1_900_000_000;

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
            TimeSource::Rtc,
            TimeSource::RtcTrusted,
            TimeSource::None,
        ]
        .map(TimeSource::word)
        .into();
        assert_eq!(words, ["ntp", "owner-sync", "rtc", "rtc-trusted", "none"]);
    }

    /// Issue 17 item 5: a trusted RTC read at start gives the wall time
    /// (the system clock may still be at the build date), NTP takes over
    /// once synchronised, and an owner's sync beats both.
    #[tokio::test(start_paused = true)]
    async fn a_trusted_rtc_gives_the_time_until_ntp_or_an_owner() {
        let clock = Clock::new(false);
        clock.adopt_rtc(T);
        assert_eq!(clock.source(), TimeSource::Rtc);
        let w = clock.now().wall.expect("the RTC's time").0;
        assert!((w - T).abs() <= 1, "{w}");
        clock.set_ntp_synchronized(true);
        assert_eq!(clock.source(), TimeSource::Ntp);
        let system = system_seconds();
        assert!((clock.now().wall.unwrap().0 - system).abs() <= 1);
        clock.set_ntp_synchronized(false);
        clock.restore_owner_time(T + 3600);
        assert_eq!(clock.source(), TimeSource::OwnerSync);
        let w = clock.now().wall.unwrap().0;
        assert!((w - (T + 3600)).abs() <= 1, "{w}");
    }
}
