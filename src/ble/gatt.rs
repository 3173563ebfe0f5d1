//! The lock's GATT application on BlueZ (bluer): the latchd secure channel
//! and Improv Wi-Fi, advertised as `latchd-XXXX`.
//!
//! ```text
//!  bluetoothd (org.bluez, system bus)
//!     ▲ RegisterApplication / RegisterAdvertisement     (again after every bluetoothd restart:
//!     │                                                  NameOwnerChanged(org.bluez) is watched)
//!  ┌──┴─────────────────────────────────────────────────────────────────────────────────┐
//!  │ latchd service  6c617463-6864-4c42-8000-6c6174636801                               │
//!  │   rx  …6802  write (with response only)     ─► ChannelConn::on_write (app/)     │
//!  │   tx  …6803  notify                         ◄─ fragments (pair reply, accept, …)   │
//!  │ Improv service  00467768-6228-2272-4663-277478268000                               │
//!  │   8001 state (read, notify) · 8002 error (read, notify) · 8003 RPC (write, w/o rsp)│
//!  │   8004 RPC result (read, notify) · 8005 capabilities (read)                        │
//!  │      RPC "Wi-Fi settings" ─► WifiBackend::apply ─► Improv::on_connect_result       │
//!  └────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! One app at a time: BlueZ sends a characteristic's notifications to every
//! subscribed central, so a second concurrent channel would see the first
//! one's frames. Who holds that one slot, and who may take it from whom, is
//! `slot.rs`; who may stay connected at all and how much a stranger may
//! write is `guard.rs` (issue 14.3). This file applies their verdicts:
//!
//! ```text
//!  write (rx or Improv RPC) ─► Guard::admit_write ─refused─► write fails (NotPermitted),
//!                               │                             repeatedly: Device1.Disconnect
//!                               ▼ admitted
//!                 rx: Slot::on_write ─► displaced holder: Device1.Disconnect, then notify
//!                 RPC: Improv::on_rpc_write
//!  sentry, every guard::TICK: the adapter's connected devices ─► Guard::tick
//!                               ─► Device1.Disconnect (strangers past their grace,
//!                                  sessions idle past SESSION_IDLE); gone ─► slot freed
//! ```
//!
//! Authorisation for pairing and for Improv is the engine's pairing mode
//! (physical presence, B-5.1), read at the moment of each request and by
//! the sentry every tick.
//!
//! The advertisement (legacy, 31 bytes: flags 3 + the Improv 128-bit UUID
//! 18 + Improv service data under 0x4677, 2 + 2 + 6 = 31; bluetoothd puts
//! the name in the scan response) is registered again whenever the Improv
//! state changes, so a scanning client sees the state without connecting:
//!
//! ```text
//!  Improv Output::State ─► Shared::advertise ─► service data changed? ─► drop the
//!                                                 old advertisement, register the new
//! ```
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bluer::adv::{Advertisement, AdvertisementHandle, Type as AdvType};
use bluer::gatt::local::{
    Application, Characteristic, CharacteristicNotifier, CharacteristicNotify,
    CharacteristicNotifyMethod, CharacteristicRead, CharacteristicWrite, CharacteristicWriteMethod,
    ReqError, Service,
};
use bluer::{Address, Uuid};
use futures_util::FutureExt;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::guard::{self, Admit, Guard, Limits};
use super::improv::{self, DeviceInfo, Improv, Output, ScannedNetwork};
use super::slot::Slot;
use crate::app::crypto::StaticKeypair;
use crate::app::pairing::CurrentCode;
use crate::app::LockLink;
use crate::link::bus_name::{NameWatch, BLUEZ};
use crate::link::{BleHealth, HealthBoard};
use crate::wifi::WifiBackend;

