//! An owner's time sync survives a daemon restart (issue 13 item 3).
//!
//! The runtime keeps an owner's time sync as an offset from the system
//! clock ([`Clock`]). That offset means something only while the system
//! clock keeps running, i.e. within one boot: a restart of the daemon
//! (crash, update) keeps it; a reboot (power cut, no RTC: the system clock
//! starts from the build date) drops it, and the lock fails closed for
//! time-windowed credentials until NTP or the owner sets the time again.
//! The engine's trusted-time floor (persisted by the engine) is what
//! survives a reboot: no reading behind it is believed either way.
//!
//! ```text
//!  SetClock ─► clock.set ─► store thread: meta "clock.owner_sync" = {boot_id, offset}
//!  start    ─► read (daemon/state.rs, with the store) ─► same boot_id?
//!                                                       ─► clock.restore_owner_offset(offset)
//! ```
use serde::{Deserialize, Serialize};

use crate::link::Clock;
use crate::store::{Store, StoreHandle};

const META: &str = "clock.owner_sync";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// An owner's time sync as stored: the offset and the boot it was made in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remembered {
    boot_id: String,
    offset: i64,
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string(BOOT_ID)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Store the clock's owner offset, tied to this boot (on the store's
/// writer thread).
pub async fn remember(store: &StoreHandle, clock: &Clock) {
    let (Some(offset), Some(boot_id)) = (clock.owner_offset(), boot_id()) else {
        return;
    };
    let value = match serde_json::to_vec(&Remembered { boot_id, offset }) {
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

/// Take back an owner's time sync made earlier in this boot.
pub fn restore(remembered: Option<&Remembered>, clock: &Clock) {
    let Some(r) = remembered else {
        return;
    };
    if boot_id().as_deref() == Some(r.boot_id.as_str()) {
        tracing::info!("the owner's time sync of this boot still holds");
        clock.restore_owner_offset(r.offset);
    } else {
        tracing::info!(
            "the owner's time sync was made before a reboot; the wall clock is unknown until NTP or the owner sets it"
        );
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
        restore(read(&store).as_ref(), &again);
        let wall = again.now().wall.expect("restored");
        assert!((wall.0 - T).abs() < 5, "{wall:?}");
        // The same record from another boot is not taken back.
        let offset = clock.owner_offset().unwrap();
        let other = serde_json::to_vec(&Remembered {
            boot_id: "another-boot".into(),
            offset,
        })
        .unwrap();
        store.put_meta(META, &other).unwrap();
        let after_reboot = Clock::new(false);
        restore(read(&store).as_ref(), &after_reboot);
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
}
