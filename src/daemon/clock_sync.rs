//! An owner's time sync survives a daemon restart (issue 13 item 3) and,
//! on a board with an RTC, a reboot (issue 17 item 5).
//!
//! The runtime keeps an owner's time sync as an offset from the system
//! clock ([`Clock`]). That offset means something only while the system
//! clock keeps running, i.e. within one boot: a restart of the daemon
//! (crash, update) keeps it; a reboot (power cut; the system clock starts
//! from the build date) drops it. A board's battery-backed RTC keeps
//! counting through both, right or wrong, so the sync is also stored as
//! an offset from the RTC's reading at that moment: after a reboot the
//! RTC's reading plus that offset is the owner's time again. An RTC that
//! reads less than it did at the sync was reset or rolled back: the sync
//! is not believed, and the lock fails closed for time-windowed
//! credentials until NTP or the owner sets the time again. The engine's
//! trusted-time floor (persisted by the engine) is checked against every
//! reading either way.
//!
//! ```text
//!  SetClock ─► clock.set ─► read the RTC ─► store: meta "clock.owner_sync" = {boot_id, offset, rtc?}
//!  start ─► read the RTC (lock.rtc) ─► same boot_id?      ─► clock.restore_owner_offset(offset)
//!                                  └─► RTC ≥ its reading at the sync? ─► clock.restore_owner_time(rtc + offset)
//!                                  └─► trust_system_clock and the RTC valid? ─► clock.adopt_rtc(rtc)
//! ```
use serde::{Deserialize, Serialize};

use crate::link::rtc::{self, RtcError};
use crate::link::Clock;
use crate::store::{Store, StoreHandle};

const META: &str = "clock.owner_sync";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// An owner's time sync as stored: the offset and the boot it was made in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remembered {
    boot_id: String,
    offset: i64,
    /// The RTC at the sync (absent: no RTC, or stored by an older build).
    #[serde(default)]
    rtc: Option<RtcAnchor>,
}

/// The owner's time as an offset from the board's RTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcAnchor {
    /// What the RTC read at the sync.
    reading: i64,
    /// The owner's time minus the RTC's reading.
    offset: i64,
}

/// What the board's RTC read at start: `None` when it has none
/// (`lock.rtc` empty).
pub type RtcReading = Option<Result<i64, RtcError>>;

/// Read the board's RTC at start, saying why a reading is not believed.
pub fn read_rtc(name: Option<&str>) -> RtcReading {
    let reading = rtc::read(name?);
    if let Err(e) = &reading {
        tracing::warn!("{e}: the lock does not take its time from the RTC");
    }
    Some(reading)
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string(BOOT_ID)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Store the clock's owner offset, tied to this boot and to the board's
/// RTC (on the store's writer thread).
pub async fn remember(store: &StoreHandle, clock: &Clock) {
    let (Some(offset), Some(boot_id)) = (clock.owner_offset(), boot_id()) else {
        return;
    };
    let rtc = match clock.rtc_name().map(str::to_owned) {
        Some(name) => {
            let reading = tokio::task::spawn_blocking(move || rtc::read(&name)).await;
            match reading {
                Ok(Ok(reading)) => clock.now().wall.map(|wall| RtcAnchor {
                    reading,
                    offset: wall.0.saturating_sub(reading),
                }),
                Ok(Err(e)) => {
                    tracing::warn!("{e}: the owner's time sync lasts until the next reboot");
                    None
                }
                Err(e) => {
                    tracing::warn!("reading the RTC failed: {e}");
                    None
                }
            }
        }
        None => None,
    };
    let value = match serde_json::to_vec(&Remembered {
        boot_id,
        offset,
        rtc,
    }) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("cannot encode the owner's time sync: {e}");
            return;
        }
    };
    let stored = store.call(move |s| s.put_meta(META, &value)).await;
    if let Err(e) = stored.and_then(|r| r) {
        // The time stays set until the daemon restarts.
        tracing::warn!("cannot remember the owner's time sync: {e}");
    }
}

/// The owner's time sync the store remembers, if any (read once at start,
/// with the state).
pub fn read(store: &Store) -> Option<Remembered> {
    let stored = match store.get_meta(META) {
        Ok(Some(v)) => v,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!("cannot read the owner's time sync: {e}");
            return None;
        }
    };
    let r = serde_json::from_slice::<Remembered>(&stored);
    if r.is_err() {
        tracing::warn!("the remembered owner's time sync is unreadable; ignored");
    }
    r.ok()
}

/// Where the wall time comes from at start, before NTP says anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The owner's sync of this boot: its offset from the system clock.
    SameBoot(i64),
    /// The owner's sync before a reboot, carried by the RTC: the time now.
    CarriedByRtc(i64),
    /// `trust_system_clock`: the RTC's own reading.
    Rtc(i64),
    /// Nothing remembered or believed.
    Nothing,
}

/// Decide [`Restored`] from what is remembered, this boot's id, the RTC's
/// reading now and whether the board vouches for its RTC.
pub fn decide(
    remembered: Option<&Remembered>,
    this_boot: Option<&str>,
    rtc_now: Option<i64>,
    trust_rtc: bool,
) -> Restored {
    if let Some(r) = remembered {
        if this_boot == Some(r.boot_id.as_str()) {
            return Restored::SameBoot(r.offset);
        }
        if let (Some(anchor), Some(now)) = (r.rtc, rtc_now) {
            if now >= anchor.reading {
                return Restored::CarriedByRtc(now.saturating_add(anchor.offset));
            }
            tracing::warn!(
                "the RTC reads less than at the owner's time sync: it was reset or set back; the sync is not believed"
            );
        }
    }
    match rtc_now {
        Some(now) if trust_rtc => Restored::Rtc(now),
        _ => Restored::Nothing,
    }
}