/// The latchd secure-channel service.
pub const CHANNEL_SERVICE_UUID: Uuid = Uuid::from_u128(0x6c617463_6864_4c42_8000_6c6174636801);
/// App → lock frames (write with response: keeps fragments in order).
pub const CHANNEL_RX_UUID: Uuid = Uuid::from_u128(0x6c617463_6864_4c42_8000_6c6174636802);
/// Lock → app frames (notify).
pub const CHANNEL_TX_UUID: Uuid = Uuid::from_u128(0x6c617463_6864_4c42_8000_6c6174636803);

/// How long to wait before registering again after bluetoothd went away.
const RETRY: Duration = Duration::from_secs(2);
/// Retry period while bluetoothd or the adapter is missing.
const IDLE_RETRY: Duration = Duration::from_secs(60);
/// Quick retries (every [`RETRY`]) after start-up or a bluetoothd restart.
const QUICK_RETRIES: u32 = 10;
/// How long a disconnection request to bluetoothd may take before the
/// caller goes on (the sentry asks again later if it did not take).
const DISCONNECT_WAIT: Duration = Duration::from_secs(3);

/// Why the GATT application stopped.
#[derive(Debug, thiserror::Error)]
pub enum GattError {
    #[error(
        "Bluetooth: {0}; check that bluetoothd runs and the adapter exists (bluetoothctl list)"
    )]
    Bluez(#[from] bluer::Error),
    #[error("cannot watch bluetoothd on the system bus: {0}")]
    Bus(#[from] zbus::Error),
    #[error("invalid Improv UUID constant: {0}")]
    Uuid(String),
}

/// What the application needs.
#[derive(Clone)]
pub struct GattDeps {
    pub link: Arc<dyn LockLink>,
    pub wifi: Arc<dyn WifiBackend>,
    /// The lock's long-term key (`app::crypto::lock_keypair` of the device secret).
    pub lock_key: Arc<StaticKeypair>,
    /// The verification code owner pairing accepts now (it rotates).
    pub code: CurrentCode,
    /// Where the service reports its own state (`BleState`, issue 22).
    pub health: HealthBoard,
    pub device_info: DeviceInfo,
}

impl std::fmt::Debug for GattDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GattDeps")
            .field("device_info", &self.device_info)
            .finish_non_exhaustive()
    }
}

/// Where and as what to advertise.
#[derive(Debug, Clone)]
pub struct GattConfig {
    /// `hci0`…; `None`: BlueZ's default adapter.
    pub adapter: Option<String>,
    /// Advertised name, `latchd-XXXX`.
    pub local_name: String,
}

/// `latchd-` and the last four characters of the serial.
pub fn local_name(serial: &str) -> String {
    let tail: String = serial
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<Vec<_>>()
        .iter()
        .rev()
        .take(4)
        .rev()
        .collect();
    format!("latchd-{tail}")
}

/// The channel slot, the availability policy over every connected
/// device, and where the channel's notifications go.
struct ChannelState {
    slot: Slot<Address>,
    guard: Guard<Address>,
    notifier: Option<CharacteristicNotifier>,
}

#[derive(Default)]
struct ImprovNotifiers {
    state: Option<CharacteristicNotifier>,
    error: Option<CharacteristicNotifier>,
    result: Option<CharacteristicNotifier>,
}

/// State shared by the characteristic callbacks.
pub struct Shared {
    deps: GattDeps,
    adapter: bluer::Adapter,
    channel: Mutex<ChannelState>,
    improv: Mutex<Improv>,
    improv_notify: Mutex<ImprovNotifiers>,
    /// The registered advertisement and the Improv service data it
    /// carries; replaced when that data changes.
    adv: Mutex<Option<(AdvertisementHandle, [u8; 6])>>,
    /// Advertised name, `latchd-XXXX`.
    local_name: String,
    /// The guard's clock: real time since registration (the radio's
    /// connections age in real time whatever the engine's clock says).
    started: std::time::Instant,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

async fn notify_all(n: &mut Option<CharacteristicNotifier>, values: Vec<Vec<u8>>) {
    if let Some(notifier) = n {
        for v in values {
            if notifier.notify(v).await.is_err() {
                // The central unsubscribed or left; forget it.
                *n = None;
                return;
            }
        }
    }
}

impl Shared {
    fn now(&self) -> crate::core::time::Instant {
        crate::core::time::Instant::from_millis(self.started.elapsed().as_millis() as u64)
    }

