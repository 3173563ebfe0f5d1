//! Commissioning over BLE: Matter's BTP transport on the lock's BlueZ
//! adapter, only while pairing mode is on (B-5.1).
//!
//! ```text
//!  pairing mode on ──► rs-matter's BlueZ peripheral (bluer): advertise the Matter
//!                      service (discriminator, vendor, product), GATT C1/C2 ─► Btp
//!  pairing mode off ─► the peripheral is dropped: advertisement and GATT service gone
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
                // BlueZ went away or refused the advertisement: commissioning
                // on the network still works; try again next pairing mode.
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

#[cfg(feature = "board-linux")]
async fn peripheral(adapter: &str, adv: &AdvData, btp: &Btp) -> Result<(), Error> {
    let adapter = (!adapter.is_empty()).then_some(adapter);
    rs_matter::transport::network::btp::bluer::run_peripheral(adapter, ADV_NAME, adv, btp).await
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
