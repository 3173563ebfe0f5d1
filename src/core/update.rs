//! Software updates (issue 20): who may start one, when the lock may
//! install a bundle and restart into it, and which versions it accepts.
//! The bundle itself is RAUC's business (signature, slots, boot order);
//! the engine decides only what needs the lock's state.
//!
//! ```text
//!  StartUpdate (owner key) ──► Inspecting ── Inspected{version} ──► version rule
//!                              (Action::Update(Inspect): RAUC checks    │ refused: logged, over
//!                               the signature, reads the manifest)      ▼
//!                                                          WaitingToInstall ─ safe ─► Installing
//!                       blocked past max_wait: abandoned, nothing changed │ Progress…
//!                                                                          ▼ Installed
//!                                                          WaitingToRestart ─ safe ─► Restarting
//!                       blocked past max_wait: Abandon (the booted slot is made primary again)
//! ```
//!
//! A waiting update is kept in the store across a daemon restart and taken
//! up again ([`PendingUpdate`]).
//!
//! "Safe" ([`blockers`]): the door closed, the bolt out, the motor idle,
//! nobody in the menu or an enrolment, the battery at or above the
//! configured level or on external power, no lockout and no alarm. An
//! unknown door or battery blocks too: the rule fails closed.
use core::time::Duration;

use serde::{Deserialize, Serialize};

use super::event::AlarmKind;
use super::input::{BoltPosition, DoorPosition, PowerReading};
use super::lock::MotorState;
use super::time::Instant;
use super::types::UserNumber;

/// What the lock is configured with for updates (`[update]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdatePolicy {
    /// The image has RAUC and the daemon talks to it (`[update] bus`);
    /// without it every request is refused at once.
    pub enabled: bool,
    /// Below this charge (and not on external power) nothing installs.
    pub min_battery_percent: u8,
    /// How long an update waits for a safe moment, before the install and
    /// again before the restart, before it is abandoned.
    pub max_wait: Duration,
}

impl UpdatePolicy {
    pub const DEFAULT_MIN_BATTERY_PERCENT: u8 = 40;
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30 * 60);
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            enabled: true,
            min_battery_percent: Self::DEFAULT_MIN_BATTERY_PERCENT,
            max_wait: Self::DEFAULT_MAX_WAIT,
        }
    }
}

/// One reason the lock may not install or restart now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "blocker")]
pub enum Blocker {
    DoorOpen,
    /// No door sensor report yet (or the board has none).
    DoorUnknown,
    BoltNotExtended,
    /// The motor is moving or jammed.
    MotorBusy,
    /// Someone is in the keypad menu or an enrolment.
    MenuInUse,
    BatteryLow {
        percent: u8,
        need: u8,
    },
    /// No battery reading yet.
    BatteryUnknown,
    LockedOut,
    Alarm {
        alarm: AlarmKind,
    },
}

impl Blocker {
    /// What the owner is told.
    pub fn describe(&self) -> String {
        match self {
            Blocker::DoorOpen => "the door is open".into(),
            Blocker::DoorUnknown => "the door sensor has not reported".into(),
            Blocker::BoltNotExtended => "the bolt is not locked".into(),
            Blocker::MotorBusy => "the motor is moving or jammed".into(),
            Blocker::MenuInUse => "someone is in the menu or an enrolment".into(),
            Blocker::BatteryLow { percent, need } => {
                format!("the battery is at {percent}% (needs {need}% or USB-C power)")
            }
            Blocker::BatteryUnknown => "the battery level is not known yet".into(),
            Blocker::LockedOut => "the keypad is locked out".into(),
            Blocker::Alarm { alarm } => format!("the {alarm:?} alarm is active"),
        }
    }
}

/// The part of the lock's state the safety rule reads.
#[derive(Debug, Clone)]
pub struct Conditions<'a> {
    pub door: Option<DoorPosition>,
    pub bolt: BoltPosition,
    pub motor: MotorState,
    /// The keypad menu is idle (no menu, no enrolment, no reset prompt).
    pub menu_idle: bool,
    pub power: Option<PowerReading>,
    /// A timed lockout runs or the keypad is disabled.
    pub locked_out: bool,
    pub alarms: &'a [AlarmKind],
}

