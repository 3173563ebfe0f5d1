//! After a start: is the slot this system booted from confirmed? If RAUC
//! (the bootloader) does not call it good yet, it is a first boot after an
//! update: run the daemon's self-test until the checks that matter pass,
//! then `Mark("good", "booted")`. If they do not pass within
//! `health_timeout_s`, the slot is left unmarked and the bootloader's
//! boot counter falls back to the old slot at the next restart.
//!
//! ```text
//!  GetSlotStatus ─ booted slot good? ── yes ─► Mark good again (harmless, keeps
//!       │                                       rauc-mark-good semantics), no log
//!       no
//!       ▼
//!  self-test every 2 s ── required checks ok ─► Mark("good","booted") ─► MarkedGood
//!       └─ health_timeout_s passed ──────────────────────────────────────► NotMarked
//! ```
use std::time::Duration;

use super::rauc::{Rauc, RaucError};
use super::UpdateConfig;
use crate::core::input::UpdateReport;
use crate::core::Input;
use crate::dbus::BusChoice;
use crate::link::Link;

/// How often the self-test is run again while it fails.
const RETRY: Duration = Duration::from_secs(2);

/// See the module docs. Errors are reported to the engine (logged).
pub async fn confirm(config: &UpdateConfig, bus: &BusChoice, link: &Link) {
    let report = match check(config, bus, link).await {
        Ok(r) => r,
        Err(e) => Some(UpdateReport::NotMarked {
            reason: e.to_string(),
        }),
    };
    if let Some(r) = report {
        tracing::info!(?r, "update: booted slot");
        link.inputs().send(Input::Update(r)).await;
    }
}

async fn check(
    config: &UpdateConfig,
    bus: &BusChoice,
    link: &Link,
) -> Result<Option<UpdateReport>, RaucError> {
    let rauc = Rauc::connect(bus).await?;
    let booted = rauc
        .slots()
        .await?
        .into_iter()
        .find(|s| s.state == "booted");
    let first_boot = booted.as_ref().is_none_or(|s| s.boot_status != "good");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(config.health_timeout_s);
    let mut failing: Vec<String>;
    loop {
        failing = match link.self_test().await {
            Ok(checks) => config
                .health_checks
                .iter()
                .filter(|name| !checks.iter().any(|c| &&c.device == name && c.ok))
                .map(|name| {
                    let detail = checks
                        .iter()
                        .find(|c| &c.device == name)
                        .map_or("not checked on this board", |c| c.detail.as_str());
                    format!("{name}: {detail}")
                })
                .collect(),
            Err(e) => vec![format!("self-test: {e}")],
        };
        if failing.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(RETRY).await;
    }
    if !failing.is_empty() {
        super::flow::publish_slots(&rauc, link).await;
        return Ok(Some(UpdateReport::NotMarked {
            reason: format!(
                "the self-test did not pass within {} s ({}); the slot is not marked good",
                config.health_timeout_s,
                failing.join("; ")
            ),
        }));
    }
    let (slot, _message) = rauc.mark("good", "booted").await?;
    super::flow::publish_slots(&rauc, link).await;
    if !first_boot {
        return Ok(None);
    }
    let version = booted.map(|s| s.version).unwrap_or_default();
    Ok(Some(UpdateReport::MarkedGood { slot, version }))
}
