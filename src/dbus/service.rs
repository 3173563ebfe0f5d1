//! The object server side: the `org.latchd.Diagnostics1` interface at
//! `/org/latchd/Lock`, and the task that turns snapshots and events into
//! signals.
//!
//! ```text
//!  serve(): connect ─▶ export /org/latchd/Lock ─▶ RequestName(org.latchd, DoNotQueue)
//!                                                   │ (object is callable as soon
//!                                                   ▼  as the name is visible)
//!  updater task: select! {
//!      watch changed  ─▶ diff old/new ─▶ PropertiesChanged(changed, [])
//!                                    └─▶ AlarmRaised(name) per newly active alarm
//!      broadcast recv ─▶ EventLogged(id, time, kind, detail)
//!      stop           ─▶ return
//!  }
//! ```
//!
//! Property getters read the watch channel directly, so a `Get` never
//! returns an older value than the last signal announced.
use std::sync::Arc;

use tokio::sync::{broadcast, oneshot, watch, Mutex};
use tokio::task::JoinHandle;
use zbus::fdo::{self, RequestNameFlags, RequestNameReply};
use zbus::interface;
use zbus::message::Header;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::Connection;

use super::caller::CallerGate;
use super::properties;
use super::{
    BusChoice, DbusError, Diagnostics, DiagnosticsBackend, EventRecord, BUS_NAME, INTERFACE,
    MAX_RECENT_EVENTS, OBJECT_PATH,
};

/// The exported object. It holds no state of its own beyond a receiver of
/// the daemon's snapshot and the backend; all writes go through the daemon.
struct DiagnosticsInterface {
    /// Latest snapshot; the getters read it under its short read lock.
    snapshot: watch::Receiver<Diagnostics>,
    /// When the daemon started (from the first snapshot's uptime), so
    /// `UptimeSeconds` is computed when read.
    started: std::time::Instant,
    /// The daemon's answers to SelfTest/RecentEvents/ExportDiagnostics.
    backend: Arc<dyn DiagnosticsBackend>,
    /// The daemon's own check of its callers (issue 14 item 7).
    gate: CallerGate,
    /// Held while a self-test runs: exercising the motor twice at once would
    /// fight over the bolt, so a second caller is told to come back later.
    self_test_running: Mutex<()>,
}

fn failed(e: super::BackendError) -> fdo::Error {
    fdo::Error::Failed(e.0)
}