/// Take back an owner's time sync made earlier in this boot, or before a
/// reboot when the RTC carried it, or the trusted RTC's time.
pub fn restore(remembered: Option<&Remembered>, rtc: &RtcReading, trust_rtc: bool, clock: &Clock) {
    let rtc_now = rtc.as_ref().and_then(|r| r.as_ref().ok().copied());
    match decide(remembered, boot_id().as_deref(), rtc_now, trust_rtc) {
        Restored::SameBoot(offset) => {
            tracing::info!("the owner's time sync of this boot still holds");
            clock.restore_owner_offset(offset);
        }
        Restored::CarriedByRtc(wall) => {
            tracing::info!("the owner's time sync before the reboot holds: the RTC kept counting");
            clock.restore_owner_time(wall);
        }
        Restored::Rtc(now) => {
            tracing::info!("the wall clock is the board's RTC");
            clock.adopt_rtc(now);
        }
        Restored::Nothing if remembered.is_some() => tracing::info!(
            "the owner's time sync was made before a reboot; the wall clock is unknown until NTP or the owner sets it"
        ),
        Restored::Nothing => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::WallTime;
    use crate::store::StoreOptions;

    const T: i64 = 1_800_000_000;

    #[tokio::test]
    async fn an_owner_sync_is_remembered_within_one_boot_only() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _key) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let (handle, thread) = StoreHandle::spawn(store).unwrap();
        let clock = Clock::new(false);
        assert_eq!(clock.now().wall, None, "untrusted and unsynced: unknown");
        clock.set(WallTime(T));
        remember(&handle, &clock).await;
        drop(handle);
        thread.stop();
        let (mut store, _key) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        // A daemon restart in the same boot: the time is still known.
        let again = Clock::new(false);
        restore(read(&store).as_ref(), &None, false, &again);
        let wall = again.now().wall.expect("restored");
        assert!((wall.0 - T).abs() < 5, "{wall:?}");
        // The same record from another boot is not taken back.
        let offset = clock.owner_offset().unwrap();
        let other = serde_json::to_vec(&Remembered {
            boot_id: "another-boot".into(),
            offset,
            rtc: None,
        })
        .unwrap();
        store.put_meta(META, &other).unwrap();
        let after_reboot = Clock::new(false);
        restore(read(&store).as_ref(), &None, false, &after_reboot);
        assert_eq!(after_reboot.now().wall, None);
    }

    #[test]
    fn an_ntp_synchronised_system_clock_is_a_trusted_source() {
        let clock = Clock::new(false);
        assert_eq!(clock.now().wall, None);
        clock.set_ntp_synchronized(true);
        assert!(clock.now().wall.is_some());
        clock.set_ntp_synchronized(false);
        assert_eq!(clock.now().wall, None);
    }

    /// Issue 17 item 5: after a reboot the RTC carries the owner's sync
    /// (its reading then plus the time it counted since), unless it reads
    /// less than at the sync (reset, battery out, set back); a board that
    /// vouches for its RTC takes its time; a board that does not, and has
    /// no sync, knows no time.
    #[test]
    fn the_rtc_carries_an_owner_sync_across_a_reboot_unless_it_went_back() {
        let synced = Remembered {
            boot_id: "boot-a".into(),
            offset: 12_345,
            rtc: Some(RtcAnchor {
                reading: 1_000_000,
                offset: T - 1_000_000,
            }),
        };
        let r = Some(&synced);
        assert_eq!(
            decide(r, Some("boot-a"), Some(1_000_500), false),
            Restored::SameBoot(12_345)
        );
        assert_eq!(
            decide(r, Some("boot-b"), Some(1_000_500), false),
            Restored::CarriedByRtc(T + 500)
        );
        assert_eq!(
            decide(r, Some("boot-b"), Some(1_000_000), false),
            Restored::CarriedByRtc(T)
        );
        // Set back (or reset to its epoch) since: the sync is void, and
        // only a board that vouches for its RTC takes its reading.
        assert_eq!(
            decide(r, Some("boot-b"), Some(999_999), false),
            Restored::Nothing
        );
        assert_eq!(
            decide(r, Some("boot-b"), Some(999_999), true),
            Restored::Rtc(999_999)
        );
        // No RTC reading (none, or it lost power): nothing after a reboot.
        assert_eq!(decide(r, Some("boot-b"), None, true), Restored::Nothing);
        // A sync stored by an older build (no RTC anchor).
        let old = Remembered {
            rtc: None,
            ..synced.clone()
        };
        assert_eq!(
            decide(Some(&old), Some("boot-b"), Some(1_000_500), false),
            Restored::Nothing
        );
        assert_eq!(
            decide(None, Some("boot-b"), Some(T), true),
            Restored::Rtc(T)
        );
        assert_eq!(
            decide(None, Some("boot-b"), Some(T), false),
            Restored::Nothing
        );
        // The stored form without `rtc` (an older build's) still reads.
        let json = br#"{"boot_id":"boot-a","offset":5}"#;
        let parsed: Remembered = serde_json::from_slice(json).unwrap();
        assert_eq!(parsed.rtc, None);
    }
}
