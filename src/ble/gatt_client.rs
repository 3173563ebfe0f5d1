//! The central side over BlueZ (bluer): find a lock, pair, open a session,
//! send commands, provision Wi-Fi with Improv. `latchctl ble` and the VM
//! test use it; the protocol itself is `client.rs`.
//!
//! ```text
//!  scan: discovery, keep devices named latchd-* or advertising Improv
//!  connect ─► services resolved ─► rx (write) · tx (notify) · Improv chars
//!  exchange(frame): fragment at the minimum ATT MTU (23, fits any link)
//!                   ─► write requests to rx, in order … ◄─ tx notifications ─► Reassembler ─► frame
//!  pair:    pair-init ⇄ pair-reply, pair-confirm ⇄ pair-done   → PairedLock
//!  request: session-init ⇄ session-accept, then sealed request ⇄ response
//!  Improv:  RPC write [0x01, len, ssid, psk, sum] ─► state notifications
//!           until Provisioned (0x04) or an error state
//! ```
use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use bluer::gatt::remote::{Characteristic, CharacteristicWriteRequest};
use bluer::gatt::WriteOp;
use bluer::{Adapter, AdapterEvent, Address, Uuid};
use futures_util::{Stream, StreamExt};
use rand_core::OsRng;

use super::gatt::{CHANNEL_RX_UUID, CHANNEL_SERVICE_UUID, CHANNEL_TX_UUID};
use super::improv;
use crate::app::client::{self, AppPairing, AppSessionStart, PairedLock, PairingSecret};
use crate::app::crypto::{StaticKeypair, KEY_LEN};
use crate::app::pairing::{PairingError, VerificationCode};
use crate::app::protocol::ErrorCode;
use crate::app::protocol::{
    fragment, ChannelError, FragmentError, Reassembler, MAX_ATT_MTU, MIN_ATT_MTU,
};
use crate::app::{Request, Response};
use crate::core::time::Instant;

