//! What the engine task publishes for everyone else, and the requests it
//! takes that are not engine inputs.
//!
//! ```text
//!   engine task ── watch<Published> ─────────► control socket, front panel, channels (status)
//!               ── broadcast<OwnerNotice> ───► MQTT (sealed owner notices, alerts)
//!               ◄─ mpsc<TaskRequest> ───────── D-Bus SelfTest (answered between inputs)
//! ```
use serde::Serialize;
use tokio::sync::oneshot;

use super::views::DeviceCheck;
use crate::core::action::Notice;
use crate::core::Status;

/// Counters the engine task keeps, published with every status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DaemonCounters {
    /// Times the loop woke for an input or a deadline (not watchdog probes).
    pub wakeups: u64,
    /// Inputs taken from the channel and handled.
    pub processed: u64,
    /// Deadline wake-ups among `wakeups`.
    pub ticks: u64,
    /// Persist batches that failed and made the engine reload from the store.
    pub persist_failures: u64,
    /// Attempt records kept in memory only: the state partition was
    /// read-only when they were made.
    pub memory_only_attempts: u64,
    /// Milliseconds until the engine's next deadline, when it has one.
    pub next_deadline_in_ms: Option<u64>,
}

/// What the engine task publishes after every input.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub engine: Status,
    pub daemon: DaemonCounters,
}

/// A notice for the owner (doorbell, alarms, duress, an unlock while away),
/// with the newest event stored when it was sent (`None`: none this batch).
#[derive(Debug, Clone)]
pub struct OwnerNotice {
    pub notice: Notice,
    pub last_event: Option<u64>,
}

/// A request for the engine task that is not an engine input.
#[derive(Debug)]
pub enum TaskRequest {
    /// Read every device once (D-Bus `SelfTest`).
    SelfTest(oneshot::Sender<Vec<DeviceCheck>>),
}
