//! Commissioning over BLE: Matter's BTP transport on the lock's BlueZ
//! adapter, only while pairing mode is on (B-5.1).
//!
//! ```text
//!  pairing mode on ──► rs-matter's BlueZ peripheral (bluer): advertise the Matter
//!                      service (discriminator, vendor, product), GATT C1/C2 ─► Btp
//!  pairing mode off ─► the peripheral is dropped: advertisement and GATT service gone
//!  bluetoothd restarts ► the peripheral is served again (pairing mode still on)
//! ```
//!
//! The Btp is chained with the UDP socket in the node's transport, so PASE
//! and the commissioning commands arrive over BLE exactly as over the
//! network. The lock's own GATT application (the owner's app, Improv)
//! keeps running beside it on the same adapter.
use rs_matter::error::Error;
use rs_matter::transport::network::btp::{AdvData, Btp};
use tokio::sync::watch;

use crate::core::Status;

/// The name in the Matter advertisement (short: a legacy advertisement
/// has 31 bytes, most of them taken by the Matter service data).
pub const ADV_NAME: &str = "MT";

/// Advertise and serve BTP on `adapter` whenever pairing mode is on.
pub async fn serve_while_pairing(
    mut status: watch::Receiver<Status>,
    adapter: &str,
    adv: &AdvData,
    btp: &Btp,
) -> Result<(), Error> {
    loop {
        while !status.borrow_and_update().pairing_mode {
            if status.changed().await.is_err() {
                return core::future::pending().await;
            }
        }
        tracing::info!(
            adapter,
            "Matter: BLE commissioning advertised (pairing mode)"
        );
        let ended = async {
            loop {
                if status.changed().await.is_err() || !status.borrow_and_update().pairing_mode {
                    return;
                }
            }
        };
        let peripheral = peripheral(adapter, adv, btp);
        tokio::select! {
            () = ended => {}
            r = peripheral => {
                // BlueZ kept refusing the advertisement: commissioning on
                // the network still works; try again next pairing mode.
                if let Err(e) = r {
                    tracing::warn!("Matter: BLE commissioning stopped: {e:?}");
                }
                while status.borrow().pairing_mode {
                    if status.changed().await.is_err() {
                        return core::future::pending().await;
                    }
                }
            }
        }
        btp.reset();
        tracing::info!(adapter, "Matter: BLE commissioning no longer advertised");
    }
}

/// Pause before serving again after bluetoothd went away or refused.
#[cfg(feature = "board-linux")]
const RETRY: std::time::Duration = std::time::Duration::from_secs(2);
/// Failures in a row, with no bluetoothd restart between them, before
/// BLE commissioning waits for the next pairing mode.
#[cfg(feature = "board-linux")]
const TRIES: u32 = 5;

/// rs-matter's peripheral, served again each time bluetoothd changes
/// hands: its GATT service and advertisement lived in the old bluetoothd,
/// and nothing on our side of them notices it is gone (the peripheral
/// waits for a subscription that can no longer come). Without this a
/// bluetoothd crash during pairing mode took the lock off the air for
/// Matter until the owner held SET again.
#[cfg(feature = "board-linux")]
async fn peripheral(adapter: &str, adv: &AdvData, btp: &Btp) -> Result<(), Error> {
    use crate::link::bus_name::{NameWatch, BLUEZ};
    use rs_matter::transport::network::btp::bluer::run_peripheral;

    let adapter = (!adapter.is_empty()).then_some(adapter);
    let bluez = match zbus::Connection::system().await {
        Ok(system) => NameWatch::watch(&system, BLUEZ).await.ok(),
        Err(_) => None,
    };
    // No system bus to watch: bluer cannot reach BlueZ either, and says so.
    let Some(mut bluez) = bluez else {
        return run_peripheral(adapter, ADV_NAME, adv, btp).await;
    };
    let mut failures = 0;
    loop {
        let registered_with = bluez.current().await;
        tokio::select! {
            r = run_peripheral(adapter, ADV_NAME, adv, btp) => {
                let e = match r {
                    Ok(()) => return Ok(()),
                    Err(e) => e,
                };
                failures += 1;
                if failures >= TRIES {
                    return Err(e);
                }
                tracing::warn!(
                    "Matter: BLE commissioning failed ({e:?}); serving again in {} s",
                    RETRY.as_secs()
                );
            }
            () = bluez.next_restart(registered_with.as_deref()) => {
                failures = 0;
                tracing::warn!("Matter: bluetoothd restarted or stopped; advertising again");
            }
        }
        btp.reset();
        tokio::time::sleep(RETRY).await;
    }
}

/// Builds without BlueZ (the simulated lock) commission on the network only.
#[cfg(not(feature = "board-linux"))]
async fn peripheral(adapter: &str, _adv: &AdvData, _btp: &Btp) -> Result<(), Error> {
    tracing::warn!(
        adapter,
        "Matter: this build has no BlueZ (board-linux); commissioning over BLE is not available"
    );
    core::future::pending().await
}