/// How long one request/answer may take over the air.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long Improv provisioning may take (the lock joins the network).
pub const IMPROV_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a BLE client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GattClientError {
    #[error("Bluetooth: {0}; check the adapter (--adapter) and that bluetoothd runs")]
    Bluez(#[from] bluer::Error),
    #[error("no latchd lock found within {} s; is it powered and in range?", .0.as_secs())]
    NotFound(Duration),
    #[error("the lock {address} was not seen advertising within {} s; is it powered and in range?", window.as_secs())]
    NotInRange { address: Address, window: Duration },
    #[error("the device does not offer the {0} service; is it a latchd lock?")]
    MissingService(&'static str),
    #[error("no answer from the lock within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the lock closed the notification stream (disconnected?)")]
    Disconnected,
    #[error(transparent)]
    Pairing(#[from] PairingError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Fragment(#[from] FragmentError),
    #[error(transparent)]
    Response(#[from] client::ClientError),
    #[error("bundle upload: {0}")]
    Upload(client::UploadError),
    #[error("Improv: the lock is not in pairing mode; hold SET on the back panel, then retry")]
    ImprovNotAuthorized,
    #[error("Improv: the lock could not join the network (error state {0:#04x}); check SSID and password")]
    ImprovFailed(u8),
    #[error(
        "Improv: the lock could not scan (error state {0:#04x}); enter the network name instead"
    )]
    ImprovScanFailed(u8),
    #[error("Improv: the lock sent a malformed scan result: {0}")]
    ImprovResult(#[from] improv::RpcError),
}

/// A lock seen while scanning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub address: Address,
    pub name: Option<String>,
    pub rssi: Option<i16>,
}

fn improv_uuid(s: &str) -> Uuid {
    // The constants in improv.rs are valid UUIDs (unit-tested there).
    Uuid::parse_str(s).unwrap_or_default()
}

async fn is_lock(adapter: &Adapter, addr: Address) -> Result<Option<Found>, bluer::Error> {
    let dev = adapter.device(addr)?;
    let name = dev.name().await?;
    let uuids = dev.uuids().await?.unwrap_or_default();
    let named = name.as_deref().is_some_and(|n| n.starts_with("latchd-"));
    if !named && !uuids.contains(&improv_uuid(improv::SERVICE_UUID)) {
        return Ok(None);
    }
    Ok(Some(Found {
        address: addr,
        name,
        rssi: dev.rssi().await?,
    }))
}

/// Discover locks for `window` (or until `first_only` finds one).
///
/// A device is often added before its name or service UUIDs are known
/// (the advertisement and the scan response arrive apart, and BlueZ fills
/// the properties in as they come), so a device that does not look like a
/// lock yet is looked at again every [`RECHECK`] until the window ends,
/// rather than dismissed on first sight (`latchctl ble scan` missed a lock
/// that way on a slow host).
pub async fn scan(
    adapter: &Adapter,
    window: Duration,
    first_only: bool,
) -> Result<Vec<Found>, GattClientError> {
    adapter.set_powered(true).await?;
    let mut events = adapter.discover_devices().await?;
    let mut undecided = BTreeSet::new();
    let mut found: Vec<Found> = Vec::new();
    let deadline = tokio::time::sleep(window);
    tokio::pin!(deadline);
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let candidates: Vec<Address> = tokio::select! {
            _ = &mut deadline => break,
            _ = recheck.tick() => undecided.iter().copied().collect(),
            ev = events.next() => match ev {
                Some(AdapterEvent::DeviceAdded(addr)) => vec![addr],
                Some(_) => continue,
                None => break,
            }
        };
        for addr in candidates {
            if found.iter().any(|f| f.address == addr) {
                continue;
            }
            match is_lock(adapter, addr).await {
                Ok(Some(f)) => {
                    undecided.remove(&addr);
                    found.push(f);
                    if first_only {
                        return Ok(found);
                    }
                }
                Ok(None) => {
                    undecided.insert(addr);
                }
                // Gone again between the event and the look.
                Err(e) if e.kind == bluer::ErrorKind::NotFound => {
                    undecided.remove(&addr);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(found)
}

/// The lock's GATT database changes while a client may be connected:
/// Matter's BTP service is there only while pairing mode lasts. BlueZ (as
/// the lock's server) then answers a client with Robust Caching once with
/// ATT error 0x12, Database Out Of Sync, and takes the same request from it
/// after that (`server_authorize`); the lock's own handles did not move,
/// so the request is simply sent again, once.
async fn in_sync<T, F, Fut>(op: F) -> bluer::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bluer::Result<T>>,
{
    match op().await {
        Err(e) if db_out_of_sync(&e) => {
            tracing::debug!("the lock's GATT database changed (ATT 0x12); sending again");
            op().await
        }
        r => r,
    }
}

/// ATT error 0x12 (Database Out Of Sync), as bluer reports BlueZ's.
fn db_out_of_sync(e: &bluer::Error) -> bool {
    e.kind == bluer::ErrorKind::Failed && e.message.contains("ATT error: 0x12")
}

/// How often devices that did not look like a lock are looked at again
/// during a scan.
const RECHECK: Duration = Duration::from_millis(250);

type Notifications = Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>;

/// A connected lock.
pub struct LockClient {
    pub address: Address,
    device: bluer::Device,
    rx: Characteristic,
    tx: Notifications,
    improv_state: Option<Characteristic>,
    improv_error: Option<Characteristic>,
    improv_rpc: Option<Characteristic>,
    improv_result: Option<Characteristic>,
    started: std::time::Instant,
}

impl std::fmt::Debug for LockClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockClient")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// How long a connect by saved address scans for a lock bluetoothd forgot.
const SEE_AGAIN_WINDOW: Duration = Duration::from_secs(30);
/// How long a refresh waits for a failed link to go down.
const LINK_DOWN_WAIT: Duration = Duration::from_secs(30);

/// bluetoothd drops a device it only saw advertising some time after the
/// scan that found it (`TemporaryTimeout`, 30 s by default), so connecting
/// to a saved address fails with "not present" although the lock is right
/// there. Scan until it is seen again, as a phone app does.
pub async fn see_again(
    adapter: &Adapter,
    address: Address,
    window: Duration,
) -> Result<(), GattClientError> {
    if adapter.device_addresses().await?.contains(&address) {
        return Ok(());
    }
    adapter.set_powered(true).await?;
    let mut events = adapter.discover_devices().await?;
    let deadline = tokio::time::sleep(window);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return Err(GattClientError::NotInRange { address, window }),
            ev = events.next() => match ev {
                Some(AdapterEvent::DeviceAdded(a)) if a == address => return Ok(()),
                Some(_) => {}
                None => return Err(GattClientError::NotInRange { address, window }),
            }
        }
    }
}

impl GattClientError {
    /// An error a stale cached attribute table explains (see
    /// [`LockClient::connect`]).
    fn stale_attributes(&self) -> bool {
        match self {
            GattClientError::Bluez(e) => matches!(
                e.kind,
                bluer::ErrorKind::NotPermitted | bluer::ErrorKind::NotSupported
            ),
            GattClientError::MissingService(_) => true,
            _ => false,
        }
    }
}

impl LockClient {
    /// Connect (seeing the lock again first if bluetoothd forgot it, and
    /// refreshing a stale attribute cache once) and find the
    /// characteristics.
    pub async fn connect(adapter: &Adapter, address: Address) -> Result<Self, GattClientError> {
        see_again(adapter, address, SEE_AGAIN_WINDOW).await?;
        match Self::connect_once(adapter, address).await {
            Err(e) if e.stale_attributes() => {
                // bluetoothd caches the attribute table it discovered on a
                // lock (on disk, across its own restarts) and reuses it.
                // After the lock's Bluetooth stack restarted, or an update
                // changed its services, a cached handle can point at
                // another attribute: the first write is "not permitted".
                // Refresh as a phone does, once: wait for the failed link
                // to go (the lock advertises again only then), forget the
                // device and its cache, see it again, discover afresh.
                tracing::debug!(%address, error = %e, "stale attribute cache; discovering again");
                if let Ok(dev) = adapter.device(address) {
                    let _ = dev.disconnect().await;
                    let deadline = std::time::Instant::now() + LINK_DOWN_WAIT;
                    while dev.is_connected().await.unwrap_or(false)
                        && std::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                let _ = adapter.remove_device(address).await;
                see_again(adapter, address, SEE_AGAIN_WINDOW).await?;
                Self::connect_once(adapter, address).await
            }
            r => r,
        }
    }

    async fn connect_once(adapter: &Adapter, address: Address) -> Result<Self, GattClientError> {
        let dev = adapter.device(address)?;
        if !dev.is_connected().await? {
            // BlueZ's connect can fail once on a busy controller; one retry.
            if dev.connect().await.is_err() {
                dev.connect().await?;
            }
        }
        let mut rx = None;
        let mut tx = None;
        let (mut st, mut er, mut rpc, mut res) = (None, None, None, None);
        for service in dev.services().await? {
            let su = service.uuid().await?;
            if su != CHANNEL_SERVICE_UUID && su != improv_uuid(improv::SERVICE_UUID) {
                continue;
            }
            for c in service.characteristics().await? {
                let u = c.uuid().await?;
                if u == CHANNEL_RX_UUID {
                    rx = Some(c);
                } else if u == CHANNEL_TX_UUID {
                    tx = Some(c);
                } else if u == improv_uuid(improv::CURRENT_STATE_UUID) {
                    st = Some(c);
                } else if u == improv_uuid(improv::ERROR_STATE_UUID) {
                    er = Some(c);
                } else if u == improv_uuid(improv::RPC_COMMAND_UUID) {
                    rpc = Some(c);
                } else if u == improv_uuid(improv::RPC_RESULT_UUID) {
                    res = Some(c);
                }
            }
        }
        let rx = rx.ok_or(GattClientError::MissingService("latchd channel"))?;
        let tx = tx.ok_or(GattClientError::MissingService("latchd channel"))?;
        let tx: Notifications = Box::pin(tx.notify().await?);
        Ok(LockClient {
            address,
            device: dev,
            rx,
            tx,
            improv_state: st,
            improv_error: er,
            improv_rpc: rpc,
            improv_result: res,
            started: std::time::Instant::now(),
        })
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.started.elapsed().as_millis() as u64)
    }

    /// Drop the link now (BlueZ otherwise keeps an idle connection for a
    /// while after the last client is gone). Errors mean it is gone anyway.
    pub async fn disconnect(self) {
        if let Err(e) = self.device.disconnect().await {
            tracing::debug!(address = %self.address, "disconnect: {e}");
        }
    }

    /// Send one frame and wait for one frame back.
    pub async fn exchange(&mut self, frame: &[u8]) -> Result<Vec<u8>, GattClientError> {
        let mut reasm = Reassembler::new(MAX_ATT_MTU)?;
        // Write requests (acknowledged), one at a time: the lock must see
        // the fragments in order.
        let req = CharacteristicWriteRequest {
            op_type: WriteOp::Request,
            ..Default::default()
        };
        for part in fragment(frame, MIN_ATT_MTU)? {
            in_sync(|| self.rx.write_ext(&part, &req)).await?;
        }
        let wait = async {
            loop {
                let Some(part) = self.tx.next().await else {
                    return Err(GattClientError::Disconnected);
                };
                if let Some(frame) = reasm.push(&part)? {
                    return Ok(frame);
                }
            }
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, wait)
            .await
            .map_err(|_| GattClientError::Timeout(EXCHANGE_TIMEOUT))?
    }

    /// Owner pairing with the lock's verification code.
    pub async fn pair(
        &mut self,
        app: &StaticKeypair,
        code: VerificationCode,
    ) -> Result<PairedLock, GattClientError> {
        self.pair_with(app, PairingSecret::Owner(code)).await
    }

    /// Owner pairing (verification code) or a guest's redemption of a
    /// one-time guest pairing code (B-6.6).
    pub async fn pair_with(
        &mut self,
        app: &StaticKeypair,
        secret: PairingSecret,
    ) -> Result<PairedLock, GattClientError> {
        let (pairing, init) = AppPairing::start(app, secret, &mut OsRng);
        let reply = self.exchange(&init).await?;
        let (sent, confirm) = pairing.on_reply(app, &reply).map_err(|e| match e {
            // Say what to do, not just the wire code.
            PairingError::Channel(ChannelError::PeerError(ErrorCode::PairingModeInactive)) => {
                PairingError::PairingModeInactive
            }
            other => other,
        })?;
        let done = self.exchange(&confirm).await?;
        Ok(sent.on_done(&done)?)
    }

    /// The sealed session with the lock: the app's init, the lock's accept.
    async fn open_session(
        &mut self,
        app: &StaticKeypair,
        lock_public: [u8; KEY_LEN],
    ) -> Result<crate::app::protocol::SecureSession, GattClientError> {
        let (start, init) = AppSessionStart::new(app, lock_public, &mut OsRng);
        let accept = self.exchange(&init).await?;
        Ok(start.finish(
            app,
            &accept,
            self.now(),
            crate::app::protocol::DEFAULT_IDLE_TIMEOUT,
        )?)
    }

    /// Open a session and run one request.
    pub async fn request(
        &mut self,
        app: &StaticKeypair,
        lock_public: [u8; KEY_LEN],
        request: &Request,
    ) -> Result<Response, GattClientError> {
        let mut session = self.open_session(app, lock_public).await?;
        let sealed = client::seal_request(&mut session, self.now(), request)?;
        let answer = self.exchange(&sealed).await?;
        Ok(client::open_response(&mut session, self.now(), &answer)?)
    }

    /// Send a RAUC bundle in chunks over one session, from where the lock
    /// says it has it (issue 20); `progress(sent, total)` after each chunk.
    /// The lock installs it when it is safe (the event log says how it went).
    pub async fn send_bundle(
        &mut self,
        app: &StaticKeypair,
        lock_public: [u8; KEY_LEN],
        upload: &mut client::BundleUpload,
        mut progress: impl FnMut(u64),
    ) -> Result<(), GattClientError> {
        let mut session = self.open_session(app, lock_public).await?;
        let mut req = upload.begin();
        loop {
            let sealed = client::seal_request(&mut session, self.now(), &req)?;
            let answer = self.exchange(&sealed).await?;
            let answer = client::open_response(&mut session, self.now(), &answer)?;
            if let Response::UpdateOffset { offset } = answer {
                progress(offset);
            }
            match upload.next(&answer) {
                Ok(Some(next)) => req = next,
                Ok(None) => return Ok(()),
                Err(e) => return Err(GattClientError::Upload(e)),
            }
        }
    }

    /// Ask the lock to identify itself (Improv; no pairing mode needed):
    /// it speaks and flashes "0", at most once per 10 s. `Ok` once the
    /// request is written (the lock may act on it a moment later).
    pub async fn improv_identify(&mut self) -> Result<(), GattClientError> {
        let Some(rpc) = self.improv_rpc.clone() else {
            return Err(GattClientError::MissingService("Improv Wi-Fi"));
        };
        let packet = improv::encode_packet(improv::cmd::IDENTIFY, &[]);
        in_sync(|| rpc.write(&packet)).await?;
        Ok(())
    }

    /// The Wi-Fi networks the lock can see (Improv "request scanned
    /// networks"; the lock must be in pairing mode), strongest first.
    pub async fn improv_scan(&mut self) -> Result<Vec<improv::ScannedNetwork>, GattClientError> {
        let (Some(error), Some(rpc), Some(result)) = (
            self.improv_error.clone(),
            self.improv_rpc.clone(),
            self.improv_result.clone(),
        ) else {
            return Err(GattClientError::MissingService("Improv Wi-Fi"));
        };
        // Subscribe first: results are notifications, and the first may
        // follow the write at once.
        let mut results = Box::pin(result.notify().await?);
        let mut errors = Box::pin(error.notify().await?);
        rpc.write(&improv::encode_packet(improv::cmd::SCAN, &[]))
            .await?;
        let wait = async {
            loop {
                tokio::select! {
                    // Improv 2.2: the whole list in one result.
                    r = results.next() => match r {
                        Some(packet) => return Ok(improv::decode_scan_results(&packet)?),
                        None => return Err(GattClientError::Disconnected),
                    },
                    e = errors.next() => match e.and_then(|v| v.first().copied()) {
                        Some(0) => {}
                        Some(e) if e == improv::ErrorState::NotAuthorized as u8 => {
                            return Err(GattClientError::ImprovNotAuthorized)
                        }
                        Some(e) => return Err(GattClientError::ImprovScanFailed(e)),
                        None => return Err(GattClientError::Disconnected),
                    },
                }
            }
        };
        tokio::time::timeout(IMPROV_TIMEOUT, wait)
            .await
            .map_err(|_| GattClientError::Timeout(IMPROV_TIMEOUT))?
    }

    /// Provision Wi-Fi with Improv; `Ok` once the lock reports Provisioned.
    pub async fn improv_wifi(&mut self, ssid: &[u8], psk: &[u8]) -> Result<(), GattClientError> {
        let (Some(state), Some(error), Some(rpc)) = (
            self.improv_state.clone(),
            self.improv_error.clone(),
            self.improv_rpc.clone(),
        ) else {
            return Err(GattClientError::MissingService("Improv Wi-Fi"));
        };
        let mut states = Box::pin(state.notify().await?);
        let mut errors = Box::pin(error.notify().await?);
        if state.read().await?.first() == Some(&(improv::State::AuthorizationRequired as u8)) {
            return Err(GattClientError::ImprovNotAuthorized);
        }
        // It holds the Wi-Fi password: wiped when dropped.
        let packet = zeroize::Zeroizing::new(improv::encode_packet(
            improv::cmd::WIFI_SETTINGS,
            &[ssid, psk],
        ));
        in_sync(|| rpc.write(&packet)).await?;
        let wait = async {
            loop {
                tokio::select! {
                    s = states.next() => match s.and_then(|v| v.first().copied()) {
                        Some(s) if s == improv::State::Provisioned as u8 => return Ok(()),
                        Some(_) => {}
                        None => return Err(GattClientError::Disconnected),
                    },
                    e = errors.next() => match e.and_then(|v| v.first().copied()) {
                        Some(0) => {}
                        Some(e) if e == improv::ErrorState::NotAuthorized as u8 => {
                            return Err(GattClientError::ImprovNotAuthorized)
                        }
                        Some(e) => return Err(GattClientError::ImprovFailed(e)),
                        None => return Err(GattClientError::Disconnected),
                    },
                }
            }
        };
        tokio::time::timeout(IMPROV_TIMEOUT, wait)
            .await
            .map_err(|_| GattClientError::Timeout(IMPROV_TIMEOUT))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn err(kind: bluer::ErrorKind, message: &str) -> bluer::Error {
        bluer::Error {
            kind,
            message: message.into(),
        }
    }

    /// Database Out Of Sync is sent again once (BlueZ takes the second);
    /// anything else, or a second refusal, is the caller's.
    #[tokio::test]
    async fn a_request_refused_as_out_of_sync_is_sent_again_once() {
        let out_of_sync = || {
            err(
                bluer::ErrorKind::Failed,
                "Operation failed with ATT error: 0x12",
            )
        };
        assert!(db_out_of_sync(&out_of_sync()));
        assert!(!db_out_of_sync(&err(
            bluer::ErrorKind::Failed,
            "Operation failed with ATT error: 0x13"
        )));
        assert!(!db_out_of_sync(&err(
            bluer::ErrorKind::NotPermitted,
            "0x12"
        )));

        let calls = AtomicU32::new(0);
        let once_refused = || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(out_of_sync())
                } else {
                    Ok(n)
                }
            }
        };
        assert_eq!(in_sync(once_refused).await.unwrap(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let calls = AtomicU32::new(0);
        let always = || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(out_of_sync()) }
        };
        assert!(in_sync(always).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2, "sent again once only");

        let calls = AtomicU32::new(0);
        let other = || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(err(bluer::ErrorKind::NotPermitted, "no")) }
        };
        assert!(in_sync(other).await.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "other errors are not retried"
        );
    }
}
