//! The daemon's clocks, shared by the engine task and every channel.
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant as TokioInstant;

use crate::core::Now;

/// The daemon's two clocks, read once per engine call.
///
/// The wall clock is the system's when `lock.trust_system_clock` says it
/// is right (NTP or an RTC); otherwise it is unknown until an owner syncs
/// the time from the app (`Action::SetClock`), after which it is kept as
/// an offset from the system clock. Clones share the offset.
#[derive(Debug, Clone)]
pub struct Clock {
    /// Monotonic origin (tokio time, so paused tests control it).
    pub origin: TokioInstant,
    /// Whether the system clock is believed (config `lock.trust_system_clock`).
    pub trust_wall: bool,
    /// Seconds to add to the system clock since an owner set the time;
    /// [`CLOCK_NOT_SET`] until then.
    offset: Arc<AtomicI64>,
}

/// Sentinel of [`Clock::offset`]: no owner has set the time.
const CLOCK_NOT_SET: i64 = i64::MIN;

impl Clock {
    pub fn new(trust_wall: bool) -> Self {
        Clock {
            origin: TokioInstant::now(),
            trust_wall,
            offset: Arc::new(AtomicI64::new(CLOCK_NOT_SET)),
        }
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
        } else if self.trust_wall {
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
