//! Bringing up the radios: Wi-Fi state (the `[wifi]` backend, its
//! monitor) and the BLE GATT application (`[ble]`).
//!
//! ```text
//!  [wifi] backend ─► wpa_supplicant / NetworkManager on the system bus
//!        │             (unreachable: logged, NoWifi — the lock works offline)
//!        ├─► wifi::monitor::run   setting ⇄ radio, link → Input::Wifi
//!        └─► Reporting wrapper    an Improv join is reported at once
//!  [ble] enabled ─► ble::gatt::run(DaemonLink, Reporting, lock key, verification code)
//!                   (board-linux builds; re-registers after bluetoothd restarts)
//! ```
//!
//! Neither failing stops the lock: keypad, biometrics and the mechanical
//! key do not need a radio.
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Clock, Published};
use crate::ble::crypto::StaticKeypair;
use crate::board::InputSender;
use crate::config::Config;
use crate::core::AppResult;
use crate::store::Store;
use crate::wifi::monitor::{self, Reporter, Reporting};
use crate::wifi::{BackendKind, NoWifi, WifiBackend};

/// What the radios need from the daemon.
pub struct WirelessContext {
    pub serial: String,
    pub lock_key: Arc<StaticKeypair>,
    /// The verification code owner pairing accepts now (it rotates).
    pub code: crate::ble::pairing::CurrentCode,
    pub inputs: InputSender,
    pub replies: broadcast::Sender<(u64, AppResult)>,
    pub published: watch::Receiver<Published>,
    pub store: Arc<Mutex<Store>>,
    pub clock: Clock,
}

/// The running radio tasks; each ends when the shutdown token is cancelled.
#[derive(Default)]
pub struct Wireless {
    pub wifi: Option<JoinHandle<()>>,
    pub ble: Option<JoinHandle<()>>,
}

impl Wireless {
    /// Wait for both tasks to end (after the token was cancelled).
    pub async fn join(self) {
        for task in [self.wifi, self.ble].into_iter().flatten() {
            let _ = task.await;
        }
    }
}

/// Start the Wi-Fi monitor and the BLE service as configured.
pub async fn start(config: &Config, ctx: WirelessContext, shutdown: CancellationToken) -> Wireless {
    let reporter = Reporter::new(ctx.inputs.clone());
    let backend: Arc<dyn WifiBackend> = match config.wifi.backend {
        BackendKind::None => Arc::new(NoWifi),
        _ => match zbus::Connection::system().await {
            Ok(bus) => Arc::from(crate::wifi::from_config(&config.wifi, bus)),
            Err(e) => {
                tracing::error!(
                    "Wi-Fi: cannot reach the system bus for {:?}: {e}; Wi-Fi state and provisioning are off",
                    config.wifi.backend
                );
                Arc::new(NoWifi)
            }
        },
    };
    let wifi = (config.wifi.backend != BackendKind::None).then(|| {
        tokio::spawn(monitor::run(
            backend.clone(),
            reporter.clone(),
            ctx.published.clone(),
            |p: &Published| p.engine.wifi_enabled,
            monitor::DEFAULT_PERIOD,
            shutdown.clone(),
        ))
    });
    let provisioning: Arc<dyn WifiBackend> = Arc::new(Reporting {
        inner: backend,
        reporter,
    });
    let ble = if config.ble.enabled {
        start_ble(config, ctx, provisioning, shutdown)
    } else {
        None
    };
    Wireless { wifi, ble }
}

#[cfg(feature = "board-linux")]
fn start_ble(
    config: &Config,
    ctx: WirelessContext,
    wifi: Arc<dyn WifiBackend>,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    use crate::ble::gatt::{self, GattConfig, GattDeps};
    use crate::ble::improv::DeviceInfo;
    use crate::ble::service::{DaemonLink, BLE_ID_BASE};
    let local_name = gatt::local_name(&ctx.serial);
    let refusal_limit = crate::remote::limit::RefusalLimiter::new(ctx.clock.now().mono);
    let link = DaemonLink {
        inputs: ctx.inputs,
        replies: ctx.replies,
        published: ctx.published,
        store: ctx.store,
        clock: ctx.clock,
        id_base: BLE_ID_BASE,
        next_id: Default::default(),
        refusal_log_limit: Some(std::sync::Mutex::new(refusal_limit)),
    };
    let deps = GattDeps {
        link: Arc::new(link),
        wifi,
        lock_key: ctx.lock_key,
        code: ctx.code,
        device_info: DeviceInfo {
            firmware: "latchd".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hardware: config.board.name().into(),
            device_name: local_name.clone(),
        },
    };
    let gatt_config = GattConfig {
        adapter: config.ble.adapter().map(str::to_owned),
        local_name,
    };
    Some(tokio::spawn(async move {
        if let Err(e) = gatt::run(gatt_config, deps, shutdown).await {
            tracing::error!("BLE service stopped: {e}");
        }
    }))
}

#[cfg(not(feature = "board-linux"))]
fn start_ble(
    _config: &Config,
    _ctx: WirelessContext,
    _wifi: Arc<dyn WifiBackend>,
    _shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    tracing::warn!(
        "BLE: this build has no BlueZ client (built without the `board-linux` feature); \
         app pairing and Improv Wi-Fi are not available"
    );
    None
}