/// Everything that stops an install or a restart now; empty: safe.
pub fn blockers(policy: &UpdatePolicy, c: &Conditions<'_>) -> Vec<Blocker> {
    let mut b = Vec::new();
    match c.door {
        Some(DoorPosition::Closed) => {}
        Some(DoorPosition::Open) => b.push(Blocker::DoorOpen),
        None => b.push(Blocker::DoorUnknown),
    }
    if c.bolt != BoltPosition::Extended {
        b.push(Blocker::BoltNotExtended);
    }
    if c.motor != MotorState::Idle {
        b.push(Blocker::MotorBusy);
    }
    if !c.menu_idle {
        b.push(Blocker::MenuInUse);
    }
    match c.power {
        None => b.push(Blocker::BatteryUnknown),
        Some(p) if !p.external && p.percent < policy.min_battery_percent => {
            b.push(Blocker::BatteryLow {
                percent: p.percent,
                need: policy.min_battery_percent,
            })
        }
        Some(_) => {}
    }
    if c.locked_out {
        b.push(Blocker::LockedOut);
    }
    // The lockout alarm is the lockout (above) and a low battery is the
    // battery rule: each blocker is said once.
    for &alarm in c.alarms {
        if !matches!(
            alarm,
            AlarmKind::Lockout | AlarmKind::LowBattery | AlarmKind::Duress
        ) {
            b.push(Blocker::Alarm { alarm });
        }
    }
    b
}

/// Where an update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// RAUC checks the bundle's signature and reads its version.
    Inspecting,
    WaitingToInstall,
    Installing,
    WaitingToRestart,
    /// The restart was asked for; the next start is the new slot's.
    Restarting,
}

/// The update in progress (one at a time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Where RAUC fetches the bundle (checked by [`check_source`]).
    pub source: String,
    pub allow_older: bool,
    /// The administrator whose owner key asked for it.
    pub by: UserNumber,
    pub phase: Phase,
    /// The bundle's version, once inspected.
    pub version: Option<String>,
    /// While waiting: when the update is abandoned.
    pub wait_until: Option<Instant>,
    /// While waiting: what blocks it now.
    pub blocked_by: Vec<Blocker>,
    /// The last progress step logged (every [`PROGRESS_STEP`] %).
    pub logged_progress: u8,
    pub progress: u8,
}

/// An update waiting for a safe moment, as the store keeps it across a
/// daemon restart (committed before the actions of the call that began
/// the wait). Only the waiting phases are kept: inspecting and installing
/// are RAUC's operations, and restarting ends in the next boot.
///
/// On the next start ([`Engine::resume_update`]):
/// * `running` is not the version running now: the update is over (the
///   board restarted into it, or the image changed): forgotten.
/// * waiting to install: RAUC inspects the bundle again before anything
///   waits — what the URL serves may have changed while the lock was down,
///   and the version rule is applied to what will be installed.
/// * waiting to restart: the other slot is written and primary; the wait
///   for a safe moment starts again (a new `max_wait`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpdate {
    pub source: String,
    pub allow_older: bool,
    pub by: UserNumber,
    pub phase: Phase,
    pub version: Option<String>,
    /// The version that was running when it began to wait.
    pub running: String,
}

/// Install progress is logged every this many percent (the log is bounded).
pub const PROGRESS_STEP: u8 = 25;

/// The status a channel shows for the update in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub phase: Phase,
    pub version: Option<String>,
    pub progress: u8,
    pub blocked_by: Vec<Blocker>,
}

impl Job {
    pub fn status(&self) -> UpdateStatus {
        UpdateStatus {
            phase: self.phase,
            version: self.version.clone(),
            progress: self.progress,
            blocked_by: self.blocked_by.clone(),
        }
    }
}

/// Why an update request or bundle was refused by the lock (RAUC's own
/// refusals come back as [`super::event::EventKind::UpdateFailed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "refusal")]
pub enum UpdateRefusal {
    #[error("the bundle's version {offered} is not newer than the installed {installed}; the owner must allow an older bundle explicitly")]
    NotNewer { installed: String, offered: String },
    #[error("the version {version:?} is not of the form 1.2.3 (optionally -suffix)")]
    BadVersion { version: String },
    #[error("the bundle source must be an http:// or https:// URL of at most {max} bytes without spaces or control characters, or a streamed bundle's stream:<sha256>")]
    BadSource { max: usize },
}

/// The longest bundle URL accepted.
pub const MAX_SOURCE: usize = 1024;

/// The source of a bundle streamed to the lock over BLE and checked
/// against its sha256 (`app::bundle`): this prefix and the sha256 in hex.
/// The update task resolves it to the file in its own directory; an app
/// never names a path.
pub const STREAM_SOURCE_PREFIX: &str = "stream:";