/// Diagnostics of the latchd smart lock, for service technicians. Read-only:
/// nothing here unlocks the door, reveals a secret or changes users.
#[interface(name = "org.latchd.Diagnostics1")]
impl DiagnosticsInterface {
    /// Firmware (latchd) version, e.g. "0.1.0".
    #[zbus(property, name = "FirmwareVersion")]
    async fn firmware_version(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().firmware_version.clone())
    }

    /// The lock's serial number.
    #[zbus(property, name = "SerialNumber")]
    async fn serial_number(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().serial_number.clone())
    }

    /// Board backend in use: "sim" or "linux".
    #[zbus(property, name = "Board")]
    async fn board(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().board.clone())
    }

    /// Seconds since the daemon started, computed when read.
    #[zbus(property, name = "UptimeSeconds")]
    async fn uptime_seconds(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<u64> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.started.elapsed().as_secs())
    }

    /// "locked", "unlocked", "moving", "jammed" or "unknown".
    #[zbus(property, name = "LockState")]
    async fn lock_state(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().lock_state.clone())
    }

    /// Bolt sensor: "extended", "retracted" or "unknown".
    #[zbus(property, name = "BoltState")]
    async fn bolt_state(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().bolt_state.clone())
    }

    /// Door sensor: "open", "closed" or "unknown".
    #[zbus(property, name = "DoorState")]
    async fn door_state(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().door_state.clone())
    }

    /// Battery charge, 0..100 %; 255 = unknown (no reading yet).
    #[zbus(property, name = "BatteryPercent")]
    async fn battery_percent(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<u8> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok({
            self.snapshot
                .borrow()
                .battery_percent
                .unwrap_or(properties::UNKNOWN_BATTERY_PERCENT)
        })
    }

    /// Battery voltage in millivolts; 0 = unknown (no reading yet).
    #[zbus(property, name = "BatteryMillivolts")]
    async fn battery_millivolts(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<u32> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok({
            self.snapshot
                .borrow()
                .battery_mv
                .unwrap_or(properties::UNKNOWN_MILLIVOLTS)
        })
    }

    /// True while powered from the emergency USB-C port (B-10.3).
    #[zbus(property, name = "ExternalPower")]
    async fn external_power(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<bool> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().external_power)
    }

    /// Wi-Fi: "none", "off", "disconnected", "connecting", "weak",
    /// "connected" or "unknown".
    #[zbus(property, name = "WifiState")]
    async fn wifi_state(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().wifi_state.clone())
    }

    /// Wi-Fi signal in dBm; 0 = unknown (not associated, or not reported).
    #[zbus(property, name = "WifiRssi")]
    async fn wifi_rssi(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<i16> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok({
            self.snapshot
                .borrow()
                .wifi_rssi
                .unwrap_or(properties::UNKNOWN_RSSI)
        })
    }

    /// BLE, as the BLE service reports itself: "off", "unavailable",
    /// "waiting-for-bluetoothd", "advertising", "pairing", "connected",
    /// "failed: <why>" or "unknown".
    #[zbus(property, name = "BleState")]
    async fn ble_state(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().ble_state.clone())
    }

    /// Bolt movements since manufacture (motor wear).
    #[zbus(property, name = "MotorCycles")]
    async fn motor_cycles(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<u64> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().motor_cycles)
    }

    /// Unix time (s) of the last motor jam; 0 if it never jammed.
    #[zbus(property, name = "LastJam")]
    async fn last_jam(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<i64> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().last_jam)
    }

    /// Alarms active now, e.g. ["tamper", "lockout", "low_battery"].
    #[zbus(property, name = "ActiveAlarms")]
    async fn active_alarms(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<Vec<String>> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().active_alarms.clone())
    }

    /// True while the B-7.1 lockout (5 failures in 5 minutes) is in force.
    #[zbus(property, name = "LockoutActive")]
    async fn lockout_active(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<bool> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().lockout_active)
    }

    /// Seconds left of the lockout; 0 when none.
    #[zbus(property, name = "LockoutRemainingSeconds")]
    async fn lockout_remaining_seconds(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<u32> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().lockout_remaining_s)
    }

    /// Users (administrators included) enrolled.
    #[zbus(property, name = "Users")]
    async fn users(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<u32> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().users)
    }

    /// Most users the lock numbers (B-1.4: 001..999).
    #[zbus(property, name = "UsersLimit")]
    async fn users_limit(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<u32> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().users_limit)
    }

    /// Administrators enrolled.
    #[zbus(property, name = "Admins")]
    async fn admins(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<u32> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().admins)
    }

    /// Faces: (enrolled, lock limit, per-user limit); B-1: 50 and 3.
    #[zbus(property, name = "Faces")]
    async fn faces(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<(u32, u32, u32)> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok({
            let c = self.snapshot.borrow().faces;
            (c.enrolled, c.limit, c.per_user_limit)
        })
    }

    /// Palm veins: (enrolled, lock limit, per-user limit); B-1: 50 and 2.
    #[zbus(property, name = "Palms")]
    async fn palms(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<(u32, u32, u32)> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok({
            let c = self.snapshot.borrow().palms;
            (c.enrolled, c.limit, c.per_user_limit)
        })
    }

    /// Fingerprints: (enrolled, lock limit, per-user limit); B-1: 50 and 5.
    #[zbus(property, name = "Fingerprints")]
    async fn fingerprints(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<(u32, u32, u32)> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok({
            let c = self.snapshot.borrow().fingerprints;
            (c.enrolled, c.limit, c.per_user_limit)
        })
    }

    /// Passcodes: (enrolled, lock limit, per-user limit); B-1: 50 and 1.
    #[zbus(property, name = "Passcodes")]
    async fn passcodes(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<(u32, u32, u32)> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok({
            let c = self.snapshot.borrow().passcodes;
            (c.enrolled, c.limit, c.per_user_limit)
        })
    }

    /// Store health: "ok", or "degraded: <what is wrong>".
    #[zbus(property, name = "StorageHealth")]
    async fn storage_health(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().storage_health.clone())
    }

    /// Where the device key rests: "tpm2", "host+tpm2", "host" or "file".
    #[zbus(property, name = "KeyStorage")]
    async fn key_storage(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().key_storage.clone())
    }

    /// The wall time the lock trusts now (Unix s); 0 = unknown (never set,
    /// or behind the trusted-time floor: time-windowed credentials are
    /// refused then).
    #[zbus(property, name = "WallClock")]
    async fn wall_clock(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<i64> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok({
            self.snapshot
                .borrow()
                .wall_clock
                .unwrap_or(properties::UNKNOWN_TIME)
        })
    }

    /// The trusted-time floor (Unix s): the newest wall time the lock has
    /// trusted; a clock behind it is not believed. 0 = none yet.
    #[zbus(property, name = "TrustedTimeFloor")]
    async fn trusted_time_floor(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<i64> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok({
            self.snapshot
                .borrow()
                .time_floor
                .unwrap_or(properties::UNKNOWN_TIME)
        })
    }

    /// Where the trusted wall time comes from now: "ntp", "owner-sync",
    /// "rtc-trusted"; "none" = no trusted source (the wall time is unknown).
    #[zbus(property, name = "TimeSource")]
    async fn time_source(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self
            .snapshot
            .borrow()
            .time_source
            .clone()
            .unwrap_or_else(|| properties::UNKNOWN_TIME_SOURCE.into()))
    }

    /// The Matter node: `off`, `unavailable`, `starting`, `running`,
    /// `commissioning`, `failed: <why>` (issue 22).
    #[zbus(property, name = "MatterState")]
    async fn matter_state(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().matter_state.clone())
    }

    /// Fabrics that commissioned the lock; 255 while the node is not
    /// running (unknown).
    #[zbus(property, name = "MatterFabrics")]
    async fn matter_fabrics(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<u8> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self
            .snapshot
            .borrow()
            .matter_fabrics
            .unwrap_or(properties::UNKNOWN_FABRICS))
    }

    /// The software update in progress: `idle`, `off`, or its phase
    /// (issue 20). Read-only: nothing on this interface starts one.
    #[zbus(property, name = "UpdateState")]
    async fn update_state(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().update_state.clone())
    }

    /// RAUC's slots: name, bootname, state, boot status, bundle version.
    #[zbus(property, name = "UpdateSlots")]
    async fn update_slots(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<Vec<String>> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().update_slots.clone())
    }

    /// How the last update ended, as its event kind in JSON; empty: none.
    #[zbus(property, name = "LastUpdate")]
    async fn last_update(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, hdr.as_ref()).await?;
        Ok(self.snapshot.borrow().last_update.clone())
    }

    /// Exercise every device once. Returns (device, ok, detail) per device.
    /// Fails with LimitsExceeded while another self-test is running.
    #[zbus(name = "SelfTest", out_args("checks"))]
    async fn self_test(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> fdo::Result<Vec<(String, bool, String)>> {
        self.gate.check(conn, Some(&hdr)).await?;
        let _running = self.self_test_running.try_lock().map_err(|_| {
            fdo::Error::LimitsExceeded(
                "a self-test is already running; try again when it has finished".into(),
            )
        })?;
        let checks = self.backend.self_test().await.map_err(failed)?;
        Ok(checks
            .into_iter()
            .map(|c| (c.device, c.ok, c.detail))
            .collect())
    }

    /// The newest `limit` events (at most 1000), oldest first, as
    /// (id, unix time, kind, detail).
    #[zbus(name = "RecentEvents", out_args("events"))]
    async fn recent_events(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
        limit: u32,
    ) -> fdo::Result<Vec<(u64, i64, String, String)>> {
        self.gate.check(conn, Some(&hdr)).await?;
        let limit = limit.min(MAX_RECENT_EVENTS);
        let events = self.backend.recent_events(limit).await.map_err(failed)?;
        Ok(newest_on_the_wire(events, limit))
    }

    /// Up to `limit` events (at most 1000) older than event `before` (0:
    /// from the newest), oldest first, as in `RecentEvents`: page with the
    /// first id of each reply to read the whole log (`latchctl audit`).
    #[zbus(name = "EventsBefore", out_args("events"))]
    async fn events_before(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
        before: u64,
        limit: u32,
    ) -> fdo::Result<Vec<(u64, i64, String, String)>> {
        self.gate.check(conn, Some(&hdr)).await?;
        let limit = limit.min(MAX_RECENT_EVENTS);
        let before = (before != 0).then_some(before);
        let events = self
            .backend
            .events_before(before, limit)
            .await
            .map_err(failed)?;
        // A page that does not go back in time would make an export loop
        // or silently stop short: an error the caller sees, never a
        // quietly filtered page.
        if let Some(b) = before {
            if events.iter().any(|e| e.id >= b) {
                return Err(fdo::Error::Failed(format!(
                    "the event log returned events not older than {b}; the export is incomplete, run it again"
                )));
            }
        }
        Ok(newest_on_the_wire(events, limit))
    }

    /// A JSON document describing the lock for support, with secrets and
    /// personal data redacted.
    #[zbus(name = "ExportDiagnostics", out_args("json"))]
    async fn export_diagnostics(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> fdo::Result<String> {
        self.gate.check(conn, Some(&hdr)).await?;
        let json = self.backend.export().await.map_err(failed)?;
        // The contract says JSON; a broken export would only confuse the
        // support tooling that parses it, so refuse it here.
        serde_json::from_str::<serde_json::Value>(&json).map_err(|e| {
            fdo::Error::Failed(format!(
                "the daemon produced an export that is not JSON: {e}"
            ))
        })?;
        Ok(json)
    }

    /// An event was written to the lock's log: (id, unix time, kind, detail).
    #[zbus(signal, name = "EventLogged")]
    async fn event_logged(
        emitter: &SignalEmitter<'_>,
        id: u64,
        time: i64,
        kind: &str,
        detail: &str,
    ) -> zbus::Result<()>;

    /// An alarm became active (it is also in ActiveAlarms until it ends).
    #[zbus(signal, name = "AlarmRaised")]
    async fn alarm_raised(emitter: &SignalEmitter<'_>, alarm: &str) -> zbus::Result<()>;
}

/// A running diagnostics service. Dropping it stops the signal task; call
/// [`DbusHandle::shutdown`] to also give the name back before exiting.
pub struct DbusHandle {
    /// The bus connection; its object server answers calls.
    connection: Connection,
    /// Tells the updater task to return.
    stop: Option<oneshot::Sender<()>>,
    /// The updater task, awaited on shutdown.
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DbusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbusHandle")
            .field("unique_name", &self.connection.unique_name())
            .finish_non_exhaustive()
    }
}

impl DbusHandle {
    /// The connection the service runs on (e.g. to read its unique name).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Stop emitting signals, release `org.latchd` and close the connection.
    pub async fn shutdown(mut self) -> Result<(), DbusError> {
        if let Some(stop) = self.stop.take() {
            // The task may already have ended; nothing to tell it then.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(e) = task.await {
                tracing::warn!("D-Bus signal task ended abnormally: {e}");
            }
        }
        self.connection
            .release_name(BUS_NAME)
            .await
            .map_err(DbusError::Release)?;
        Ok(())
    }
}

