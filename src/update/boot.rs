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

/// How often the self-test (or a busy RAUC) is asked again.
const RETRY: Duration = Duration::from_secs(2);
/// How long a busy RAUC is asked again at least (`GetSlotStatus`), and
/// the extra time for `Mark` once the checks passed.
const MARK_GRACE: Duration = Duration::from_secs(10);

/// `call` until it succeeds or `deadline` passes (the last error then).
async fn until_deadline<T, F, Fut>(
    deadline: tokio::time::Instant,
    mut call: F,
) -> Result<T, RaucError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RaucError>>,
{
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() + RETRY < deadline => {
                tracing::debug!(error = %e, "update: RAUC did not answer; asking again");
                tokio::time::sleep(RETRY).await;
            }
            Err(e) => return Err(e),
        }
    }
}

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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(config.health_timeout_s);
    let rauc = Rauc::connect(bus).await?;
    // RAUC answers "already processing a different method" while it is
    // busy (just started, or serving another client): transient, so it is
    // asked again for a while (at least `MARK_GRACE`) — giving up at once
    // would leave a good slot unmarked and roll a working update back.
    let ask_until = deadline.max(tokio::time::Instant::now() + MARK_GRACE);
    let slots = until_deadline(ask_until, || rauc.slots()).await?;
    let booted = slots.into_iter().find(|s| s.state == "booted");
    let first_boot = booted.as_ref().is_none_or(|s| s.boot_status != "good");
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
    // The mark gets the same patience, with a little time past the health
    // bound: the checks passed, only RAUC was busy.
    let mark_deadline = tokio::time::Instant::now().max(deadline) + MARK_GRACE;
    let (slot, _message) = until_deadline(mark_deadline, || rauc.mark("good", "booted")).await?;
    super::flow::publish_slots(&rauc, link).await;
    if !first_boot {
        return Ok(None);
    }
    let version = booted.map(|s| s.version).unwrap_or_default();
    Ok(Some(UpdateReport::MarkedGood { slot, version }))
}