    async fn channel_write(
        self: Arc<Self>,
        value: Vec<u8>,
        peer: Address,
        mtu: u16,
    ) -> Result<(), ReqError> {
        let link = self.deps.link.clone();
        let now = self.now();
        let mut ch = self.channel.lock().await;
        self.admit(&mut ch, peer, now).await?;
        // A holder that left before the sentry noticed frees the slot now,
        // so the next app does not wait for the sentry's tick.
        if let Some(holder) = ch.slot.holder() {
            if holder != peer && !self.is_connected(holder).await {
                self.forget(&mut ch, holder);
            }
        }
        let ChannelState {
            slot,
            guard,
            notifier,
        } = &mut *ch;
        let out = slot
            .on_write(link.as_ref(), guard, peer, &value, mtu, now)
            .await;
        if out.took_slot {
            link.ble_connected(true);
            self.deps.health.set_ble_app(true);
        }
        if let Some(displaced) = out.evict {
            // Before the new holder's answer is notified: the displaced
            // device must not see the new session's frames.
            self.disconnect(displaced).await;
        }
        notify_all(notifier, out.notify).await;
        if out.refused {
            return Err(ReqError::NotPermitted);
        }
        Ok(())
    }

    /// The guard's verdict on one write from `peer`; a peer it evicts is
    /// disconnected here.
    async fn admit(
        &self,
        ch: &mut ChannelState,
        peer: Address,
        now: crate::core::time::Instant,
    ) -> Result<(), ReqError> {
        match ch.guard.admit_write(peer, now) {
            Admit::Yes => Ok(()),
            Admit::Refuse => Err(ReqError::NotPermitted),
            Admit::Evict => {
                tracing::warn!(%peer, "BLE: disconnecting a device that keeps writing past its budget");
                self.disconnect(peer).await;
                Err(ReqError::NotPermitted)
            }
        }
    }