impl Drop for DbusHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub(crate) fn connection_builder(
    bus: &BusChoice,
) -> zbus::Result<zbus::connection::Builder<'static>> {
    match bus {
        BusChoice::System => zbus::connection::Builder::system(),
        BusChoice::Session => zbus::connection::Builder::session(),
        BusChoice::Address(a) => zbus::connection::Builder::address(a.as_str()),
    }
}

/// Serve `org.latchd.Diagnostics1` on `bus` until the handle is dropped or
/// shut down.
///
/// * `diag_rx` — the daemon's snapshot; every change becomes one
///   `PropertiesChanged` (and `AlarmRaised` for each newly active alarm).
/// * `backend` — answers the three methods.
/// * `events_rx` — every event becomes `EventLogged`.
///
/// Fails if the bus cannot be reached or `org.latchd` is owned by someone
/// else or forbidden to us by the bus policy; in that case nothing is left
/// exported.
pub async fn serve(
    bus: BusChoice,
    diag_rx: watch::Receiver<Diagnostics>,
    backend: Arc<dyn DiagnosticsBackend>,
    events_rx: broadcast::Receiver<EventRecord>,
) -> Result<DbusHandle, DbusError> {
    let uptime = std::time::Duration::from_secs(diag_rx.borrow().uptime_s);
    let now = std::time::Instant::now();
    let iface = DiagnosticsInterface {
        started: now.checked_sub(uptime).unwrap_or(now),
        snapshot: diag_rx.clone(),
        backend,
        self_test_running: Mutex::new(()),
        gate: CallerGate::new(),
    };
    // Export the object before claiming the name, so that whoever sees the
    // name appear can call it at once.
    let connection = connection_builder(&bus)
        .and_then(|b| b.serve_at(OBJECT_PATH, iface))
        .map_err(|source| DbusError::Connect {
            bus: bus.clone(),
            source,
        })?
        .build()
        .await
        .map_err(|source| DbusError::Connect {
            bus: bus.clone(),
            source,
        })?;

    // DoNotQueue: a second latchd must fail loudly, not wait in line and
    // silently take over later.
    match connection
        .request_name_with_flags(BUS_NAME, RequestNameFlags::DoNotQueue.into())
        .await
    {
        Ok(RequestNameReply::PrimaryOwner) | Ok(RequestNameReply::AlreadyOwner) => {}
        Ok(other) => {
            return Err(DbusError::OwnName {
                bus,
                source: zbus::Error::Failure(format!("RequestName answered {other:?}")),
            })
        }
        Err(source) => return Err(DbusError::OwnName { bus, source }),
    }

    let (stop_tx, stop_rx) = oneshot::channel();
    let emitter = SignalEmitter::new(&connection, OBJECT_PATH)
        .map_err(DbusError::Export)?
        .into_owned();
    let task = tokio::spawn(run_updates(emitter, diag_rx, events_rx, stop_rx));
    Ok(DbusHandle {
        connection,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

/// Announce one snapshot change: properties first, then new alarms, so a
/// client reacting to `AlarmRaised` already sees it in `ActiveAlarms`.
async fn announce(
    emitter: &SignalEmitter<'_>,
    old: &Diagnostics,
    new: &Diagnostics,
) -> Result<(), DbusError> {
    let changed = properties::changed(old, new);
    if !changed.is_empty() {
        let iface = InterfaceName::from_static_str_unchecked(INTERFACE);
        fdo::Properties::properties_changed(emitter, iface, changed, (&[] as &[&str]).into())
            .await
            .map_err(DbusError::Signal)?;
    }
    for alarm in &new.active_alarms {
        if !old.active_alarms.contains(alarm) {
            DiagnosticsInterface::alarm_raised(emitter, alarm)
                .await
                .map_err(DbusError::Signal)?;
        }
    }
    Ok(())
}

async fn run_updates(
    emitter: SignalEmitter<'static>,
    mut diag_rx: watch::Receiver<Diagnostics>,
    mut events_rx: broadcast::Receiver<EventRecord>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut last = diag_rx.borrow_and_update().clone();
    // A closed channel means the daemon is shutting down; keep serving the
    // last values until we are stopped, but stop polling what is closed.
    let mut diag_open = true;
    let mut events_open = true;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            changed = diag_rx.changed(), if diag_open => {
                if changed.is_err() {
                    diag_open = false;
                    continue;
                }
                let new = diag_rx.borrow_and_update().clone();
                if let Err(e) = announce(&emitter, &last, &new).await {
                    tracing::warn!("{e}");
                }
                last = new;
            }
            event = events_rx.recv(), if events_open => match event {
                Ok(e) => {
                    if let Err(err) = DiagnosticsInterface::event_logged(&emitter, e.id, e.time, &e.kind, &e.detail).await {
                        tracing::warn!("cannot emit EventLogged for event {}: {err}", e.id);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Listeners can still read them with RecentEvents.
                    tracing::warn!("{n} events were logged faster than D-Bus could signal them; not signalled");
                }
                Err(broadcast::error::RecvError::Closed) => events_open = false,
            },
        }
    }
}
/// Events as the interface sends them, (id, unix time, kind, detail),
/// capped at `limit`: the cap is ours to keep, whatever the backend
/// returned, and the newest are kept.
fn newest_on_the_wire(events: Vec<EventRecord>, limit: u32) -> Vec<(u64, i64, String, String)> {
    let skip = events.len().saturating_sub(limit as usize);
    events
        .into_iter()
        .skip(skip)
        .map(|e| (e.id, e.time, e.kind, e.detail))
        .collect()
}
