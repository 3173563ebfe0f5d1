//! Wi-Fi network commissioning through the lock's own Wi-Fi backend.
//!
//! A controller commissioning the lock over BLE hands it the home's Wi-Fi
//! (Network Commissioning: AddOrUpdateWiFiNetwork, ConnectNetwork). The
//! lock joins it the way Improv does, through the backend the board runs
//! (`wpa_supplicant` or NetworkManager, `src/wifi/`), never by driving the
//! radio itself:
//!
//! ```text
//!  ScanNetworks    ─► WifiBackend::scan  ─► NetworkScanInfo (SSID, signal, secured)
//!  ConnectNetwork  ─► WifiBackend::apply ─► Ok │ AuthFailure │ NetworkNotFound │ …
//!  Wi-Fi Network Diagnostics, "connected" ◄── the engine's published Wi-Fi link
//!  (rs-matter's reconnect manager waits for changes of that link)
//! ```
//!
//! The lock's Wi-Fi setting (B-9.7) still rules: with Wi-Fi turned off no
//! controller can turn it on by connecting.
use std::sync::Arc;

use rs_matter::dm::clusters::net_comm::{
    NetCtl, NetCtlError, NetworkScanInfo, NetworkType, WiFiBandEnum, WiFiSecurityBitmap,
    WirelessCreds,
};
use rs_matter::dm::clusters::wifi_diag::{WifiDiag, WirelessDiag};
use rs_matter::dm::networks::NetChangeNotif;
use rs_matter::error::{Error, ErrorCode};
use rs_matter::tlv::Nullable;
use rs_matter::utils::sync::DynBase;
use tokio::sync::watch;

use crate::core::Status;
use crate::wifi::{WifiBackend, WifiError};

impl std::fmt::Debug for LockWifi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockWifi").finish_non_exhaustive()
    }
}

/// The lock's Wi-Fi as rs-matter's network controller and diagnostics.
pub struct LockWifi {
    backend: Arc<dyn WifiBackend>,
    status: watch::Receiver<Status>,
}

impl LockWifi {
    pub fn new(backend: Arc<dyn WifiBackend>, status: watch::Receiver<Status>) -> Self {
        LockWifi { backend, status }
    }
}

/// A backend failure in Network Commissioning's words (the controller
/// shows the matching reason: wrong password, network not found…).
pub fn connect_error(e: &WifiError) -> NetCtlError {
    match e {
        WifiError::WrongPassword { .. } => NetCtlError::AuthFailure,
        WifiError::BadCredentials(_) => NetCtlError::UnsupportedSecurity,
        WifiError::Timeout(_) => NetCtlError::NetworkNotFound,
        WifiError::ConnectFailed { .. } => NetCtlError::OtherConnectionFailure,
        // No backend, no bus, no service, no interface: the lock cannot
        // reach any network at all.
        _ => NetCtlError::Other(ErrorCode::NoNetworkInterface.into()),
    }
}

/// A scanned network's security as the cluster reports it: the backends
/// tell open from secured, not which WPA generation.
pub fn security(secured: bool) -> WiFiSecurityBitmap {
    if secured {
        WiFiSecurityBitmap::WPA_2_PERSONAL
    } else {
        WiFiSecurityBitmap::UNENCRYPTED
    }
}

/// dBm as the cluster's `i8` (a backend reports them in `i16`).
pub fn rssi_i8(dbm: i16) -> i8 {
    dbm.clamp(i16::from(i8::MIN), i16::from(i8::MAX)) as i8
}

impl NetCtl for LockWifi {
    fn net_type(&self) -> NetworkType {
        NetworkType::Wifi
    }

    /// The backend's own connect time-out is 30 s by default.
    fn connect_max_time_seconds(&self) -> u8 {
        45
    }

    /// [`crate::wifi::SCAN_TIMEOUT`] and a margin.
    fn scan_max_time_seconds(&self) -> u8 {
        20
    }