/// The app gives a URL; RAUC fetches it (it would also take a local path,
/// which an app has no business naming), or a streamed bundle's
/// `stream:<sha256>`. Scheme checked case-sensitively: RAUC's streaming
/// client is given exactly what was checked.
pub fn check_source(source: &str) -> Result<(), UpdateRefusal> {
    let bad = UpdateRefusal::BadSource { max: MAX_SOURCE };
    if let Some(hex) = source.strip_prefix(STREAM_SOURCE_PREFIX) {
        let digest = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        return if digest { Ok(()) } else { Err(bad) };
    }
    let rest = source
        .strip_prefix("https://")
        .or_else(|| source.strip_prefix("http://"))
        .ok_or(bad.clone())?;
    if rest.is_empty()
        || source.len() > MAX_SOURCE
        || source.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(bad);
    }
    Ok(())
}

/// A version as RAUC's manifest and latchd's build give it:
/// `MAJOR.MINOR.PATCH` with an optional `-pre` suffix (a pre-release is
/// older than its release, as in SemVer).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    numbers: [u64; 3],
    /// `None` sorts after every `Some`: a release is newer than its
    /// pre-releases.
    release: ReleaseKey,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum ReleaseKey {
    Pre(String),
    Release,
}

impl Version {
    pub fn parse(s: &str) -> Result<Version, UpdateRefusal> {
        let bad = || UpdateRefusal::BadVersion { version: s.into() };
        // Build metadata (`+…`) does not order versions.
        let s_core = s.split('+').next().unwrap_or("");
        let (nums, pre) = match s_core.split_once('-') {
            Some((n, p)) if !p.is_empty() => (n, Some(p)),
            Some(_) => return Err(bad()),
            None => (s_core, None),
        };
        let mut numbers = [0u64; 3];
        let mut parts = nums.split('.');
        for n in numbers.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 18 {
                return Err(bad());
            }
            *n = p.parse().map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Version {
            numbers,
            release: pre.map_or(ReleaseKey::Release, |p| ReleaseKey::Pre(p.into())),
        })
    }
}

/// The downgrade rule: a bundle must be newer than what runs, unless the
/// owner allowed an older one. A version that does not parse is refused
/// either way (nothing is installed on a guess).
pub fn version_rule(
    installed: &str,
    offered: &str,
    allow_older: bool,
) -> Result<(), UpdateRefusal> {
    let new = Version::parse(offered)?;
    if allow_older {
        return Ok(());
    }
    let old = Version::parse(installed)?;
    if new > old {
        Ok(())
    } else {
        Err(UpdateRefusal::NotNewer {
            installed: installed.into(),
            offered: offered.into(),
        })
    }
}

// ----- the engine's side -----

use super::action::{Action, AppError, AppOk, AppResult, Prompt, UpdateCmd};
use super::engine::{Engine, Mode, Out};
use super::event::EventKind;
use super::input::{Channel, UpdateReport};

impl Engine {
    /// An owner asked for an update (the caller checked the role).
    pub(super) fn start_update(
        &mut self,
        out: &mut Out,
        by: UserNumber,
        via: Channel,
        source: String,
        allow_older: bool,
    ) -> AppResult {
        if !self.config.update.enabled {
            return Err(AppError::UpdatesOff);
        }
        if self.update.is_some() {
            return Err(AppError::UpdateInProgress);
        }
        check_source(&source).map_err(AppError::UpdateRefused)?;
        self.log(
            out,
            EventKind::UpdateRequested {
                by,
                via,
                allow_older,
            },
        );
        out.push(Action::Update(UpdateCmd::Inspect {
            source: source.clone(),
        }));
        self.update = Some(Job {
            source,
            allow_older,
            by,
            phase: Phase::Inspecting,
            version: None,
            wait_until: None,
            blocked_by: Vec::new(),
            logged_progress: 0,
            progress: 0,
        });
        Ok(AppOk::Done)
    }

