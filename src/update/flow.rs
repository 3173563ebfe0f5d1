//! The update task: does what the engine asks (`core::update`) through
//! RAUC, and tells the engine how it went.
//!
//! ```text
//!  Action::Update(cmd) ── mpsc ──► run ─┬ Inspect  ─► Info(source)           ─► Inspected{version} | Failed
//!                                       ├ Install  ─► InstallBundle + Progress ─► Progress… ─► Installed | Failed
//!                                       ├ Restart  ─► logind Reboot(false)     ─► (the system goes down) | Failed
//!                                       └ Abandon  ─► Mark("active", "booted") (the old slot stays primary)
//!  at start ─► boot::confirm: the self-test, then Mark("good", "booted") (see boot.rs)
//! ```
//!
//! One command at a time: the engine holds one update, and an install is
//! awaited to its end before the next command is read.
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::rauc::{Rauc, RaucError};
use super::UpdateConfig;
use crate::core::action::UpdateCmd;
use crate::core::input::UpdateReport;
use crate::core::Input;
use crate::dbus::BusChoice;
use crate::link::Link;

const LOGIND: &str = "org.freedesktop.login1";
const LOGIND_PATH: &str = "/org/freedesktop/login1";
const LOGIND_MANAGER: &str = "org.freedesktop.login1.Manager";

/// Start the update task (and the start-up check of the booted slot).
pub fn spawn(
    config: UpdateConfig,
    bus: BusChoice,
    link: Link,
    cmds: mpsc::UnboundedReceiver<UpdateCmd>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let boot = super::boot::confirm(&config, &bus, &link);
        let serve = serve(&bus, &link, &config, cmds);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = async { tokio::join!(boot, serve) } => {}
        }
    })
}

/// The slot not booted (the A/B partner), for the app's status. With more
/// than two slots (e.g. a rescue slot) the first one not booted that has
/// a boot name.
fn other_slot(slots: &[super::rauc::Slot]) -> Option<crate::app::wire::SlotSummary> {
    slots
        .iter()
        .find(|s| s.state != "booted" && !s.bootname.is_empty())
        .map(|s| crate::app::wire::SlotSummary {
            bootname: s.bootname.clone(),
            version: s.version.clone(),
            good: match s.boot_status.as_str() {
                "good" => Some(true),
                "bad" => Some(false),
                _ => None,
            },
        })
}

/// Read RAUC's slots for the diagnostics (`UpdateSlots`): one line each,
/// `rootfs.1 (B) inactive good 0.2.0`. A failure leaves the last reading.
pub(super) async fn publish_slots(rauc: &Rauc, link: &Link) {
    match rauc.slots().await {
        Ok(slots) => link.health().set_update_slots(
            slots
                .iter()
                .map(|s| {
                    let field = |v: &str| {
                        if v.is_empty() {
                            "-".to_string()
                        } else {
                            v.to_string()
                        }
                    };
                    format!(
                        "{} ({}) {} {} {}",
                        s.name,
                        field(&s.bootname),
                        field(&s.state),
                        field(&s.boot_status),
                        field(&s.version)
                    )
                })
                .collect(),
            other_slot(&slots),
        ),
        Err(e) => tracing::warn!("update: cannot read RAUC's slots: {e}"),
    }
}

async fn serve(
    bus: &BusChoice,
    link: &Link,
    config: &UpdateConfig,
    mut cmds: mpsc::UnboundedReceiver<UpdateCmd>,
) {
    while let Some(cmd) = cmds.recv().await {
        let cmd = resolve(config, cmd);
        let result = perform(bus, link, &cmd).await;
        forget_streamed(config, &cmd, &result);
        let report = match result {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(?cmd, "update: {e}");
                UpdateReport::Failed {
                    error: e.to_string(),
                }
            }
        };
        if matches!(cmd, UpdateCmd::Install { .. } | UpdateCmd::Abandon) {
            if let Ok(rauc) = Rauc::connect(bus).await {
                publish_slots(&rauc, link).await;
            }
        }
        if !link.inputs().send(Input::Update(report)).await {
            return;
        }
    }
}

/// A streamed bundle's `stream:<sha256>` as the file RAUC reads (in
/// `[update] stream_dir`); a URL as it is.
fn resolve(config: &UpdateConfig, cmd: UpdateCmd) -> UpdateCmd {
    let Some(dir) = config.stream_dir.as_deref() else {
        return cmd;
    };
    let path = |source: String| match super::stream::BundleStream::resolve(dir, &source) {
        Some(p) => p.to_string_lossy().into_owned(),
        None => source,
    };
    match cmd {
        UpdateCmd::Inspect { source } => UpdateCmd::Inspect {
            source: path(source),
        },
        UpdateCmd::Install { source } => UpdateCmd::Install {
            source: path(source),
        },
        other => other,
    }
}

/// A streamed bundle is removed once RAUC has installed it, or refused
/// or failed it: nothing will read it again (a new request streams it
/// again).
fn forget_streamed(
    config: &UpdateConfig,
    cmd: &UpdateCmd,
    result: &Result<Option<UpdateReport>, RaucError>,
) {
    let (Some(dir), UpdateCmd::Inspect { source } | UpdateCmd::Install { source }) =
        (config.stream_dir.as_deref(), cmd)
    else {
        return;
    };
    let done = matches!(cmd, UpdateCmd::Install { .. }) || result.is_err();
    if done && std::path::Path::new(source).parent() == Some(dir) {
        if let Err(e) = std::fs::remove_file(source) {
            tracing::warn!(%source, "update: cannot remove the streamed bundle: {e}");
        }
    }
}

/// One command; `Ok(None)`: nothing to report.
async fn perform(
    bus: &BusChoice,
    link: &Link,
    cmd: &UpdateCmd,
) -> Result<Option<UpdateReport>, RaucError> {
    match cmd {
        UpdateCmd::Inspect { source } => {
            let rauc = Rauc::connect(bus).await?;
            let (compatible, version) = rauc.info(source).await?;
            tracing::info!(%compatible, %version, "update: RAUC accepted the bundle's signature");
            Ok(Some(UpdateReport::Inspected { version }))
        }
        UpdateCmd::Install { source } => {
            let rauc = Rauc::connect(bus).await?;
            let inputs = link.inputs().clone();
            rauc.install(source, |percent| {
                // Progress is advisory: a full queue drops a step, never
                // the result.
                let _ = inputs.try_send(Input::Update(UpdateReport::Progress { percent }));
            })
            .await?;
            Ok(Some(UpdateReport::Installed))
        }
        UpdateCmd::Restart => {
            tracing::info!("update: restarting into the new slot (logind Reboot)");
            reboot(bus)
                .await
                .map_err(|e| RaucError::Failed(format!("cannot ask {LOGIND} to restart: {e}")))?;
            Ok(None)
        }
        UpdateCmd::Abandon => {
            let rauc = Rauc::connect(bus).await?;
            let (slot, message) = rauc.mark("active", "booted").await?;
            tracing::info!(%slot, %message, "update abandoned: the booted slot is primary again");
            Ok(None)
        }
    }
}

/// `org.freedesktop.login1.Manager.Reboot(interactive = false)`: systemd
/// stops every unit in order (latchd too: SIGTERM, the bolt left as it is).
async fn reboot(bus: &BusChoice) -> zbus::Result<()> {
    let conn = crate::dbus::connection_builder(bus)?.build().await?;
    let proxy = zbus::Proxy::new(&conn, LOGIND, LOGIND_PATH, LOGIND_MANAGER).await?;
    proxy.call::<_, _, ()>("Reboot", &(false,)).await
}