    async fn is_connected(&self, peer: Address) -> bool {
        match self.adapter.device(peer) {
            Ok(d) => d.is_connected().await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Ask bluetoothd to end `peer`'s connection (org.bluez.Device1.Disconnect).
    async fn disconnect(&self, peer: Address) {
        let result = match self.adapter.device(peer) {
            Ok(d) => tokio::time::timeout(DISCONNECT_WAIT, d.disconnect())
                .await
                .unwrap_or(Ok(())),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => tracing::info!(%peer, "BLE: disconnected a device"),
            Err(e) => tracing::warn!(%peer, "BLE: cannot disconnect a device: {e}"),
        }
    }

    /// `peer` is gone: its channel (a half-open session must not survive
    /// the link) and its place in the guard end; the engine hears when the
    /// app holding the channel left (B-9.1 status).
    fn forget(&self, ch: &mut ChannelState, peer: Address) {
        ch.guard.gone(peer);
        if ch.slot.release(peer) {
            self.deps.link.ble_connected(false);
            self.deps.health.set_ble_app(false);
            tracing::info!(%peer, "BLE: app disconnected");
        }
    }

    /// Every [`guard::TICK`]: track who is connected, free what left, and
    /// disconnect whom the guard says (the idle limits hold even when no
    /// frame arrives).
    async fn sentry(self: Arc<Self>) {
        let mut tick = tokio::time::interval(guard::TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut connected = Vec::new();
            match self.adapter.device_addresses().await {
                Ok(all) => {
                    for a in all {
                        if self.is_connected(a).await {
                            connected.push(a);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("BLE: cannot list devices: {e}");
                    continue;
                }
            }
            let now = self.now();
            let pairing_mode = self.deps.link.pairing_mode();
            let cut = {
                let mut ch = self.channel.lock().await;
                let left: Vec<Address> = ch
                    .guard
                    .peers()
                    .filter(|p| !connected.contains(p))
                    .collect();
                for p in left {
                    self.forget(&mut ch, p);
                }
                let mut cut: Vec<Address> = connected
                    .iter()
                    .copied()
                    .filter(|p| !ch.guard.seen_connected(*p, now))
                    .collect();
                cut.extend(ch.guard.tick(now, pairing_mode));
                cut
            };
            for p in cut {
                tracing::info!(%p, "BLE: ending an idle or unauthenticated connection");
                self.disconnect(p).await;
            }
            // Pairing mode starting or ending shows in the advertised
            // Improv state within a tick, with nobody connected.
            self.refresh_authorization().await;
            if let Err(e) = self.advertise().await {
                tracing::warn!("BLE: cannot advertise: {e}");
            }
        }
    }

    /// Boxed with an explicit `Send`: it recurses (a join's result feeds
    /// more outputs) from a spawned task.
    /// `peer`: who wrote the RPC these outputs answer, if anyone.
    fn improv_outputs(
        self: &Arc<Self>,
        outputs: Vec<Output>,
        peer: Option<Address>,
    ) -> futures_util::future::BoxFuture<'_, ()> {
        Box::pin(async move { self.improv_outputs_inner(outputs, peer).await })
    }

    async fn improv_outputs_inner(self: &Arc<Self>, outputs: Vec<Output>, peer: Option<Address>) {
        for o in outputs {
            match o {
                Output::State(s) => {
                    notify_all(
                        &mut self.improv_notify.lock().await.state,
                        vec![vec![s as u8]],
                    )
                    .await;
                    if let Err(e) = self.advertise().await {
                        // The old advertisement is gone; the sentry tries
                        // again every tick.
                        tracing::warn!("BLE: cannot advertise Improv state {s:?}: {e}");
                    }
                }
                Output::Error(e) => {
                    notify_all(
                        &mut self.improv_notify.lock().await.error,
                        vec![vec![e as u8]],
                    )
                    .await
                }
                Output::Result(r) => {
                    notify_all(&mut self.improv_notify.lock().await.result, vec![r]).await
                }
                Output::ApplyCredentials { ssid, password } => {
                    let me = self.clone();
                    // The client waits for the join's result: not evicted
                    // until it is known.
                    if let Some(p) = peer {
                        let now = self.now();
                        self.channel.lock().await.guard.provisioning(p, true, now);
                    }
                    // Joining takes seconds; answer the write now.
                    tokio::spawn(async move {
                        let result = me.deps.wifi.apply(&ssid, &password).await;
                        let outputs = match result {
                            Ok(_) => me.improv.lock().await.on_connect_result(Ok(None)),
                            Err(e) => {
                                tracing::warn!("Improv: Wi-Fi not joined: {e}");
                                me.improv.lock().await.on_connect_result(Err(()))
                            }
                        };
                        if let Some(p) = peer {
                            let now = me.now();
                            me.channel.lock().await.guard.provisioning(p, false, now);
                        }
                        me.improv_outputs(outputs, peer).await;
                    });
                }
                Output::Identify => self.deps.link.identify(),
                Output::Scan => {
                    let me = self.clone();
                    // A scan takes seconds; answer the write now.
                    tokio::spawn(async move {
                        let outputs = match me.deps.wifi.scan().await {
                            Ok(found) => {
                                tracing::info!(networks = found.len(), "Improv: Wi-Fi scan");
                                let networks: Vec<ScannedNetwork> = found
                                    .into_iter()
                                    .map(|n| ScannedNetwork {
                                        ssid: n.ssid,
                                        rssi_dbm: n.rssi_dbm.clamp(-128, 0) as i8,
                                        auth_required: n.secured,
                                    })
                                    .collect();
                                me.improv.lock().await.on_scan_result(&networks)
                            }
                            Err(e) => {
                                tracing::warn!("Improv: Wi-Fi scan failed: {e}");
                                me.improv.lock().await.on_scan_failed()
                            }
                        };
                        me.improv_outputs(outputs, peer).await;
                    });
                }
            }
        }
    }

    /// Advertise the Improv service data as it is now; a no-op when the
    /// registered advertisement already carries it.
    async fn advertise(&self) -> Result<(), GattError> {
        let mut adv = self.adv.lock().await;
        let data = self.improv.lock().await.service_data();
        if matches!(&*adv, Some((_, d)) if *d == data) {
            return Ok(());
        }
        // Unregister first: a controller may hold one advertising set only.
        *adv = None;
        let handle = self
            .adapter
            .advertise(advertisement(&self.local_name, data)?)
            .await?;
        *adv = Some((handle, data));
        Ok(())
    }

    async fn refresh_authorization(self: &Arc<Self>) {
        let active = self.deps.link.pairing_mode();
        let outputs = self.improv.lock().await.set_authorized(active);
        self.improv_outputs(outputs, None).await;
    }
}

fn read_fun<F>(shared: &Arc<Shared>, f: F) -> CharacteristicRead
where
    F: Fn(Arc<Shared>) -> futures_util::future::BoxFuture<'static, Vec<u8>> + Send + Sync + 'static,
{
    let shared = shared.clone();
    CharacteristicRead {
        read: true,
        fun: Box::new(move |_req| {
            let s = shared.clone();
            let fut = f(s);
            async move { Ok(fut.await) }.boxed()
        }),
        ..Default::default()
    }
}

fn notify_into(
    shared: &Arc<Shared>,
    pick: fn(&mut ImprovNotifiers) -> &mut Option<CharacteristicNotifier>,
) -> CharacteristicNotify {
    let shared = shared.clone();
    CharacteristicNotify {
        notify: true,
        method: CharacteristicNotifyMethod::Fun(Box::new(move |n| {
            let s = shared.clone();
            async move {
                *pick(&mut *s.improv_notify.lock().await) = Some(n);
            }
            .boxed()
        })),
        ..Default::default()
    }
}

fn uuid(s: &str) -> Result<Uuid, GattError> {
    Uuid::parse_str(s).map_err(|e| GattError::Uuid(format!("{s}: {e}")))
}

fn application(shared: &Arc<Shared>) -> Result<Application, GattError> {
    let ch = shared.clone();
    let rx = Characteristic {
        uuid: CHANNEL_RX_UUID,
        write: Some(CharacteristicWrite {
            // With response only: BlueZ hands each write to its own
            // callback, and only an acknowledged write keeps fragments in
            // order.
            write: true,
            method: CharacteristicWriteMethod::Fun(Box::new(move |value, req| {
                ch.clone()
                    .channel_write(value, req.device_address, req.mtu)
                    .boxed()
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ch = shared.clone();
    let tx = Characteristic {
        uuid: CHANNEL_TX_UUID,
        notify: Some(CharacteristicNotify {
            notify: true,
            method: CharacteristicNotifyMethod::Fun(Box::new(move |n| {
                let s = ch.clone();
                async move {
                    s.channel.lock().await.notifier = Some(n);
                }
                .boxed()
            })),
            ..Default::default()
        }),
        ..Default::default()
    };

    let state = Characteristic {
        uuid: uuid(improv::CURRENT_STATE_UUID)?,
        read: Some(read_fun(shared, |s| {
            async move {
                s.refresh_authorization().await;
                vec![s.improv.lock().await.state() as u8]
            }
            .boxed()
        })),
        notify: Some(notify_into(shared, |n| &mut n.state)),
        ..Default::default()
    };
    let error = Characteristic {
        uuid: uuid(improv::ERROR_STATE_UUID)?,
        read: Some(read_fun(shared, |s| {
            async move { vec![s.improv.lock().await.error() as u8] }.boxed()
        })),
        notify: Some(notify_into(shared, |n| &mut n.error)),
        ..Default::default()
    };
    let ch = shared.clone();
    let rpc = Characteristic {
        uuid: uuid(improv::RPC_COMMAND_UUID)?,
        write: Some(CharacteristicWrite {
            // Improv allows both. A client writing a split command without
            // response gets no ordering guarantee from BlueZ's per-write
            // callbacks; fragments out of order fail the checksum (error
            // "invalid RPC"), never run.
            write: true,
            write_without_response: true,
            method: CharacteristicWriteMethod::Fun(Box::new(move |value, req| {
                let s = ch.clone();
                let peer = req.device_address;
                async move {
                    let now = s.now();
                    {
                        let mut ch = s.channel.lock().await;
                        s.admit(&mut ch, peer, now).await?;
                    }
                    s.refresh_authorization().await;
                    let outputs = s.improv.lock().await.on_rpc_write(&value);
                    s.improv_outputs(outputs, Some(peer)).await;
                    Ok(())
                }
                .boxed()
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let result = Characteristic {
        uuid: uuid(improv::RPC_RESULT_UUID)?,
        read: Some(read_fun(shared, |s| {
            async move { s.improv.lock().await.last_result().to_vec() }.boxed()
        })),
        notify: Some(notify_into(shared, |n| &mut n.result)),
        ..Default::default()
    };
    let caps = Characteristic {
        uuid: uuid(improv::CAPABILITIES_UUID)?,
        read: Some(read_fun(shared, |s| {
            async move { vec![s.improv.lock().await.capabilities()] }.boxed()
        })),
        ..Default::default()
    };
    Ok(Application {
        services: vec![
            Service {
                uuid: CHANNEL_SERVICE_UUID,
                primary: true,
                characteristics: vec![rx, tx],
                ..Default::default()
            },
            Service {
                uuid: uuid(improv::SERVICE_UUID)?,
                primary: true,
                characteristics: vec![state, error, rpc, result, caps],
                ..Default::default()
            },
        ],
        ..Default::default()
    })
}

/// The advertisement: the Improv service UUID and its service data
/// (`[state, capabilities, 0, 0, 0, 0]` under 0x4677), which is what Improv
/// clients (Home Assistant's filter) look for, and the name, which our app
/// looks for and bluetoothd sends in the scan response (31 bytes hold the
/// flags, the UUID and the service data, nothing more).
fn advertisement(local_name: &str, service_data: [u8; 6]) -> Result<Advertisement, GattError> {
    Ok(Advertisement {
        advertisement_type: AdvType::Peripheral,
        service_uuids: BTreeSet::from([uuid(improv::SERVICE_UUID)?]),
        service_data: [(uuid(improv::SERVICE_DATA_UUID)?, service_data.to_vec())].into(),
        local_name: Some(local_name.to_owned()),
        discoverable: Some(true),
        ..Default::default()
    })
}

/// Register, advertise and serve until `shutdown`; register again each
/// time bluetoothd restarts. Returns only on shutdown or if the system bus
/// itself cannot be reached.
pub async fn run(
    config: GattConfig,
    deps: GattDeps,
    shutdown: CancellationToken,
) -> Result<(), GattError> {
    let system = zbus::Connection::system().await?;
    let mut bluez = NameWatch::watch(&system, BLUEZ).await?;
    // Right after start-up or a bluetoothd restart the adapter may take a
    // few seconds to come back: retry quickly a few times, then wait for
    // bluetoothd to change hands (or a slow retry) instead of polling.
    let mut quick = QUICK_RETRIES;
    loop {
        match serve_once(&config, &deps).await {
            Ok(handles) => {
                tracing::info!(name = %config.local_name, "BLE: GATT application registered");
                let registered_with = bluez.current().await;
                // Serve until bluetoothd changes hands (restart) or we stop.
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        drop(handles);
                        return Ok(());
                    }
                    _ = bluez.next_restart(registered_with.as_deref()) => {
                        tracing::warn!("BLE: bluetoothd restarted or stopped; registering again");
                        drop(handles);
                        deps.health.set_ble(BleHealth::WaitingForBluetoothd(
                            "bluetoothd restarted or stopped; registering again".into(),
                        ));
                    }
                }
                quick = QUICK_RETRIES;
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
            Err(e) if quick > 0 => {
                deps.health.set_ble(verdict(&bluez, &e).await);
                quick -= 1;
                tracing::warn!("BLE: {e}; retrying in {} s", RETRY.as_secs());
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
            Err(e) => {
                deps.health.set_ble(verdict(&bluez, &e).await);
                tracing::warn!(
                    "BLE: {e}; waiting for bluetoothd (retry in {} s)",
                    IDLE_RETRY.as_secs()
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = bluez.next_change() => {
                        quick = QUICK_RETRIES;
                        tokio::time::sleep(RETRY).await;
                    }
                    _ = tokio::time::sleep(IDLE_RETRY) => {}
                }
            }
        }
    }
}

/// What a failed registration means for `BleState`: bluetoothd absent
/// from the bus (waiting for it), no adapter (unavailable), or a failure
/// with bluetoothd there.
async fn verdict(bluez: &NameWatch, e: &GattError) -> BleHealth {
    let running = bluez.running().await;
    match e {
        _ if !running => {
            BleHealth::WaitingForBluetoothd("org.bluez is not on the system bus".into())
        }
        GattError::Bluez(b) if b.kind == bluer::ErrorKind::NotFound => {
            BleHealth::Unavailable(format!("no Bluetooth adapter ({b})"))
        }
        e => BleHealth::Failed(e.to_string()),
    }
}

/// A live registration; dropping it unregisters (and stops the sentry).
pub struct Handles {
    _app: bluer::gatt::local::ApplicationHandle,
    shared: Arc<Shared>,
    _session: bluer::Session,
    sentry: tokio::task::JoinHandle<()>,
}

impl Drop for Handles {
    fn drop(&mut self) {
        self.sentry.abort();
        // Characteristic callbacks hold `shared` too: end the advertisement
        // here, not when the last of them goes.
        if let Ok(mut adv) = self.shared.adv.try_lock() {
            adv.take();
        }
    }
}

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handles").finish_non_exhaustive()
    }
}

/// Register the application and the advertisement once.
/// How long registration waits for the Wi-Fi backend's status.
const WIFI_STATUS_WAIT: Duration = Duration::from_secs(2);

pub async fn serve_once(config: &GattConfig, deps: &GattDeps) -> Result<Handles, GattError> {
    let session = bluer::Session::new().await?;
    let adapter = match &config.adapter {
        Some(name) => session.adapter(name)?,
        None => session.default_adapter().await?,
    };
    adapter.set_powered(true).await?;
    // On a network already (or joining the one it has): Improv starts
    // Provisioned. A backend that does not answer in time counts as not
    // provisioned: the lock is then offered for setup, which only works
    // with SET held.
    let on_a_network = matches!(
        tokio::time::timeout(WIFI_STATUS_WAIT, deps.wifi.status()).await,
        Ok(Ok(s)) if s.connected || s.connecting
    );
    let improv = if on_a_network {
        Improv::already_provisioned(deps.device_info.clone())
    } else {
        Improv::new(deps.device_info.clone())
    };
    let shared = Arc::new(Shared {
        deps: deps.clone(),
        adapter: adapter.clone(),
        channel: Mutex::new(ChannelState {
            slot: Slot::new(deps.lock_key.clone(), deps.code.clone()),
            guard: Guard::new(
                Limits::default(),
                crate::core::time::Instant::from_millis(0),
            ),
            notifier: None,
        }),
        improv: Mutex::new(improv),
        improv_notify: Mutex::new(ImprovNotifiers::default()),
        adv: Mutex::new(None),
        local_name: config.local_name.clone(),
        started: std::time::Instant::now(),
    });
    let app = adapter
        .serve_gatt_application(application(&shared)?)
        .await?;
    shared.advertise().await?;
    let sentry = tokio::spawn(shared.clone().sentry());
    deps.health.set_ble(BleHealth::Registered {
        app_connected: false,
    });
    Ok(Handles {
        sentry,
        _app: app,
        shared,
        _session: session,
    })
}
