//! Start-up step 5: the services, each reaching the lock only through the
//! [`Link`].
//!
//! ```text
//!   [dbus] / --dbus ─► dbus::serve(LockBackend(Link), diagnostics, events)   (technicians)
//!   [wifi] backend ─► wpa_supplicant / NetworkManager on the system bus
//!        │             (unreachable: logged, NoWifi — the lock works offline)
//!        ├─► wifi::monitor::run   setting ⇄ radio, link → Input::Wifi
//!        └─► Reporting wrapper    an Improv join is reported at once
//!   [ble] enabled ─► ble::gatt::run(Link with a refusal limit, Wi-Fi, lock key, code)
//!                    (board-linux builds; re-registers after bluetoothd restarts)
//!   [remote] ─► remote::run(Link, lock key, TLS)          (MQTT; pauses while Wi-Fi is off)
//!   camera ──► CameraRig::serve: motion trigger, [video] stream
//!   [lock] timedate_bus ─► timedate: NTPSynchronized ─► Clock (a trusted time source)
//!   [matter] enabled ─► matter::LinkPort(Link) ─► the node's thread (feature `matter`;
//!                       Wi-Fi network commissioning over the [wifi] backend)
//! ```
//!
//! None of them failing stops the lock: keypad, biometrics and the
//! mechanical key need no radio, and diagnostics are for technicians.
//! Only a bad `[video]` table fails the start (a stream that is not where
//! the config says would be a silent surprise).
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::camera::CameraRig;
use super::state::State;
use super::DaemonError;
use crate::config::Config;
use crate::dbus::{BusChoice, DbusHandle, Diagnostics, LockBackend};
use crate::link::bus_name::NameWatch;
use crate::link::{BleHealth, Clock, Link, Published};
use crate::remote::{RemoteContext, RemoteStats};
use crate::wifi::monitor::{self, Reporter, Reporting};
use crate::wifi::{BackendKind, NoWifi, WifiBackend};

/// The running services; each task ends when the shutdown token is
/// cancelled (`daemon::shutdown` waits for them in this order).
#[derive(Debug, Default)]
pub struct Services {
    /// The Wi-Fi monitor (when a `[wifi]` backend is configured).
    pub wifi: Option<JoinHandle<()>>,
    /// The BLE GATT application (board-linux builds, `[ble]` enabled).
    pub ble: Option<JoinHandle<()>>,
    /// MQTT remote access (when `[remote]` names a broker).
    pub remote: Option<JoinHandle<()>>,
    /// Its counters (tests, diagnostics).
    pub remote_stats: Option<Arc<RemoteStats>>,
    /// The camera's capture, motion trigger and video stream.
    pub video: Option<JoinHandle<()>>,
    /// The D-Bus diagnostics service.
    pub dbus: Option<DbusHandle>,
    /// The NTP-synchronisation watcher (`[lock] timedate_bus`).
    pub timedate: Option<JoinHandle<()>>,
    /// The update task (RAUC, `[update] bus`).
    pub update: Option<JoinHandle<()>>,
}

/// Issue 20: the update task, when `[update] bus` names RAUC's bus.
pub fn update(
    config: &Config,
    state_dir: &std::path::Path,
    link: &Link,
    cmds: Option<tokio::sync::mpsc::UnboundedReceiver<crate::core::action::UpdateCmd>>,
    shutdown: &CancellationToken,
) -> Option<JoinHandle<()>> {
    let bus = config.update.bus()?;
    let cmds = cmds?;
    let mut update = config.update.clone();
    // The task resolves `stream:` sources in the same directory the link
    // writes them to.
    update.stream_dir = Some(update.stream_dir(state_dir));
    Some(crate::update::spawn(
        update,
        bus,
        link.clone(),
        cmds,
        shutdown.clone(),
    ))
}

/// Issue 20: where a bundle streamed over BLE goes, on a lock with RAUC.
/// A directory that cannot be made leaves streaming off (said in the
/// log); URL updates still work.
pub fn bundle_stream(
    config: &Config,
    state_dir: &std::path::Path,
) -> Option<Arc<dyn crate::app::bundle::BundleStore>> {
    config.update.bus()?;
    let dir = config.update.stream_dir(state_dir);
    match crate::update::stream::BundleStream::open(
        &dir,
        config.update.stream_max_bytes(),
        crate::store::StoreOptions::default().reserve_bytes,
    ) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            tracing::error!(dir = %dir.display(), "update: no bundle streaming: {e}");
            None
        }
    }
}

/// Factory reset: the streamed bundles go with the household (only the
/// stream's own files: the directory may be a shared one).
pub fn forget_streamed_bundles(config: &Config, state_dir: &std::path::Path) {
    crate::update::stream::BundleStream::remove_files(&config.update.stream_dir(state_dir));
}

