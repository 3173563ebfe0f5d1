//! The technicians' diagnostics interface on D-Bus (`org.latchd.Diagnostics1`).
//!
//! A service technician (or a health-check script on the SoC) asks the lock
//! how it is: firmware, battery, radios, motor wear, alarms, how full the
//! credential store is, and can run a device self-test and pull a redacted
//! diagnostics export. The interface is **read-only by construction**: there
//! is no method that unlocks the door, reveals a secret, or changes users,
//! credentials or settings, and the bus policy
//! (`config/dbus/org.latchd.conf`) only lets root and the `latchd-tech`
//! group talk to it at all.
//!
//! ```text
//!   daemon runtime (daemon/)                      this module                     bus clients
//!  ┌──────────────────────────┐  watch<Diagnostics>  ┌──────────────────────┐   ┌──────────────┐
//!  │ engine task + devices    │─────────────────────▶│ updater task         │──▶│ PropertiesCh.│
//!  │                          │  broadcast<Event>    │  diff → signals      │──▶│ EventLogged  │
//!  │                          │─────────────────────▶│  new alarm → signal  │──▶│ AlarmRaised  │
//!  │ impl DiagnosticsBackend  │◀─────────────────────│ object server        │◀──│ SelfTest ... │
//!  └──────────────────────────┘  self_test/events/   │ /org/latchd/Lock     │   │ latchctl,    │
//!                                export (async)      └──────────────────────┘   │ busctl       │
//!                                                                                └──────────────┘
//! ```
//!
//! The seam to the daemon is deliberately narrow so that the two can be
//! built and tested apart:
//!
//! * [`Diagnostics`] — a plain snapshot the daemon publishes through a
//!   `tokio::sync::watch::Sender<Diagnostics>` whenever something changes;
//!   the service turns the difference into one `PropertiesChanged` signal,
//!   and a newly present entry of `active_alarms` into `AlarmRaised`.
//! * [`EventRecord`]s — sent on a `tokio::sync::broadcast` channel as the
//!   daemon logs them; each becomes an `EventLogged` signal.
//! * [`DiagnosticsBackend`] — the three things that need the daemon's help
//!   to answer (self-test, event history, export).
//!
//! [`serve`] connects to the chosen bus ([`BusChoice`]: the system bus in
//! production, the session bus or a private address in the simulator and
//! tests), claims `org.latchd`, and returns a [`DbusHandle`]. The client
//! side used by `latchctl` is in [`client`]. The wire reference (names,
//! signatures, `busctl` examples) is `docs/dbus.md`.
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::core::types::{CredentialKind, UserNumber};
use crate::core::users;

mod backend;
mod caller;
pub mod client;
mod properties;
mod service;

/// Self-test results and logged events, as the lock publishes them.
pub use crate::link::{DeviceCheck, EventRecord};
pub use backend::LockBackend;
pub use properties::{PropertyError, PROPERTY_NAMES};
pub(crate) use service::connection_builder;
pub use service::{serve, DbusHandle};

/// The well-known bus name the daemon owns.
pub const BUS_NAME: &str = "org.latchd";
/// The one object the daemon exports.
pub const OBJECT_PATH: &str = "/org/latchd/Lock";
/// The diagnostics interface on [`OBJECT_PATH`].
pub const INTERFACE: &str = "org.latchd.Diagnostics1";
/// `RecentEvents(limit)` never returns more than this many records, however
/// large the limit asked for: a reply stays well under the bus's message
/// size limit and one caller cannot make the daemon walk the whole log.
pub const MAX_RECENT_EVENTS: u32 = 1000;

/// B-1.4: how many users the lock numbers (001..=999), from core.
pub fn users_limit() -> u32 {
    u32::from(UserNumber::MAX)
}

/// A count as the bus carries it (`u`): a limit or count beyond `u32`
/// cannot occur in a lock, and would show as the largest value.
fn bus_count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// How full one credential kind is, against its limits (B-1.1, B-1.2).
/// On the bus this is the struct `(uuu)`: enrolled, lock limit, per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Credentials of this kind enrolled in the lock now.
    pub enrolled: u32,
    /// How many the lock holds at most (B-1.1).
    pub limit: u32,
    /// How many one user may hold at most (B-1.2).
    pub per_user_limit: u32,
}

impl Capacity {
    /// `enrolled` credentials of `kind` against the lock's limits for it
    /// (B-1.1, B-1.2), which live in `core` only.
    pub fn of(kind: CredentialKind, enrolled: usize) -> Self {
        Capacity {
            enrolled: bus_count(enrolled),
            limit: bus_count(users::lock_limit(kind)),
            per_user_limit: bus_count(users::user_limit(kind)),
        }
    }
}

