//! `[update]` in latchd.toml: where RAUC is and when an update may run.
use std::time::Duration;

use serde::Deserialize;

use crate::core::update::UpdatePolicy;

/// The `[update]` table as written in the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateConfig {
    /// Where RAUC's `de.pengutronix.rauc.Installer` is: `off` (default:
    /// the lock has no RAUC and refuses update requests), `system`, or a
    /// D-Bus address.
    pub bus: String,
    /// Below this battery charge (and not on USB-C power) nothing
    /// installs or restarts. 10..=100.
    pub min_battery_percent: u8,
    /// How long an update waits for a safe moment (door closed, bolt out,
    /// motor idle, no menu, battery, no lockout or alarm), before the
    /// install and again before the restart. 1..=1440.
    pub max_wait_minutes: u32,
    /// After a restart into a new slot, how long the self-test may take
    /// to pass before the lock gives up marking the slot good (the boot
    /// counter then falls back to the old slot). 1..=3600.
    pub health_timeout_s: u64,
    /// The self-test checks (`latchctl self-test` names) that must pass
    /// before a newly booted slot is marked good.
    pub health_checks: Vec<String>,
    /// Where a bundle streamed over BLE is written (mode 0700; the file
    /// 0600). Unset: `<state_dir>/update-stream`. Best on the partition
    /// RAUC reads from and not a tmpfs (a bundle is large).
    pub stream_dir: Option<std::path::PathBuf>,
    /// The largest bundle streamed over BLE, in MiB. 1..=4096.
    pub stream_max_mib: u32,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            bus: "off".into(),
            min_battery_percent: UpdatePolicy::DEFAULT_MIN_BATTERY_PERCENT,
            max_wait_minutes: 30,
            health_timeout_s: 120,
            health_checks: [
                "motor",
                "bolt_sensor",
                "door_sensor",
                "battery",
                "tamper",
                "store",
            ]
            .map(String::from)
            .to_vec(),
            stream_dir: None,
            stream_max_mib: 256,
        }
    }
}

impl UpdateConfig {
    /// The engine's share of it.
    pub fn policy(&self) -> UpdatePolicy {
        UpdatePolicy {
            enabled: self.bus != "off",
            min_battery_percent: self.min_battery_percent,
            max_wait: Duration::from_secs(u64::from(self.max_wait_minutes) * 60),
        }
    }

    /// Where streamed bundles go, for a lock whose state is in `state_dir`.
    pub fn stream_dir(&self, state_dir: &std::path::Path) -> std::path::PathBuf {
        self.stream_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("update-stream"))
    }

    /// The largest streamed bundle, in bytes.
    pub fn stream_max_bytes(&self) -> u64 {
        u64::from(self.stream_max_mib) << 20
    }

    /// The bus of `bus`, `None` when off.
    pub fn bus(&self) -> Option<crate::dbus::BusChoice> {
        match self.bus.as_str() {
            "off" => None,
            other => other.parse().ok(),
        }
    }

    /// `Err((key, why))` for a value out of range.
    pub fn validate(&self) -> Result<(), (&'static str, String, &'static str)> {
        if self.bus != "off" && self.bus.parse::<crate::dbus::BusChoice>().is_err() {
            return Err((
                "update.bus",
                format!("{:?}", self.bus),
                "use \"off\", \"system\" or a D-Bus address",
            ));
        }
        if !(10..=100).contains(&self.min_battery_percent) {
            return Err((
                "update.min_battery_percent",
                self.min_battery_percent.to_string(),
                "must be between 10 and 100",
            ));
        }
        if !(1..=1440).contains(&self.max_wait_minutes) {
            return Err((
                "update.max_wait_minutes",
                self.max_wait_minutes.to_string(),
                "must be between 1 and 1440 (a day)",
            ));
        }
        if !(1..=3600).contains(&self.health_timeout_s) {
            return Err((
                "update.health_timeout_s",
                self.health_timeout_s.to_string(),
                "must be between 1 and 3600",
            ));
        }
        if !(1..=4096).contains(&self.stream_max_mib) {
            return Err((
                "update.stream_max_mib",
                self.stream_max_mib.to_string(),
                "must be between 1 and 4096",
            ));
        }
        if self.health_checks.is_empty() {
            return Err((
                "update.health_checks",
                "[]".into(),
                "name at least one self-test check (e.g. \"store\"): an unchecked slot is never marked good",
            ));
        }
        Ok(())
    }
}