    /// What the update task reports back.
    pub(super) fn on_update(&mut self, out: &mut Out, r: UpdateReport) {
        // After a restart into a new slot: the daemon's verdict on itself.
        match r {
            UpdateReport::MarkedGood { slot, version } => {
                self.end_update(out, EventKind::UpdateMarkedGood { slot, version });
                return;
            }
            UpdateReport::NotMarked { reason } => {
                self.end_update(out, EventKind::UpdateNotMarked { reason });
                return;
            }
            _ => {}
        }
        let Some(job) = self.update.as_mut() else {
            // A report for no job (a stale one after an abandon): nothing to do.
            return;
        };
        match (job.phase, r) {
            (Phase::Inspecting, UpdateReport::Inspected { version }) => {
                job.version = Some(version.clone());
                let rule = version_rule(&self.config.firmware, &version, job.allow_older);
                match rule {
                    Ok(()) => self.wait_for_safe(out, Phase::WaitingToInstall),
                    Err(refusal) => {
                        self.update = None;
                        self.end_update(out, EventKind::UpdateRefused { refusal });
                    }
                }
            }
            (Phase::Installing, UpdateReport::Progress { percent }) => {
                let percent = percent.min(100);
                job.progress = percent;
                let step = percent / PROGRESS_STEP * PROGRESS_STEP;
                if step > job.logged_progress && percent < 100 {
                    job.logged_progress = step;
                    self.log(out, EventKind::UpdateProgress { percent: step });
                }
            }
            (Phase::Installing, UpdateReport::Installed) => {
                job.progress = 100;
                let version = job.version.clone().unwrap_or_default();
                self.end_update(out, EventKind::UpdateInstalled { version });
                self.wait_for_safe(out, Phase::WaitingToRestart);
            }
            (
                Phase::Inspecting | Phase::Installing | Phase::Restarting,
                UpdateReport::Failed { error },
            ) => {
                let phase = job.phase;
                self.update = None;
                self.end_update(out, EventKind::UpdateFailed { phase, error });
            }
            // Anything else (a late progress line, a report for a phase
            // already left) changes nothing.
            _ => {}
        }
    }

    /// Enter a waiting phase and go on at once if nothing blocks.
    fn wait_for_safe(&mut self, out: &mut Out, phase: Phase) {
        let until = self.now.mono + self.config.update.max_wait;
        let blocked_by = self.update_blockers();
        if let Some(job) = self.update.as_mut() {
            job.phase = phase;
            job.wait_until = Some(until);
            job.blocked_by = blocked_by.clone();
        }
        if blocked_by.is_empty() {
            self.proceed_update(out);
        } else {
            self.log(out, EventKind::UpdateWaiting { phase, blocked_by });
        }
    }

    /// After every input: a waiting update goes on once it is safe, or is
    /// abandoned when its wait runs out.
    pub(super) fn drive_update(&mut self, out: &mut Out) {
        let Some(job) = self.update.as_ref() else {
            return;
        };
        if !matches!(job.phase, Phase::WaitingToInstall | Phase::WaitingToRestart) {
            return;
        }
        let blocked_by = self.update_blockers();
        if blocked_by.is_empty() {
            self.proceed_update(out);
            return;
        }
        let expired = job.wait_until.is_some_and(|t| self.now.mono >= t);
        let phase = job.phase;
        if expired {
            self.update = None;
            if phase == Phase::WaitingToRestart {
                // Installed but never safe to restart: the booted slot is
                // made primary again, so a later power cut does not start
                // the new one at an unsafe moment either.
                out.push(Action::Update(UpdateCmd::Abandon));
            }
            self.end_update(out, EventKind::UpdateAbandoned { phase, blocked_by });
        } else if let Some(job) = self.update.as_mut() {
            job.blocked_by = blocked_by;
        }
    }

    /// Log how an update ended (or the verdict on a booted slot) and keep
    /// it for the status.
    /// The update the store kept across a restart (see [`PendingUpdate`]),
    /// taken up on the first call after the start.
    fn resume_update(&mut self, out: &mut Out, p: PendingUpdate) {
        if p.running != self.config.firmware || self.update.is_some() || !self.config.update.enabled
        {
            return;
        }
        self.update = Some(Job {
            source: p.source.clone(),
            allow_older: p.allow_older,
            by: p.by,
            phase: Phase::Inspecting,
            version: p.version,
            wait_until: None,
            blocked_by: Vec::new(),
            logged_progress: 0,
            progress: 0,
        });
        match p.phase {
            Phase::WaitingToRestart => {
                if let Some(job) = self.update.as_mut() {
                    job.progress = 100;
                }
                self.wait_for_safe(out, Phase::WaitingToRestart);
            }
            _ => out.push(Action::Update(UpdateCmd::Inspect { source: p.source })),
        }
    }

    /// Keep the store's copy of a waiting update in step with the job:
    /// written when a wait begins, removed when it ends. Put last: a write
    /// that fails (a full partition) stops only itself, never an attempt's
    /// record or a revocation of the same call; a crash before it leaves the
    /// previous copy, which the next start judges again (a wait repeated, an
    /// install inspected again, or a copy of a version no longer running
    /// forgotten).
    pub(super) fn persist_pending_update(&mut self, out: &mut Out) {
        if let Some(p) = self.resume.take() {
            self.resume_update(out, p);
        }
        let want = self.update.as_ref().and_then(|j| {
            matches!(j.phase, Phase::WaitingToInstall | Phase::WaitingToRestart).then(|| {
                PendingUpdate {
                    source: j.source.clone(),
                    allow_older: j.allow_older,
                    by: j.by,
                    phase: j.phase,
                    version: j.version.clone(),
                    running: self.config.firmware.clone(),
                }
            })
        });
        if want != self.pending_saved {
            out.push(Action::Persist(vec![
                super::types::Change::PutPendingUpdate(want.clone()),
            ]));
            self.pending_saved = want;
        }
    }