/// Issue 13 item 3: whether systemd says the system clock is
/// NTP-synchronised (`org.freedesktop.timedate1`) feeds the clock, unless
/// `[lock] timedate_bus = "off"`.
pub fn timedate(
    config: &Config,
    clock: &Clock,
    shutdown: &CancellationToken,
) -> Option<JoinHandle<()>> {
    let bus = config.lock.timedate_bus()?;
    Some(super::timedate::spawn(bus, clock.clone(), shutdown.clone()))
}

/// D-Bus diagnostics on `bus`. A bus that cannot be reached is logged:
/// a lock that refused to run without diagnostics would be worse.
pub async fn dbus(
    bus: Option<BusChoice>,
    link: &Link,
    diagnostics: watch::Receiver<Diagnostics>,
) -> Option<DbusHandle> {
    let bus = bus?;
    let backend = Arc::new(LockBackend::new(link.clone(), diagnostics.clone()));
    match crate::dbus::serve(bus, diagnostics, backend, link.events()).await {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!("D-Bus diagnostics not available: {e}");
            None
        }
    }
}

/// The Wi-Fi monitor and the BLE service, as configured; and the Wi-Fi
/// backend provisioning goes through (Improv, Matter's network
/// commissioning) when a `[wifi]` backend is configured.
pub async fn radios(
    config: &Config,
    state: &State,
    link: &Link,
    shutdown: &CancellationToken,
) -> (
    Option<JoinHandle<()>>,
    Option<JoinHandle<()>>,
    Option<Arc<dyn WifiBackend>>,
) {
    let reporter = Reporter::new(link.inputs().clone()).with_health(link.health().clone());
    let bus = wifi_bus(config).await;
    let backend = wifi_backend(config, bus.as_ref());
    let wifi = match (config.wifi.backend.service_name(), &bus) {
        (Some(service), Some(bus)) => {
            let arrivals = arrivals_of(bus, service, shutdown.clone()).await;
            Some(tokio::spawn(monitor::run(
                backend.clone(),
                reporter.clone(),
                link.published(),
                |p: &Published| p.engine.wifi_enabled,
                monitor::DEFAULT_PERIOD,
                arrivals,
                shutdown.clone(),
            )))
        }
        _ => None,
    };
    let provisioning: Arc<dyn WifiBackend> = Arc::new(Reporting {
        inner: backend,
        reporter,
    });
    let ble = if config.ble.enabled {
        ble(config, state, link, provisioning.clone(), shutdown.clone())
    } else {
        None
    };
    let provisioning = (config.wifi.backend != BackendKind::None).then_some(provisioning);
    (wifi, ble, provisioning)
}

/// The Matter node (issue 18), when `[matter]` enables it: a third app
/// channel beside BLE and MQTT, on the same [`Link`]. Commissioning over
/// BLE (BTP) uses the `[ble]` adapter while pairing mode lasts, in builds
/// that have BlueZ and with `[ble]` on; otherwise on the network only.
pub fn matter(
    config: &Config,
    state: &State,
    link: &Link,
    wifi: Option<Arc<dyn WifiBackend>>,
    shutdown: &CancellationToken,
) -> super::matter_port::MatterNode {
    super::matter_port::MatterNode::start(
        config,
        link,
        &state.engine_config.serial,
        crate::matter::Radios {
            ble_adapter: matter_ble_adapter(&config.ble),
            wifi,
        },
        shutdown.clone(),
    )
}

/// The adapter Matter's BLE commissioning advertises on: `[ble]`'s (empty:
/// BlueZ's default adapter), only in builds with BlueZ and with `[ble]` on.
fn matter_ble_adapter(ble: &crate::ble::config::BleConfig) -> Option<String> {
    (cfg!(feature = "board-linux") && ble.enabled).then(|| ble.adapter.clone())
}

/// After a factory reset: delete the networks the lock configured
/// (`WifiBackend::forget`). A failure is logged, not fatal: the reset
/// itself is committed and the restart must not be held up by Wi-Fi.
pub async fn forget_wifi(config: &Config) {
    if config.wifi.backend == BackendKind::None {
        return;
    }
    let bus = wifi_bus(config).await;
    match wifi_backend(config, bus.as_ref()).forget().await {
        Ok(n) => tracing::info!(networks = n, "factory reset: Wi-Fi networks forgotten"),
        Err(e) => tracing::error!(
            "factory reset: cannot forget the Wi-Fi networks: {e}; delete the lock's \
             profile (`latchd <ssid>`) by hand"
        ),
    }
}

/// A message each time `service` takes its name on `bus` (the Wi-Fi
/// service started or restarted), for the monitor to read the link at
/// once. None if the bus cannot be watched: the monitor's period still runs.
async fn arrivals_of(
    bus: &zbus::Connection,
    service: &'static str,
    shutdown: CancellationToken,
) -> Option<tokio::sync::mpsc::Receiver<()>> {
    let mut watch = match NameWatch::watch(bus, service).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("Wi-Fi: cannot watch {service} on the system bus: {e}");
            return None;
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                arrived = watch.next_arrival() => {
                    // A full channel already holds a poll to come.
                    if !arrived || tx.is_closed() {
                        return;
                    }
                    let _ = tx.try_send(());
                }
            }
        }
    });
    Some(rx)
}

