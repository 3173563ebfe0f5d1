//! The lock's trusted wall time as the node's clock: Time
//! Synchronization's `UTCTime` on endpoint 0 (rs-matter serves the cluster
//! against its own clock) and the time CASE checks certificates against.
//!
//! ```text
//!  engine Status.wall_time (trusted: NTP-synchronised, owner sync, floor)
//!      │ on every status change, when known
//!      ▼
//!  rs-matter Rtc::set_utc_time(µs since 2000-01-01 UTC, Seconds, Unknown)
//!      ─► UTCTime / Granularity / TimeSource read by controllers
//! ```
//!
//! Decision: the cluster's mandatory `SetUTCTime` is answered by rs-matter
//! into the node's clock only. It never sets the lock's own clock, which
//! opens and closes the time windows and schedules of every credential: a
//! fabric reachable from far away must not move it (as for the owner app's
//! clock command, which Matter may not send, `core::matter`). While the
//! lock knows its time, the next status change puts it back.
use rs_matter::dm::clusters::decl::time_synchronization::{GranularityEnum, TimeSourceEnum};
use tokio::sync::watch;

use super::schedule::MATTER_EPOCH;
use crate::core::{Status, WallTime};

/// Matter's `epoch-us` (microseconds since 2000-01-01 00:00 UTC) for a
/// wall time; `None` before 2000.
pub fn matter_utc_us(t: WallTime) -> Option<u64> {
    u64::try_from(t.0.checked_sub(MATTER_EPOCH)?)
        .ok()?
        .checked_mul(1_000_000)
}

/// Follow the engine's wall time into the node's clock (`set` takes
/// Matter epoch microseconds) for as long as the lock publishes its
/// status.
pub async fn follow_wall_time(mut status: watch::Receiver<Status>, set: impl Fn(u64)) {
    loop {
        // Every change, also with the same second: a controller's
        // SetUTCTime in between is overwritten at the next one.
        if let Some(us) = status.borrow_and_update().wall_time.and_then(matter_utc_us) {
            set(us);
        }
        if status.changed().await.is_err() {
            return core::future::pending().await;
        }
    }
}

/// What the node reports about its clock: whole seconds from the engine
/// (rs-matter records one step coarser, as the spec asks), and a source
/// Matter has no better word for (NTP, the owner's phone or a trusted RTC).
pub const GRANULARITY: GranularityEnum = GranularityEnum::SecondsGranularity;
pub const SOURCE: TimeSourceEnum = TimeSourceEnum::Unknown;

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn wall_time_in_matter_microseconds() {
        assert_eq!(matter_utc_us(WallTime(MATTER_EPOCH)), Some(0));
        assert_eq!(
            matter_utc_us(WallTime(1_795_500_000)),
            Some((1_795_500_000 - MATTER_EPOCH) as u64 * 1_000_000)
        );
        assert_eq!(matter_utc_us(WallTime(0)), None, "1970 is before 2000");
    }

    /// Each status change with a known wall time sets the node's clock;
    /// an unknown time leaves it alone.
    #[tokio::test(flavor = "current_thread")]
    async fn the_node_clock_follows_the_engines_known_wall_time() {
        use crate::core::{Engine, EngineConfig, Now};
        let engine = Engine::new(
            EngineConfig::for_tests("LD-1"),
            crate::core::types::Persisted::default(),
            Now::new(0, None),
        );
        let (tx, rx) = watch::channel(engine.status());
        let seen = RefCell::new(Vec::new());
        let follow = follow_wall_time(rx, |us| seen.borrow_mut().push(us));
        tokio::pin!(follow);
        fn poll<F: core::future::Future<Output = ()>>(f: &mut core::pin::Pin<&mut F>) -> bool {
            futures_util::FutureExt::now_or_never(f.as_mut()).is_none()
        }
        assert!(poll(&mut follow));
        assert!(seen.borrow().is_empty(), "unknown time: nothing set");
        let t = WallTime(1_795_500_000);
        tx.send_modify(|s| s.wall_time = Some(t));
        assert!(poll(&mut follow));
        tx.send_modify(|s| s.strikes = 1); // another change, same time
        assert!(poll(&mut follow));
        tx.send_modify(|s| s.wall_time = None);
        assert!(poll(&mut follow));
        tx.send_modify(|s| s.wall_time = Some(WallTime(t.0 + 60)));
        assert!(poll(&mut follow));
        assert_eq!(
            *seen.borrow(),
            vec![
                matter_utc_us(t).unwrap(),
                matter_utc_us(t).unwrap(),
                matter_utc_us(t).unwrap() + 60_000_000
            ]
        );
    }
}