    fn end_update(&mut self, out: &mut Out, kind: EventKind) {
        let refused = matches!(
            kind,
            EventKind::UpdateRefused { .. } | EventKind::UpdateFailed { .. }
        );
        self.last_update = Some(kind.clone());
        self.log(out, kind);
        // A refusal comes later than the request (RAUC's verdict), so the
        // lock says it; never into someone's menu or enrolment, whose
        // prompts it would break (the owner's app and the log have it).
        if refused && matches!(self.mode, Mode::Idle) {
            self.say(out, Prompt::UpdateNotInstalled);
        }
    }

    fn proceed_update(&mut self, out: &mut Out) {
        let Some(job) = self.update.as_mut() else {
            return;
        };
        job.blocked_by.clear();
        job.wait_until = None;
        let version = job.version.clone().unwrap_or_default();
        match job.phase {
            Phase::WaitingToInstall => {
                job.phase = Phase::Installing;
                let source = job.source.clone();
                self.log(out, EventKind::UpdateInstalling { version });
                out.push(Action::Update(UpdateCmd::Install { source }));
                // Safe means idle too (no menu): whoever is at the door
                // hears why the lock is busy.
                self.say(out, Prompt::UpdateInstalling);
            }
            Phase::WaitingToRestart => {
                job.phase = Phase::Restarting;
                self.log(out, EventKind::UpdateRestarting { version });
                // Said before the restart is asked for: the runtime applies
                // actions in order, so the prompt plays before logind stops
                // the daemon.
                self.say(out, Prompt::UpdateRestarting);
                out.push(Action::Update(UpdateCmd::Restart));
            }
            _ => {}
        }
    }

    pub(super) fn update_blockers(&self) -> Vec<Blocker> {
        let alarms: Vec<AlarmKind> = self.alarms.iter().map(|(k, _)| *k).collect();
        blockers(
            &self.config.update,
            &Conditions {
                door: self.mech.door,
                bolt: self.mech.bolt,
                motor: self.mech.motor,
                menu_idle: matches!(self.mode, Mode::Idle),
                power: self.power,
                locked_out: self.lockout.is_locked(self.now.mono) || self.lockout.keypad_disabled(),
                alarms: &alarms,
            },
        )
    }

    /// When a waiting update is abandoned.
    pub(super) fn update_deadline(&self) -> Option<Instant> {
        self.update.as_ref().and_then(|j| j.wait_until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_like_semver() {
        assert!(version_rule("1.2.3", "1.2.4", false).is_ok());
        assert!(version_rule("1.2.3", "1.10.0", false).is_ok());
        assert!(version_rule("1.2.3-rc1", "1.2.3", false).is_ok());
        assert!(matches!(
            version_rule("1.2.3", "1.2.3-rc1", false),
            Err(UpdateRefusal::NotNewer { .. })
        ));
        assert!(matches!(
            version_rule("1.2.3", "1.2.3", false),
            Err(UpdateRefusal::NotNewer { .. })
        ));
        assert!(version_rule("1.2.3", "1.0.0", true).is_ok());
        for bad in ["", "1.2", "1.2.3.4", "v1.2.3", "1.2.x", "1.2.3-", "1..3"] {
            assert!(
                matches!(
                    version_rule("1.2.3", bad, true),
                    Err(UpdateRefusal::BadVersion { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_http_urls_are_sources() {
        assert!(check_source("https://example.net/lock-1.2.raucb").is_ok());
        assert!(check_source("http://127.0.0.1:8080/b.raucb").is_ok());
        for bad in [
            "/data/bundle.raucb",
            "file:///data/b.raucb",
            "https://",
            "https://a b",
            "https://a\nb",
            "HTTPS://x",
        ] {
            assert!(check_source(bad).is_err(), "{bad:?}");
        }
        assert!(check_source(&format!("https://{}", "a".repeat(MAX_SOURCE))).is_err());
        // A streamed bundle is named by its sha256 only, never by a path.
        assert!(check_source(&format!("stream:{}", "0a".repeat(32))).is_ok());
        for bad in [
            "stream:",
            "stream:../x",
            "stream:0A",
            &format!("stream:{}", "0A".repeat(32)),
        ] {
            assert!(check_source(bad).is_err(), "{bad:?}");
        }
    }
}