/// The snapshot of the lock's health the daemon publishes.
///
/// Only values a technician may see are here: no passcode, key, template
/// or user identity. Strings are short lower-case words the daemon chooses
/// (`"locked"`, `"unlocked"`, `"moving"`, `"jammed"`, `"unknown"`, ...);
/// `docs/dbus.md` lists the ones it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostics {
    pub firmware_version: String,
    pub serial_number: String,
    /// Board backend in use: `"sim"` or `"linux"`.
    pub board: String,
    /// Seconds since the daemon started. The service computes it when the
    /// property is read (issue 22), so a quiet lock never shows a stale one.
    pub uptime_s: u64,
    pub lock_state: String,
    pub bolt_state: String,
    pub door_state: String,
    /// 0..=100; `None` before the first reading (on D-Bus: 255).
    pub battery_percent: Option<u8>,
    /// `None` before the first reading (on D-Bus: 0).
    pub battery_mv: Option<u32>,
    /// Powered from the emergency USB-C port (B-10.3).
    pub external_power: bool,
    pub wifi_state: String,
    /// dBm; `None` when not associated or not reported (on D-Bus: 0, which
    /// no real reading is).
    pub wifi_rssi: Option<i16>,
    pub ble_state: String,
    /// The Matter node as it reports itself: `off`, `unavailable`,
    /// `starting`, `running`, `commissioning` (a window is open),
    /// `failed: <why>` (issue 22).
    pub matter_state: String,
    /// Fabrics (home apps) that commissioned the lock; `None` while the
    /// node is not running (on D-Bus: 255).
    pub matter_fabrics: Option<u8>,
    /// Bolt movements since manufacture (motor wear).
    pub motor_cycles: u64,
    /// Unix seconds of the last motor jam, 0 for never.
    pub last_jam: i64,
    /// Names of the alarms sounding or pending now (`"tamper"`, `"lockout"`, ...).
    pub active_alarms: Vec<String>,
    /// B-7.1 lockout in force.
    pub lockout_active: bool,
    pub lockout_remaining_s: u32,
    pub users: u32,
    pub users_limit: u32,
    pub admins: u32,
    pub faces: Capacity,
    pub palms: Capacity,
    pub fingerprints: Capacity,
    pub passcodes: Capacity,
    /// `"ok"`, or what is wrong with the store (`"degraded: ..."`).
    pub storage_health: String,
    /// Where the device key rests: `"tpm2"`, `"host+tpm2"`, `"host"` or
    /// `"file"` (a plain file: development only).
    pub key_storage: String,
    /// The wall time the lock trusts now, Unix seconds; `None` when it is
    /// unknown or behind the trusted floor (on D-Bus: 0).
    pub wall_clock: Option<i64>,
    /// The trusted-time floor (the newest wall time the lock has trusted),
    /// Unix seconds; `None` before the first (on D-Bus: 0).
    pub time_floor: Option<i64>,
    /// Where the trusted wall time comes from now: `"ntp"`,
    /// `"owner-sync"`, `"rtc-trusted"`; `None` when no source is trusted
    /// (the wall time is unknown; on D-Bus: `"none"`).
    pub time_source: Option<String>,
    /// Issue 20: the software update in progress — `idle`, `off` (no
    /// RAUC configured), or its phase (`waiting_to_install: door_open, …`,
    /// `installing 40%`, …).
    pub update_state: String,
    /// RAUC's slots as the update task last read them, one line each:
    /// `rootfs.0 (A) booted good 0.1.0`; empty without RAUC.
    pub update_slots: Vec<String>,
    /// How the last update ended (or the verdict on the booted slot), as
    /// its event kind in JSON; empty when none since the start.
    pub last_update: String,
}

impl Default for Diagnostics {
    /// What the service shows before the daemon has published anything:
    /// every state `"unknown"`, every count zero, the B-1 limits.
    fn default() -> Self {
        let unknown = || "unknown".to_string();
        Diagnostics {
            firmware_version: env!("CARGO_PKG_VERSION").to_string(),
            serial_number: unknown(),
            board: unknown(),
            uptime_s: 0,
            lock_state: unknown(),
            bolt_state: unknown(),
            door_state: unknown(),
            battery_percent: None,
            battery_mv: None,
            external_power: false,
            wifi_state: unknown(),
            wifi_rssi: None,
            ble_state: unknown(),
            matter_state: unknown(),
            matter_fabrics: None,
            motor_cycles: 0,
            last_jam: 0,
            active_alarms: Vec::new(),
            lockout_active: false,
            lockout_remaining_s: 0,
            users: 0,
            users_limit: users_limit(),
            admins: 0,
            faces: Capacity::of(CredentialKind::Face, 0),
            palms: Capacity::of(CredentialKind::Palm, 0),
            fingerprints: Capacity::of(CredentialKind::Fingerprint, 0),
            passcodes: Capacity::of(CredentialKind::Passcode, 0),
            storage_health: unknown(),
            key_storage: unknown(),
            wall_clock: None,
            time_floor: None,
            time_source: None,
            update_state: unknown(),
            update_slots: Vec::new(),
            last_update: String::new(),
        }
    }
}