    async fn scan<F>(&self, network: Option<&[u8]>, mut f: F) -> Result<(), NetCtlError>
    where
        F: FnMut(&NetworkScanInfo<'_>) -> Result<(), Error>,
    {
        let found = self.backend.scan().await.map_err(|e| {
            tracing::warn!("Matter: Wi-Fi scan failed: {e}");
            connect_error(&e)
        })?;
        // The backends report neither BSSID nor channel for a summarised
        // network; the cluster's fields say "unknown" (zeros).
        for n in found
            .iter()
            .filter(|n| network.is_none_or(|ssid| ssid == n.ssid.as_slice()))
        {
            f(&NetworkScanInfo::Wifi {
                security: security(n.secured),
                ssid: &n.ssid,
                bssid: &[0; 6],
                channel: 0,
                band: WiFiBandEnum::V2G4,
                rssi: rssi_i8(n.rssi_dbm),
            })?;
        }
        Ok(())
    }

    async fn connect(&self, creds: &WirelessCreds<'_>) -> Result<(), NetCtlError> {
        let WirelessCreds::Wifi { ssid, pass } = creds else {
            return Err(NetCtlError::UnsupportedSecurity);
        };
        if !self.status.borrow().settings.wifi {
            tracing::info!("Matter: not joining Wi-Fi: Wi-Fi is turned off in the lock's settings");
            return Err(NetCtlError::OtherConnectionFailure);
        }
        match self.backend.apply(ssid, pass).await {
            Ok(s) if s.connected => {
                tracing::info!("Matter: joined the Wi-Fi network a controller gave");
                Ok(())
            }
            Ok(_) => Err(NetCtlError::OtherConnectionFailure),
            Err(e) => {
                tracing::warn!("Matter: cannot join the Wi-Fi network a controller gave: {e}");
                Err(connect_error(&e))
            }
        }
    }
}

impl NetChangeNotif for LockWifi {
    /// The link the Wi-Fi monitor publishes through the engine changed.
    async fn wait_changed(&self) {
        let mut status = self.status.clone();
        let link = |s: &Status| (s.wifi_enabled, s.wifi_connected);
        let seen = link(&status.borrow_and_update());
        while status.changed().await.is_ok() {
            if link(&status.borrow_and_update()) != seen {
                return;
            }
        }
        // The lock is shutting down: nothing changes any more.
        core::future::pending::<()>().await
    }
}

impl DynBase for LockWifi {}

impl WirelessDiag for LockWifi {
    fn connected(&self) -> Result<bool, Error> {
        let s = self.status.borrow();
        Ok(s.wifi_enabled && s.wifi_connected)
    }
}

impl WifiDiag for LockWifi {
    fn rssi(&self) -> Result<Nullable<i8>, Error> {
        let s = self.status.borrow();
        Ok(Nullable::new(
            s.wifi_connected
                .then_some(s.wifi_rssi)
                .flatten()
                .map(rssi_i8),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backend_failures_become_the_clusters_reasons() {
        assert!(matches!(
            connect_error(&WifiError::WrongPassword { reason: 15 }),
            NetCtlError::AuthFailure
        ));
        assert!(matches!(
            connect_error(&WifiError::Timeout(Duration::from_secs(30))),
            NetCtlError::NetworkNotFound
        ));
        assert!(matches!(
            connect_error(&WifiError::BadCredentials("x")),
            NetCtlError::UnsupportedSecurity
        ));
        assert!(matches!(
            connect_error(&WifiError::NotConfigured),
            NetCtlError::Other(_)
        ));
    }

    #[test]
    fn scan_fields_in_the_clusters_units() {
        assert_eq!(security(false), WiFiSecurityBitmap::UNENCRYPTED);
        assert_eq!(security(true), WiFiSecurityBitmap::WPA_2_PERSONAL);
        assert_eq!(rssi_i8(-55), -55);
        assert_eq!(rssi_i8(-300), i8::MIN);
        assert_eq!(rssi_i8(200), i8::MAX);
    }
}