/// The system bus for the configured Wi-Fi backend, or none (no backend,
/// or no bus: said once, Wi-Fi is off).
async fn wifi_bus(config: &Config) -> Option<zbus::Connection> {
    config.wifi.backend.service_name()?;
    match zbus::Connection::system().await {
        Ok(bus) => Some(bus),
        Err(e) => {
            tracing::error!(
                "Wi-Fi: cannot reach the system bus for {:?}: {e}; Wi-Fi state and provisioning are off",
                config.wifi.backend
            );
            None
        }
    }
}

/// The configured Wi-Fi backend on `bus`, or none.
fn wifi_backend(config: &Config, bus: Option<&zbus::Connection>) -> Arc<dyn WifiBackend> {
    match bus {
        Some(bus) => Arc::from(crate::wifi::from_config(&config.wifi, bus.clone())),
        None => Arc::new(NoWifi),
    }
}

#[cfg(feature = "board-linux")]
fn ble(
    config: &Config,
    state: &State,
    link: &Link,
    wifi: Arc<dyn WifiBackend>,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    use crate::ble::gatt::{self, GattConfig, GattDeps};
    use crate::ble::improv::DeviceInfo;
    let local_name = gatt::local_name(&state.engine_config.serial);
    let deps = GattDeps {
        // Radio range is open to anyone: refusals are rate-limited before
        // they reach the event log.
        link: Arc::new(link.with_refusal_limit()),
        wifi,
        lock_key: state.lock_key.clone(),
        code: state.current_code.clone(),
        health: link.health().clone(),
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
    let health = link.health().clone();
    Some(tokio::spawn(async move {
        if let Err(e) = gatt::run(gatt_config, deps, shutdown).await {
            tracing::error!("BLE service stopped: {e}");
            health.set_ble(BleHealth::Failed(format!("the BLE service stopped: {e}")));
        }
    }))
}

#[cfg(not(feature = "board-linux"))]
fn ble(
    _config: &Config,
    _state: &State,
    _link: &Link,
    _wifi: Arc<dyn WifiBackend>,
    _shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    tracing::warn!(
        "BLE: this build has no BlueZ client (built without the `board-linux` feature); \
         app pairing and Improv Wi-Fi are not available"
    );
    None
}

/// What `BleState` says from the first snapshot on, before the BLE service
/// reports anything itself: off by the config, unavailable in a build
/// without the BlueZ client, else waiting for bluetoothd (the service's
/// first step).
pub fn ble_at_start(config: &Config) -> BleHealth {
    if !config.ble.enabled {
        BleHealth::Off
    } else if cfg!(feature = "board-linux") {
        BleHealth::WaitingForBluetoothd("the BLE service is starting".into())
    } else {
        BleHealth::Unavailable(
            "this build has no BlueZ client (built without the `board-linux` feature)".into(),
        )
    }
}

/// MQTT remote access, when `[remote]` names a broker.
pub fn remote(
    state: &State,
    link: &Link,
    camera: Option<&CameraRig>,
    shutdown: &CancellationToken,
) -> (Option<JoinHandle<()>>, Option<Arc<RemoteStats>>) {
    let Some((settings, tls)) = state.remote.clone() else {
        return (None, None);
    };
    let snapshots = match camera {
        Some(rig) if settings.snapshots => Some(rig.snapshots_saved()),
        None if settings.snapshots => {
            tracing::warn!(
                "[remote] publish_snapshots is on but no camera runs ([video] or [face]): nothing to publish"
            );
            None
        }
        _ => None,
    };
    let stats = Arc::new(RemoteStats::default());
    let task = crate::remote::spawn(
        RemoteContext {
            settings,
            tls,
            serial: state.engine_config.serial.clone(),
            firmware: state.engine_config.firmware.clone(),
            lock_key: state.lock_key.clone(),
            link: link.clone(),
            snapshots,
            stats: stats.clone(),
        },
        shutdown.clone(),
    );
    (Some(task), Some(stats))
}

/// The camera's motion trigger and live stream (B-9.2), when configured.
pub async fn video(
    config: &Config,
    camera: Option<CameraRig>,
    link: &Link,
    shutdown: &CancellationToken,
) -> Result<Option<JoinHandle<()>>, DaemonError> {
    let Some(rig) = camera else {
        return Ok(None);
    };
    let task = rig
        .serve(
            config,
            link.published(),
            link.inputs().clone(),
            shutdown.clone(),
        )
        .await?;
    Ok(Some(task))
}