/// Why the daemon could not answer a backend request. Its message goes to
/// the caller as an `org.freedesktop.DBus.Error.Failed` reply, so it must
/// say what failed without leaking secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// A boxed, sendable future: what [`DiagnosticsBackend`] methods return, so
/// the trait stays object-safe without a proc-macro.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// What the daemon answers on behalf of the D-Bus service.
///
/// Implementations must be cheap to call concurrently (the service takes
/// them by `Arc`) and must never return secrets: `export` is redacted by
/// the implementation, and the service only checks that it is JSON.
pub trait DiagnosticsBackend: Send + Sync + 'static {
    /// Exercise each device once and report. The service runs at most one
    /// self-test at a time.
    fn self_test(&self) -> BackendFuture<'_, Vec<DeviceCheck>>;
    /// The newest `limit` events, newest last. `limit` is already capped at
    /// [`MAX_RECENT_EVENTS`].
    fn recent_events(&self, limit: u32) -> BackendFuture<'_, Vec<EventRecord>>;
    /// Up to `limit` events older than event `before` (the newest if
    /// `None`), newest last: one page of the full audit export. `limit` is
    /// already capped at [`MAX_RECENT_EVENTS`].
    fn events_before(&self, before: Option<u64>, limit: u32)
        -> BackendFuture<'_, Vec<EventRecord>>;
    /// A JSON document with everything a support engineer needs, redacted.
    fn export(&self) -> BackendFuture<'_, String>;
}

/// Which bus to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusChoice {
    /// The system bus: production, with the policy file installed.
    System,
    /// The caller's session bus: the simulator on a developer's machine.
    Session,
    /// A D-Bus address such as `unix:path=/tmp/bus`: tests and private buses.
    Address(String),
}

impl fmt::Display for BusChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusChoice::System => f.write_str("system bus"),
            BusChoice::Session => f.write_str("session bus"),
            BusChoice::Address(a) => write!(f, "bus at {a}"),
        }
    }
}

/// `system`, `session`, or a D-Bus address (`unix:path=...`, `unix:abstract=...`, `tcp:...`).
impl FromStr for BusChoice {
    type Err = BusChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(BusChoice::System),
            "session" => Ok(BusChoice::Session),
            // A D-Bus address is `transport:key=value,...`; anything else is
            // a typo we should not try to connect to.
            a if a.contains(':') && a.contains('=') => Ok(BusChoice::Address(a.to_string())),
            other => Err(BusChoiceError(other.to_string())),
        }
    }
}

/// A `--bus` value that is neither a bus name nor a D-Bus address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a bus: use `system`, `session` or a D-Bus address like `unix:path=/run/dbus/system_bus_socket`")]
pub struct BusChoiceError(pub String);

/// Why the diagnostics service could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error(
        "cannot connect to the {bus}: {source}; is dbus-daemon running and the address right?"
    )]
    Connect {
        bus: BusChoice,
        #[source]
        source: zbus::Error,
    },
    #[error("cannot own `{BUS_NAME}` on the {bus}: {source}; is another latchd running, or is config/dbus/org.latchd.conf not installed in /usr/share/dbus-1/system.d/?")]
    OwnName {
        bus: BusChoice,
        #[source]
        source: zbus::Error,
    },
    #[error("cannot export {OBJECT_PATH}: {0}")]
    Export(#[source] zbus::Error),
    #[error("cannot emit a D-Bus signal: {0}")]
    Signal(#[source] zbus::Error),
    #[error("cannot release `{BUS_NAME}` on shutdown: {0}")]
    Release(#[source] zbus::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_choice_parses_names_and_addresses() {
        assert_eq!("system".parse::<BusChoice>(), Ok(BusChoice::System));
        assert_eq!("session".parse::<BusChoice>(), Ok(BusChoice::Session));
        assert_eq!(
            "unix:path=/tmp/x".parse::<BusChoice>(),
            Ok(BusChoice::Address("unix:path=/tmp/x".into()))
        );
        assert!("sytem".parse::<BusChoice>().is_err());
        assert!("".parse::<BusChoice>().is_err());
    }

    #[test]
    fn default_snapshot_has_b1_limits() {
        let d = Diagnostics::default();
        assert_eq!(d.faces.limit, 50);
        assert_eq!(d.faces.per_user_limit, 3);
        assert_eq!(d.palms.per_user_limit, 2);
        assert_eq!(d.fingerprints.per_user_limit, 5);
        assert_eq!(d.passcodes.per_user_limit, 1);
        assert_eq!(d.lock_state, "unknown");
    }
}
