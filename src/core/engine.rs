//! The engine value: state, the `handle` dispatch, deadlines and status.
//!
//! ```text
//!  handle(now, input)
//!    1. expire every deadline ≤ now   (lockout end, pairing end, auto-lock,
//!                                      alarm end, keypad sleep, reset window)
//!    2. dispatch the input            keypad/menu (menu.rs) · credentials ·
//!                                      app (app.rs) · sensors · alarms
//!    3. emit the keypad view if it changed
//!  → Vec<Action>, persist before the prompt that reports success
//! ```
//!
//! The rules that need a judgement the spec leaves open are decided where
//! they are implemented, in a doc comment that starts with "Decision".
use core::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::action::{
    Action, AlarmCmd, KeypadView, ModuleCmd, MotorCmd, Notice, Prompt, SnapshotReason, Trace,
};
use super::attempt::FaceAttempt;
use super::auto_face::AutoFace;
use super::door::DoorWatch;
use super::event::{AlarmKind, Event, EventKind, LockHow};
use super::input::{
    BoltPosition, DoorPosition, Input, MotorReport, PowerReading, SetPress, TamperState, WifiStatus,
};
use super::lang::Language;
use super::lock::{self, LockMech, LockState, MotorState};
use super::noise::{Admit, NoiseBudget, NoiseKind};
use super::passcode::Macer;
use super::policy::Lockout;
use super::redacted::Redacted;
use super::time::{Instant, Now, WallTime};
use super::trusted_time::TrustedTime;
use super::types::{
    Change, Handing, Key, LockoutRecord, Method, Modality, Persisted, Role, Settings, UserNumber,
};
use super::users::{CredentialCounts, Directory};

/// B-3.2: the keypad sleeps after this long without input.
pub const KEYPAD_SLEEP: Duration = Duration::from_secs(20);
/// B-5.2: pairing mode ends by itself.
pub const PAIRING_WINDOW: Duration = Duration::from_secs(3 * 60);
/// B-10.4: the tamper alarm sounds for about a minute.
pub const TAMPER_ALARM: Duration = Duration::from_secs(60);
/// A jam beeps briefly; the prompt says what happened.
pub const JAM_ALARM: Duration = Duration::from_secs(5);
/// B-10.6: how long the lock waits for "✓" after asking to confirm a
/// factory reset. Decision: 30 s, then nothing is erased.
pub const FACTORY_RESET_WINDOW: Duration = Duration::from_secs(30);
/// How long the mute confirmation flash of "0" lasts (B-3.4, "flashes twice").
pub const MUTE_FLASH: Duration = Duration::from_secs(1);
/// How long "0" flashes when the lock identifies itself (Improv).
pub const IDENTIFY_FLASH: Duration = Duration::from_secs(3);
/// Identify requests need no authorisation (Improv), so anyone in BLE
/// range may send them: the lock answers at most one per this gap.
pub const IDENTIFY_GAP: Duration = Duration::from_secs(10);

/// What the engine is configured with at start-up.
#[derive(Clone)]
pub struct EngineConfig {
    /// MAC key for passcodes, derived by the store from the device key.
    pub passcode_key: [u8; 32],
    pub serial: String,
    pub firmware: String,
    /// The verification code of each pairing generation: spoken by system
    /// information (B-4.10) and proved by a pairing app (B-5.1).
    pub pairing_codes: PairingCodes,
    /// B-10.1: below this the low-battery prompt and LED come on. Default 20.
    pub low_battery_percent: u8,
    /// The Matter manual pairing code, spoken by system information (B-4.10)
    /// when the lock runs a Matter node; `None` otherwise.
    pub matter_code: Option<String>,
    /// Where the app gives a one-time visitor code no end, it ends this
    /// long after it was made (issue 13: every visitor code has an end).
    pub one_time_code_ttl: Duration,
    /// B-10.7: a connected signal below this (dBm) for a while is weak.
    pub weak_wifi_dbm: i16,
    /// When updates may install (issue 20, `core::update`).
    pub update: super::update::UpdatePolicy,
    /// The prompt language until an administrator or the owner chooses
    /// one (`[prompts] language`; issue 17 item 4), and again after a
    /// factory reset.
    pub default_language: Language,
    /// The lock's time zone for schedules (`[lock] time_zone`, issue 17
    /// item 2): the daemon builds it from the zone's TZif data.
    pub time_zone: super::schedule::LocalZone,
}

impl core::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("serial", &self.serial)
            .field("firmware", &self.firmware)
            .field("low_battery_percent", &self.low_battery_percent)
            .field("one_time_code_ttl", &self.one_time_code_ttl)
            .finish_non_exhaustive()
    }
}

impl EngineConfig {
    pub const DEFAULT_LOW_BATTERY_PERCENT: u8 = 20;
    /// A one-time visitor code made without an end lasts a day.
    pub const DEFAULT_ONE_TIME_CODE_TTL: Duration = Duration::from_secs(24 * 3600);
}

#[cfg(test)]
impl EngineConfig {
    /// A lock for the unit tests of the layers around the engine: a fixed
    /// passcode key, this serial, every other setting at its default.
    pub(crate) fn for_tests(serial: &str) -> Self {
        EngineConfig {
            passcode_key: [1; 32],
            serial: serial.into(),
            firmware: "0".into(),
            pairing_codes: PairingCodes::new(|_| "X".into()),
            low_battery_percent: 20,
            one_time_code_ttl: EngineConfig::DEFAULT_ONE_TIME_CODE_TTL,
            matter_code: None,
            weak_wifi_dbm: super::wifi_signal::DEFAULT_WEAK_DBM,
            update: super::update::UpdatePolicy::default(),
            default_language: Language::En,
            time_zone: super::schedule::LocalZone::utc(),
        }
    }
}

/// The verification code of each pairing generation (issue 13 item 6):
/// generation 0 is the code printed on the label; every owner pairing
/// moves the lock to the next, which only system information speaks (at
/// the lock, B-4.10). The runtime derives them from the device key; the
/// engine only needs to say the current one.
#[derive(Clone)]
pub struct PairingCodes(std::sync::Arc<dyn Fn(u32) -> String + Send + Sync>);

impl PairingCodes {
    pub fn new(f: impl Fn(u32) -> String + Send + Sync + 'static) -> Self {
        PairingCodes(std::sync::Arc::new(f))
    }

    /// The code of `generation`.
    pub fn code(&self, generation: u32) -> String {
        (self.0)(generation)
    }
}

impl core::fmt::Debug for PairingCodes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PairingCodes(..)")
    }
}

/// A snapshot of the lock for diagnostics (D-Bus), the app's home page
/// (B-9.1) and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub lock: LockState,
    pub bolt: BoltPosition,
    pub door: Option<DoorPosition>,
    pub battery_percent: Option<u8>,
    pub battery_millivolts: Option<u32>,
    pub external_power: bool,
    pub low_battery: bool,
    /// Wi-Fi turned on in the settings.
    pub wifi_enabled: bool,
    pub wifi_connected: bool,
    pub wifi_rssi: Option<i16>,
    /// B-10.7: connected, but the signal stayed below the weak line.
    pub wifi_weak: bool,
    pub ble_connected: bool,
    pub active_alarms: Vec<AlarmKind>,
    pub lockout_active: bool,
    pub lockout_remaining: Option<Duration>,
    /// Failed verifications of the last five minutes (B-7.1).
    pub recent_failures: usize,
    /// Guesses counted against the brute-force budget (see `core::policy`).
    pub strikes: u32,
    /// Lockout levels reached since the last release.
    pub lockout_level: u32,
    /// The keypad refuses passcodes until the owner releases it.
    pub keypad_disabled: bool,
    /// The wall time the engine uses now (`None`: unknown or behind the
    /// trusted floor, so time-windowed credentials are refused).
    pub wall_time: Option<WallTime>,
    /// The high-water mark of trusted wall time.
    pub time_floor: Option<WallTime>,
    /// Owner pairings so far (the verification code's generation).
    pub pairing_generation: u32,
    pub pairing_mode: bool,
    pub away_armed: bool,
    pub muted: bool,
    pub keypad: KeypadView,
    pub last_prompt: Option<Prompt>,
    pub counts: CredentialCounts,
    /// The keypad/menu step, e.g. `idle`, `menu`, `enrol.fingerprint`.
    pub step: String,
    pub handing: Option<Handing>,
    pub motor_cycles: u64,
    pub settings: Settings,
    /// The language prompts are said in now: the setting, else the
    /// config's default (issue 17 item 4).
    pub language: Language,
    /// The running software version (`EngineConfig::firmware`).
    #[serde(default)]
    pub firmware: String,
    /// The software update in progress (issue 20), if any.
    pub update: Option<super::update::UpdateStatus>,
    /// How the last update ended, or what the start-up check said of the
    /// booted slot (an `Update…` event kind; memory only).
    pub last_update: Option<EventKind>,
    /// The schedules in force (issue 17 item 2).
    #[serde(default)]
    pub schedules: super::schedule::ScheduleStatus,
}

/// A target of an enrolment: the user being created or extended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target {
    pub user: UserNumber,
    pub role: Role,
    /// Not stored yet: the first credential stores it (B-4.11).
    pub new: bool,
    /// Started by the owner's app (issue 17 item 1): the person at the
    /// lock enrols one credential and is never shown the menu.
    pub remote: bool,
}

/// The keypad/menu state machine (B-2, B-4, B-10.6).
#[derive(Debug)]
pub(super) enum Mode {
    /// Normal operation: passcode entry for unlocking, outside lock, away,
    /// doorbell. With no administrator this is the *initial state* (B-2.4).
    Idle,
    /// B-2.1: `confirmed` once "✓" was pressed and "1"/"2" are lit.
    ChooseDirection {
        confirmed: bool,
    },
    /// B-4.1: SET was pressed; an administrator credential opens the menu.
    VerifyAdmin,
    Menu(Menu),
    /// B-10.6: waiting for "✓" to erase everything.
    FactoryReset {
        until: Instant,
    },
}

#[derive(Debug)]
pub(super) enum Menu {
    Main,
    ChooseMethod(Target),
    /// Issue 17 item 1: the number of the user to add a credential to.
    Modify,
    Enrol {
        target: Target,
        modality: Modality,
        slot: u16,
    },
    Passcode {
        target: Target,
        /// `Passcode`, or `DuressPasscode` (method 5, B-6.9 set at the lock).
        kind: super::types::CredentialKind,
        /// The first entry, once given; the second must match it.
        first: Option<Redacted<Vec<u8>>>,
    },
    Delete,
    /// Issue 17 item 1 ("0" in `ChooseMethod`): which of the user's
    /// credentials to delete, one key per kind the user holds.
    DeleteCredential(Target),
    /// Issue 17 item 4 (menu "6"): choosing the prompt language, one key
    /// per language (`Language::menu_key`).
    Language,
    /// B-4.10: the system information is being spoken. The menu's keys
    /// work as in `Main` (the announcement's end is the menu again); "↩"
    /// interrupts it and stays in the menu instead of leaving it.
    SystemInfo,
}

/// The keypad: awake or asleep, what was typed, what is shown.
#[derive(Debug, Default)]
pub(super) struct Keypad {
    pub awake: bool,
    pub sleep_at: Option<Instant>,
    /// Digits typed in the current step. Wiped (zeroized) whenever cleared.
    pub buffer: Redacted<Vec<u8>>,
    pub digits_shown: Vec<u8>,
    pub flash_until: Option<Instant>,
    pub last_view: Option<KeypadView>,
}

impl Keypad {
    pub fn clear(&mut self) {
        self.buffer.zeroize();
    }
}

/// The lock engine. See the module docs of [`crate::core`].
pub struct Engine {
    pub(super) config: EngineConfig,
    pub(super) macer: Macer,
    pub(super) handing: Option<Handing>,
    pub(super) dir: Directory,
    pub(super) settings: Settings,
    pub(super) lockout: Lockout,
    /// The trusted-time floor (issue 13 item 3).
    pub(super) trusted: TrustedTime,
    /// Automatic face recognition's own budget (B-6.2).
    pub(super) auto_face: AutoFace,
    /// The event log's budget for noise (issue 14 item 4, `core::noise`).
    pub(super) noise: NoiseBudget,
    /// The face recognition in flight, and who started it.
    pub(super) face_attempt: Option<FaceAttempt>,
    /// See [`PairingCodes`].
    pub(super) pairing_generation: u32,
    pub(super) mech: LockMech,
    /// The door alarms' timers (issue 17 item 3, `core::door`).
    pub(super) door_watch: DoorWatch,
    /// B-10.7: the weak-signal state.
    pub(super) signal: super::wifi_signal::SignalWatch,
    pub(super) mode: Mode,
    pub(super) keypad: Keypad,
    /// How the lock move in progress was asked for, logged when it ends.
    pub(super) pending_lock: Option<LockHow>,
    pub(super) auto_lock_at: Option<Instant>,
    /// The next auto-lock countdown uses this instead of the setting (a
    /// Matter `UnlockWithTimeout`); taken when the countdown starts.
    pub(super) relock_once: Option<Duration>,
    /// B-8.1: the door was opened from inside; "✓" outside locks.
    pub(super) outside_lock_armed: bool,
    /// The last unlock was from inside (arms B-8.1 when the door opens).
    pub(super) inside_unlocked: bool,
    pub(super) pairing_until: Option<Instant>,
    /// When the lock last identified itself (Improv).
    last_identify: Option<Instant>,
    pub(super) away: bool,
    pub(super) muted: bool,
    /// Active alarms and, for the timed ones, when they end.
    pub(super) alarms: Vec<(AlarmKind, Option<Instant>)>,
    pub(super) power: Option<PowerReading>,
    pub(super) low_battery: bool,
    pub(super) wifi: Option<WifiStatus>,
    pub(super) ble: bool,
    pub(super) last_prompt: Option<Prompt>,
    /// The software update in progress; while it waits, the store keeps
    /// it too (`core::update::PendingUpdate`).
    pub(super) update: Option<super::update::Job>,
    /// The waiting update as the store holds it now.
    pub(super) pending_saved: Option<super::update::PendingUpdate>,
    /// A waiting update loaded at start, taken up by the first call.
    pub(super) resume: Option<super::update::PendingUpdate>,
    /// See [`Status::last_update`].
    pub(super) last_update: Option<EventKind>,
    /// The `now` of the call being handled.
    pub(super) now: Now,
}

impl core::fmt::Debug for Engine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("mode", &self.step_name())
            .field("handing", &self.handing)
            .finish_non_exhaustive()
    }
}

pub(super) type Out = Vec<Action>;

impl Engine {
    /// Build the engine from what the store loaded. A persisted lockout
    /// resumes relative to `now` (B-7 across restarts).
    pub fn new(config: EngineConfig, persisted: Persisted, now: Now) -> Engine {
        let macer = Macer::new(&config.passcode_key);
        let dir = Directory::load(&persisted, &macer);
        let lockout = Lockout::resume(&persisted.lockout, now.mono);
        let mut alarms = Vec::new();
        if let Some(t) = lockout.deadline().filter(|_| lockout.is_locked(now.mono)) {
            alarms.push((AlarmKind::Lockout, Some(t)));
        } else if lockout.keypad_disabled() {
            // A disabled keypad keeps the lockout alarm state (silent), so
            // every channel's status shows it until a release.
            alarms.push((AlarmKind::Lockout, None));
        }
        let mode = if persisted.handing.is_none() {
            Mode::ChooseDirection { confirmed: false }
        } else {
            Mode::Idle
        };
        Engine {
            config,
            macer,
            handing: persisted.handing,
            dir,
            settings: persisted.settings,
            lockout,
            trusted: TrustedTime::new(persisted.time_floor),
            auto_face: AutoFace::default(),
            noise: NoiseBudget::new(now.mono),
            face_attempt: None,
            pairing_generation: persisted.pairing_generation,
            mech: LockMech::default(),
            door_watch: DoorWatch::default(),
            signal: Default::default(),
            mode,
            keypad: Keypad::default(),
            pending_lock: None,
            auto_lock_at: None,
            relock_once: None,
            outside_lock_armed: false,
            inside_unlocked: false,
            pairing_until: None,
            last_identify: None,
            away: false,
            muted: false,
            alarms,
            power: None,
            low_battery: false,
            wifi: None,
            ble: false,
            last_prompt: None,
            update: None,
            pending_saved: persisted.pending_update.clone(),
            resume: persisted.pending_update,
            last_update: None,
            now,
        }
    }

    /// Feed one input; perform the returned actions in order.
    pub fn handle(&mut self, now: Now, input: Input) -> Vec<Action> {
        self.now = now;
        let mut out = Vec::new();
        self.check_clock(&mut out);
        self.lockout.settle(now.mono);
        self.expire(&mut out);
        self.dispatch(&mut out, input);
        self.drive_update(&mut out);
        self.persist_pending_update(&mut out);
        self.emit_keypad(&mut out);
        out
    }

    /// The earliest instant at which [`Input::Tick`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let keypad = if self.keypad.awake {
            self.keypad.sleep_at
        } else {
            None
        };
        let reset = match self.mode {
            Mode::FactoryReset { until } => Some(until),
            _ => None,
        };
        [
            keypad,
            self.keypad.flash_until,
            self.lockout.deadline(),
            self.pairing_until,
            self.auto_lock_at,
            reset,
            self.noise.next_deadline(),
            self.door_watch.next_deadline(),
            self.signal.next_deadline(),
            self.update_deadline(),
        ]
        .into_iter()
        .chain(self.alarms.iter().map(|(_, t)| *t))
        .flatten()
        .min()
    }

    /// The lockout bookkeeping as of `now`, for the runtime to persist on
    /// an orderly shutdown. Without it a restart resumes the record last
    /// persisted (at the last failure or lockout change), which can only
    /// make a lockout longer, never shorter: time spent down does not count.
    pub fn lockout_record(&self, now: Now) -> LockoutRecord {
        self.lockout.record(now.mono)
    }

    /// What an orderly shutdown stores: the lockout as it stands (see
    /// [`Engine::lockout_record`]) and the trusted-time floor, if it rose
    /// since it was last stored.
    pub fn shutdown_changes(&self, now: Now) -> Vec<Change> {
        let mut c = vec![Change::PutLockout(self.lockout.record(now.mono))];
        c.extend(
            self.trusted
                .shutdown_record(now.mono)
                .map(Change::PutTimeFloor),
        );
        c
    }

    /// Between inputs (the runtime's watchdog ping): the trusted-time
    /// floor to store if it rose by an hour since it was last stored. Not
    /// an input: nothing else changes and nothing is shown.
    pub fn checkpoint(&mut self, now: Now) -> Vec<Change> {
        self.trusted
            .checkpoint(now.mono)
            .map(Change::PutTimeFloor)
            .into_iter()
            .collect()
    }

    /// The runtime's wall reading at `now`, checked against the trusted
    /// floor: a reading behind it is no reading (fail closed), logged once
    /// and told to the owner; a floor that rose by an hour is stored.
    fn check_clock(&mut self, out: &mut Out) {
        let c = self.trusted.check(self.now);
        self.now.wall = c.wall;
        if let Some(f) = c.fell_behind {
            self.log(
                out,
                EventKind::ClockBehind {
                    reading: f.reading,
                    floor: f.floor,
                },
            );
            out.push(Action::Notify(Notice::ClockBehind));
        }
        if let Some(w) = c.persist {
            out.push(Action::Persist(vec![Change::PutTimeFloor(w)]));
        }
    }

    pub fn status(&self) -> Status {
        let mono = self.now.mono;
        Status {
            lock: self.mech.state(),
            bolt: self.mech.bolt,
            door: self.mech.door,
            battery_percent: self.power.map(|p| p.percent),
            battery_millivolts: self.power.map(|p| p.millivolts),
            external_power: self.power.is_some_and(|p| p.external),
            low_battery: self.low_battery,
            wifi_enabled: self.settings.wifi,
            wifi_connected: self.settings.wifi && self.wifi.is_some_and(|w| w.connected),
            wifi_rssi: self.wifi.filter(|w| w.connected).map(|w| w.rssi),
            wifi_weak: self.signal.weak,
            ble_connected: self.ble,
            active_alarms: self.alarms.iter().map(|(k, _)| *k).collect(),
            lockout_active: self.lockout.is_locked(mono),
            lockout_remaining: self.lockout.remaining(mono),
            recent_failures: self.lockout.failures(mono),
            strikes: self.lockout.strikes(),
            lockout_level: self.lockout.level(),
            keypad_disabled: self.lockout.keypad_disabled(),
            wall_time: self.now.wall,
            time_floor: self.trusted.floor(mono),
            pairing_generation: self.pairing_generation,
            pairing_mode: self.pairing_until.is_some(),
            away_armed: self.away,
            muted: self.muted,
            keypad: self.view(),
            last_prompt: self.last_prompt.clone(),
            counts: self.dir.counts(),
            step: self.step_name().into(),
            handing: self.handing,
            motor_cycles: self.mech.cycles,
            settings: self.settings.clone(),
            language: self.language(),
            firmware: self.config.firmware.clone(),
            update: self.update.as_ref().map(|j| j.status()),
            last_update: self.last_update.clone(),
            schedules: self.schedule_status(),
        }
    }

    pub(super) fn step_name(&self) -> &'static str {
        match &self.mode {
            Mode::Idle if self.handing.is_some() && !self.dir.has_admin() => "initial",
            Mode::Idle => "idle",
            Mode::ChooseDirection { confirmed: false } => "choose_direction",
            Mode::ChooseDirection { confirmed: true } => "choose_direction.hand",
            Mode::VerifyAdmin => "verify_admin",
            Mode::FactoryReset { .. } => "factory_reset",
            Mode::Menu(m) => match m {
                Menu::Main => "menu",
                Menu::SystemInfo => "menu.system_info",
                Menu::ChooseMethod(_) => "menu.choose_method",
                Menu::Enrol {
                    modality: Modality::Face,
                    ..
                } => "enrol.face",
                Menu::Enrol {
                    modality: Modality::Palm,
                    ..
                } => "enrol.palm",
                Menu::Enrol {
                    modality: Modality::Fingerprint,
                    ..
                } => "enrol.fingerprint",
                Menu::Passcode { first: None, .. } => "enrol.passcode",
                Menu::Passcode { first: Some(_), .. } => "enrol.passcode.repeat",
                Menu::Delete => "menu.delete",
                Menu::Modify => "menu.modify",
                Menu::DeleteCredential(_) => "menu.delete_credential",
                Menu::Language => "menu.language",
            },
        }
    }

    // ----- small helpers shared by the other files -----

    pub(super) fn event(&self, kind: EventKind) -> Event {
        Event {
            at: self.now.wall,
            mono_ms: self.now.mono.as_millis(),
            kind,
        }
    }

    /// Log an event; returns whether it was logged. A noise event
    /// (`core::noise`) beyond its kind's budget is counted instead, and
    /// the count is logged as one `EventsSuppressed` before the next
    /// entry of that kind (or at its deadline, [`Self::flush_noise`]).
    pub(super) fn log(&mut self, out: &mut Out, kind: EventKind) -> bool {
        if let Some(noise) = NoiseKind::of(&kind) {
            match self.noise.admit(noise, self.now.mono) {
                Admit::Drop => return false,
                Admit::Log {
                    suppressed_before: Some(count),
                } => out.push(Action::Log(
                    self.event(EventKind::EventsSuppressed { noise, count }),
                )),
                Admit::Log {
                    suppressed_before: None,
                } => {}
            }
        }
        out.push(Action::Log(self.event(kind)));
        true
    }

    /// Log the suppressed-event counts that are due (a flood that
    /// stopped is still told).
    fn flush_noise(&mut self, out: &mut Out) {
        for (noise, count) in self.noise.due(self.now.mono) {
            out.push(Action::Log(
                self.event(EventKind::EventsSuppressed { noise, count }),
            ));
        }
    }

    /// Speak a prompt, and trace it for the diagnostics stream (BEHAVIOUR:
    /// "every prompt also goes to the diagnostics stream"; the event log
    /// records what happened, not what was said). While muted (B-3.4) the
    /// prompt is only traced. Decision: the trace gets the prompt's words,
    /// except system information, whose verification code is a pairing
    /// secret and is traced by name only.
    ///
    /// The prompt carries the language in force when it is said, so a
    /// batch that changes the language says what came before in the old
    /// one and what follows in the new one; the trace is in that language
    /// too (it is what was said).
    ///
    /// Decision (B-4.10 says it): system information is spoken in English
    /// whatever the language — the manual, written in Chinese, says so; its
    /// serial, version and codes are Latin letters and digits read out to
    /// support.
    pub(super) fn say(&mut self, out: &mut Out, prompt: Prompt) {
        let lang = match prompt {
            Prompt::SystemInfo { .. } => Language::En,
            _ => self.language(),
        };
        let text = match prompt {
            Prompt::SystemInfo { .. } => prompt.asset(),
            _ => prompt.text(lang),
        };
        if !self.muted {
            out.push(Action::Prompt(prompt.clone(), lang));
        }
        out.push(Action::Trace(Trace::Prompt {
            text,
            spoken: !self.muted,
        }));
        self.last_prompt = Some(prompt);
    }

    /// The prompt language: the setting an administrator or the owner
    /// chose, else the configured default (issue 17 item 4).
    pub fn language(&self) -> Language {
        self.settings
            .language
            .unwrap_or(self.config.default_language)
    }

    /// Record changes in memory and ask the store to commit them. Always
    /// pushed before whatever reports their success.
    pub(super) fn persist(&mut self, out: &mut Out, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        for c in &changes {
            match c {
                Change::SetHanding(h) => self.handing = Some(*h),
                Change::PutSettings(s) => self.settings = s.clone(),
                Change::SetPairingGeneration(g) => self.pairing_generation = *g,
                Change::FactoryReset => {
                    self.handing = None;
                    self.settings = Settings::default();
                    self.lockout.reset();
                    self.pairing_generation = 0;
                    // The reset's transaction drops a waiting update's row.
                    self.pending_saved = None;
                }
                _ => {}
            }
        }
        self.dir.apply(&changes, &self.macer);
        out.push(Action::Persist(changes));
    }

    pub(super) fn persist_lockout(&mut self, out: &mut Out) {
        let rec = self.lockout.record(self.now.mono);
        out.push(Action::Persist(vec![Change::PutLockout(rec)]));
    }

    pub(super) fn wake(&mut self, out: &mut Out) {
        let was_awake = self.keypad.awake;
        self.keypad.awake = true;
        self.keypad.sleep_at = Some(self.now.mono + KEYPAD_SLEEP);
        // B-10.1: the low-battery prompt is spoken when the keypad wakes.
        if !was_awake && self.low_battery {
            self.say(out, Prompt::LowBattery);
        }
    }

    pub(super) fn sleep(&mut self) {
        self.keypad.awake = false;
        self.keypad.sleep_at = None;
        self.keypad.clear();
        self.keypad.digits_shown.clear();
    }

    pub(super) fn alarm_active(&self, kind: AlarmKind) -> bool {
        self.alarms.iter().any(|(k, _)| *k == kind)
    }

    /// Raise an alarm: log, sound (unless silent), notify, and snapshot
    /// where the alarm calls for one.
    pub(super) fn raise_alarm(&mut self, out: &mut Out, kind: AlarmKind, sound: Option<Duration>) {
        // Issue 14 item 5: duress is told only in the owner's sealed
        // notice. A log entry would show it to every reader of the log
        // (technicians on D-Bus, anyone handed the phone), and the unlock
        // before it is logged as a plain passcode unlock.
        if kind != AlarmKind::Duress {
            self.log(out, EventKind::AlarmRaised { alarm: kind });
        }
        if let Some(duration) = sound {
            out.push(Action::Alarm(AlarmCmd::Sound { kind, duration }));
        }
        out.push(Action::Notify(Notice::Alarm(kind)));
        let until = match kind {
            AlarmKind::Tamper => Some(self.now.mono + TAMPER_ALARM),
            AlarmKind::Lockout => self.lockout.deadline(),
            _ => None,
        };
        // Duress is an instant, not a state: it is logged and notified only.
        if kind != AlarmKind::Duress {
            self.alarms.retain(|(k, _)| *k != kind);
            self.alarms.push((kind, until));
        }
    }

    pub(super) fn clear_alarm(&mut self, out: &mut Out, kind: AlarmKind, silence: bool) {
        if self.alarm_active(kind) {
            self.alarms.retain(|(k, _)| *k != kind);
            if silence {
                out.push(Action::Alarm(AlarmCmd::Silence { kind }));
            }
            self.log(out, EventKind::AlarmCleared { alarm: kind });
        }
    }

    /// B-3.5/B-10.2: a snapshot only where video is available (battery at
    /// or above the low threshold, or external power).
    pub(super) fn snapshot(&self, out: &mut Out, reason: SnapshotReason) {
        let video = self
            .power
            .is_none_or(|p| p.external || p.percent >= self.config.low_battery_percent);
        if video {
            out.push(Action::Snapshot(reason));
        }
    }

    // ----- deadlines -----

    fn expire(&mut self, out: &mut Out) {
        let now = self.now.mono;
        self.flush_noise(out);
        if self.keypad.flash_until.is_some_and(|t| now >= t) {
            self.keypad.flash_until = None;
        }
        if self.lockout.expire(now) {
            self.log(out, EventKind::LockoutEnded { early: false });
            if self.lockout.keypad_disabled() {
                // The siren stops; the alarm state stays while the keypad
                // is disabled (issue 13), until a release.
                out.push(Action::Alarm(AlarmCmd::Silence {
                    kind: AlarmKind::Lockout,
                }));
                for (k, until) in self.alarms.iter_mut() {
                    if *k == AlarmKind::Lockout {
                        *until = None;
                    }
                }
            } else {
                self.clear_alarm(out, AlarmKind::Lockout, true);
            }
            self.persist_lockout(out);
        }
        if self.pairing_until.is_some_and(|t| now >= t) {
            self.pairing_until = None;
            self.log(out, EventKind::PairingMode { active: false });
            self.say(out, Prompt::PairingEnded);
        }
        let ended: Vec<AlarmKind> = self
            .alarms
            .iter()
            .filter(|(_, t)| t.is_some_and(|t| now >= t))
            .map(|(k, _)| *k)
            .collect();
        for k in ended {
            // The board stops a timed alarm by itself; Silence makes sure.
            self.clear_alarm(out, k, true);
        }
        self.expire_door(out);
        self.expire_signal(out);
        if self.auto_lock_at.is_some_and(|t| now >= t) {
            self.auto_lock_at = None;
            // B-8.3: the countdown never locks an open door or a moving bolt.
            if !self.mech.door_open()
                && self.mech.bolt == BoltPosition::Retracted
                && self.mech.motor == MotorState::Idle
            {
                self.lock(out, LockHow::Auto);
            }
        }
        if let Mode::FactoryReset { until } = self.mode {
            if now >= until {
                // B-10.6: no "✓" in time: nothing is erased.
                self.mode = Mode::Idle;
                self.sleep();
                self.start_normal(out);
            }
        }
        if self.keypad.awake && self.keypad.sleep_at.is_some_and(|t| now >= t) {
            self.on_keypad_sleep(out);
        }
    }

    /// B-3.2: the keypad goes to sleep; a menu or an enrolment in progress
    /// is abandoned (nothing half-stored, B-4.11).
    fn on_keypad_sleep(&mut self, out: &mut Out) {
        match &self.mode {
            Mode::Menu(Menu::Enrol { modality, .. }) => {
                out.push(Action::Module(ModuleCmd::CancelEnrol {
                    modality: *modality,
                }));
                self.mode = Mode::Idle;
            }
            Mode::Menu(_) | Mode::VerifyAdmin => self.mode = Mode::Idle,
            _ => {}
        }
        self.sleep();
    }

    // ----- dispatch -----

    fn dispatch(&mut self, out: &mut Out, input: Input) {
        match input {
            Input::Tick => {}
            Input::PowerUp { set_held } => self.power_up(out, set_held),
            Input::Key(k) => self.on_key(out, k),
            Input::KeyHeld(k) => self.on_key_held(out, k),
            Input::Touch => self.on_touch(out),
            Input::Motion => self.on_motion(out),
            Input::Set(p) => self.on_set(out, p),
            Input::LockButton => self.on_lock_button(out),
            Input::Bolt(b) => self.on_bolt(b),
            Input::Door(d) => self.on_door(out, d),
            Input::Motor(r) => self.on_motor(out, r),
            Input::MechanicalKey => self.on_mechanical_key(out),
            Input::InsideHandle => self.on_inside_handle(out),
            Input::Tamper(t) => self.on_tamper(out, t),
            Input::Power(p) => self.on_power(out, p),
            Input::Module(r) => self.on_module(out, r),
            Input::App(req) => self.on_app(out, req),
            Input::Wifi(w) => self.on_wifi(w),
            Input::BleConnected(b) => self.ble = b,
            Input::AppRefused { via, reason } => self.on_app_refused(out, via, reason),
            Input::Identify => self.on_identify(out),
            Input::Update(r) => self.on_update(out, r),
        }
    }

    /// Improv "identify": say so and flash "0", when idle and not asked
    /// within the last [`IDENTIFY_GAP`] (a stranger must not be able to
    /// make the lock talk on demand, nor talk over a menu).
    fn on_identify(&mut self, out: &mut Out) {
        let now = self.now.mono;
        if !matches!(self.mode, Mode::Idle)
            || self.last_identify.is_some_and(|t| now < t + IDENTIFY_GAP)
        {
            return;
        }
        self.last_identify = Some(now);
        self.keypad.flash_until = Some(now + IDENTIFY_FLASH);
        self.say(out, Prompt::Identify);
    }

    fn power_up(&mut self, out: &mut Out, set_held: bool) {
        if let Some(rest) = self.lockout.remaining(self.now.mono) {
            // The siren stopped with the daemon; it sounds for what is left.
            out.push(Action::Alarm(AlarmCmd::Sound {
                kind: AlarmKind::Lockout,
                duration: rest,
            }));
        }
        if set_held {
            // B-10.6: SET held while the battery went in.
            self.mode = Mode::FactoryReset {
                until: self.now.mono + FACTORY_RESET_WINDOW,
            };
            self.wake(out);
            self.say(out, Prompt::FactoryResetRelease);
            self.say(out, Prompt::FactoryResetConfirm);
            return;
        }
        self.start_normal(out);
    }

    /// What a normal start asks for: the door direction (B-2.1), then the
    /// first administrator (B-2.2).
    pub(super) fn start_normal(&mut self, out: &mut Out) {
        if self.handing.is_none() {
            self.mode = Mode::ChooseDirection { confirmed: false };
            self.wake(out);
            self.say(out, Prompt::ChooseDirection);
        } else if !self.dir.has_admin() {
            self.mode = Mode::Idle;
            self.wake(out);
            self.say(out, Prompt::CreateAdmin);
        } else {
            self.mode = Mode::Idle;
        }
    }

    fn on_touch(&mut self, out: &mut Out) {
        let was_awake = self.keypad.awake;
        self.wake(out);
        if was_awake {
            // Issue 17 item 6: the manual trigger works whenever the lock
            // is idle, not only on a sleeping keypad — unless someone is
            // typing (a touch between digits is not a request for a face).
            if matches!(self.mode, Mode::Idle)
                && self.keypad.buffer.is_empty()
                && self.handing.is_some()
                && self.dir.has_admin()
            {
                self.manual_face(out);
            }
            return;
        }
        match self.mode {
            Mode::Idle if self.handing.is_some() && !self.dir.has_admin() => {
                self.say(out, Prompt::CreateAdmin);
            }
            // B-6.2 manual face: touching starts one recognition.
            Mode::Idle => self.manual_face(out),
            Mode::ChooseDirection { .. } => self.say(out, Prompt::ChooseDirection),
            _ => {}
        }
    }

    fn on_set(&mut self, out: &mut Out, press: SetPress) {
        match press {
            SetPress::Long => {
                // B-5.1: pairing mode for 3 minutes, "0" flashes.
                self.pairing_until = Some(self.now.mono + PAIRING_WINDOW);
                self.log(out, EventKind::PairingMode { active: true });
                self.say(out, Prompt::PairingMode);
            }
            SetPress::Short => match self.mode {
                Mode::Idle if self.handing.is_some() => {
                    self.wake(out);
                    self.keypad.clear();
                    if self.dir.has_admin() {
                        self.mode = Mode::VerifyAdmin;
                        self.say(out, Prompt::VerifyAdmin);
                        self.admin_face(out);
                    } else {
                        // Initial state: the keypad's "✓" starts the first
                        // administrator (B-2.2, B-4.1).
                        self.say(out, Prompt::CreateAdmin);
                    }
                }
                _ => {}
            },
        }
    }

    // ----- the bolt, the door, the motor -----

    fn on_bolt(&mut self, b: BoltPosition) {
        self.mech.bolt = b;
        // A bolt retracted by hand (key, thumb-turn) starts the countdown too.
        if b == BoltPosition::Retracted && self.mech.motor == MotorState::Idle {
            self.start_auto_lock();
        }
        if b == BoltPosition::Extended {
            self.auto_lock_at = None;
        }
    }

    /// B-8.3: the countdown runs while the bolt is retracted and the door
    /// is closed; (re)started here.
    pub(super) fn start_auto_lock(&mut self) {
        let can_run = !self.mech.door_open() && self.mech.bolt == BoltPosition::Retracted;
        let countdown = if can_run {
            // Issue 18: Passage holds the bolt open; an explicit relock
            // (`UnlockWithTimeout`) still runs.
            let auto = if self.passage_holds() {
                None
            } else {
                self.settings.auto_lock
            };
            self.relock_once.take().or(auto)
        } else {
            None
        };
        self.auto_lock_at = countdown.map(|d| self.now.mono + d);
    }

    fn on_door(&mut self, out: &mut Out, d: DoorPosition) {
        let was = self.mech.door;
        let changed = was != Some(d);
        self.mech.door = Some(d);
        match d {
            DoorPosition::Open => {
                self.auto_lock_at = None;
                // Never throw the bolt into an open door: stop a lock move.
                if let MotorState::Moving {
                    target: BoltPosition::Extended,
                } = self.mech.motor
                {
                    out.push(Action::Motor(MotorCmd::Stop));
                    self.mech.motor = MotorState::Idle;
                    self.pending_lock = None;
                }
                // B-8.1: opened from inside → "✓" outside will lock.
                if self.inside_unlocked {
                    self.outside_lock_armed = true;
                }
                if changed {
                    self.log(out, EventKind::DoorOpened);
                }
                self.door_alarms(out, was);
            }
            DoorPosition::Closed => {
                if changed {
                    self.log(out, EventKind::DoorClosed);
                }
                self.door_alarms(out, was);
                self.start_auto_lock();
            }
        }
    }

    fn on_motor(&mut self, out: &mut Out, r: MotorReport) {
        match r {
            MotorReport::Done(pos) => {
                self.mech.bolt = pos;
                self.mech.motor = MotorState::Idle;
                self.mech.cycles = self.mech.cycles.saturating_add(1);
                self.clear_alarm(out, AlarmKind::Jam, true);
                match pos {
                    BoltPosition::Extended => {
                        self.auto_lock_at = None;
                        if let Some(how) = self.pending_lock.take() {
                            self.log(out, EventKind::Locked { how });
                            self.say(out, Prompt::Locked);
                        }
                    }
                    BoltPosition::Retracted => self.start_auto_lock(),
                    BoltPosition::Between => {}
                }
            }
            MotorReport::Jammed { at } => {
                self.mech.bolt = at;
                self.mech.motor = MotorState::Jammed;
                self.pending_lock = None;
                self.auto_lock_at = None;
                self.log(out, EventKind::Jammed);
                self.raise_alarm(out, AlarmKind::Jam, Some(JAM_ALARM));
                self.say(out, Prompt::Jammed);
            }
            MotorReport::Fault { detail } => {
                self.mech.motor = MotorState::Jammed;
                self.pending_lock = None;
                self.auto_lock_at = None;
                self.log(
                    out,
                    EventKind::ModuleFault {
                        detail: format!("motor: {detail}"),
                    },
                );
                self.raise_alarm(out, AlarmKind::Jam, None);
                self.say(out, Prompt::ModuleFault);
            }
        }
    }

    /// Drive the bolt out. Refused (returns `false`, with a failure prompt)
    /// while the door is open or the handing is unknown.
    ///
    /// Decision: an unknown door position (no sensor report yet) does not
    /// stop a lock: refusing would leave the door unlocked.
    pub(super) fn lock(&mut self, out: &mut Out, how: LockHow) -> bool {
        let Some(handing) = self.handing else {
            self.say(out, Prompt::Failure);
            return false;
        };
        if self.mech.door_open() {
            self.say(out, Prompt::Failure);
            return false;
        }
        self.outside_lock_armed = false;
        self.inside_unlocked = false;
        self.auto_lock_at = None;
        self.relock_once = None;
        if self.mech.bolt == BoltPosition::Extended && self.mech.motor == MotorState::Idle {
            self.log(out, EventKind::Locked { how });
            self.say(out, Prompt::Locked);
            return true;
        }
        self.pending_lock = Some(how);
        self.mech.motor = MotorState::Moving {
            target: BoltPosition::Extended,
        };
        out.push(Action::Motor(MotorCmd::Drive {
            target: BoltPosition::Extended,
            direction: lock::direction(handing, BoltPosition::Extended),
        }));
        true
    }

    /// Open the door for an accepted credential or app key. The prompt and
    /// the log entry come when access is granted; the bolt follows.
    /// Decision: the unlock that ends one-time mute is itself still silent
    /// (B-3.4: prompts are silent *until* that unlock).
    pub(super) fn unlock(&mut self, out: &mut Out, method: Method, user: Option<UserNumber>) {
        self.unlock_relocking(out, method, user, None);
    }

    /// [`Self::unlock`], with the countdown that follows lasting
    /// `relock_after` instead of the auto-lock setting (B-8.3 rules still
    /// hold: it runs only while the door is closed).
    pub(super) fn unlock_relocking(
        &mut self,
        out: &mut Out,
        method: Method,
        user: Option<UserNumber>,
        relock_after: Option<Duration>,
    ) {
        let Some(handing) = self.handing else {
            self.say(out, Prompt::ChooseDirection);
            return;
        };
        let event = self.event(EventKind::Unlocked {
            method: method.as_logged(),
            user,
        });
        out.push(Action::Log(event.clone()));
        self.say(out, Prompt::Unlocked);
        let outside = matches!(
            method,
            Method::Face
                | Method::Palm
                | Method::Fingerprint
                | Method::Passcode
                | Method::DuressPasscode
                | Method::TempPasscode
        );
        if outside {
            self.muted = false;
        }
        self.outside_lock_armed = false;
        self.inside_unlocked = false;
        self.pending_lock = None;
        self.auto_lock_at = None;
        self.relock_once = relock_after;
        self.keypad.clear();
        let settled =
            self.mech.bolt == BoltPosition::Retracted && self.mech.motor == MotorState::Idle;
        if settled {
            self.start_auto_lock();
        } else {
            self.mech.motor = MotorState::Moving {
                target: BoltPosition::Retracted,
            };
            out.push(Action::Motor(MotorCmd::Drive {
                target: BoltPosition::Retracted,
                direction: lock::direction(handing, BoltPosition::Retracted),
            }));
        }
        // After the motor: a notice makes the runtime store the log first,
        // and nothing may stand between the answer and the bolt that a
        // failure would not have (issue 13 item 2, same timing).
        if self.away {
            out.push(Action::Notify(Notice::AwayUnlock { event }));
        }
    }

    /// B-8.2: the back panel's lock button.
    fn on_lock_button(&mut self, out: &mut Out) {
        self.lock(out, LockHow::Inside);
    }

    /// B-6.5: the key turned the cylinder. Mechanical: it works during a
    /// lockout; the lock only senses and logs it (and tells an away owner).
    fn on_mechanical_key(&mut self, out: &mut Out) {
        self.door_watch.manual(self.now.mono);
        // Issue 18: manual unlocking ends Privacy (Matter's wording).
        self.privacy_ended_inside(out);
        let event = self.event(EventKind::Unlocked {
            method: Method::MechanicalKey,
            user: None,
        });
        out.push(Action::Log(event.clone()));
        if self.away {
            out.push(Action::Notify(Notice::AwayUnlock { event }));
        }
        self.outside_lock_armed = false;
        self.inside_unlocked = false;
    }

    /// The inside handle retracted the bolt. Decision: it disarms away mode
    /// (B-3.6) and is not reported as an away unlock — it is someone at
    /// home — but it is logged. It works during a lockout (mechanical).
    fn on_inside_handle(&mut self, out: &mut Out) {
        self.door_watch.manual(self.now.mono);
        // Issue 18: manual unlocking ends Privacy (Matter's wording).
        self.privacy_ended_inside(out);
        if self.away {
            self.away = false;
            self.log(out, EventKind::AwayMode { armed: false });
            self.say(out, Prompt::AwayDisarmed);
        }
        self.log(
            out,
            EventKind::Unlocked {
                method: Method::Inside,
                user: None,
            },
        );
        self.inside_unlocked = true;
        if self.mech.door_open() {
            self.outside_lock_armed = true;
        }
    }

    // ----- alarms and power -----

    /// B-10.4: the front panel was forced off.
    fn on_tamper(&mut self, out: &mut Out, t: TamperState) {
        if t == TamperState::Opened && !self.alarm_active(AlarmKind::Tamper) {
            self.raise_alarm(out, AlarmKind::Tamper, Some(TAMPER_ALARM));
            self.snapshot(out, SnapshotReason::Alarm(AlarmKind::Tamper));
            self.say(out, Prompt::TamperAlarm);
        }
    }

    /// B-10.1: below the threshold (and not on USB-C power) the LED lights
    /// and the app is told once; the prompt comes on the next wake.
    fn on_power(&mut self, out: &mut Out, p: PowerReading) {
        self.power = Some(p);
        let low = !p.external && p.percent < self.config.low_battery_percent;
        if low && !self.low_battery {
            self.low_battery = true;
            self.raise_alarm(out, AlarmKind::LowBattery, None);
        } else if !low && self.low_battery {
            self.low_battery = false;
            self.clear_alarm(out, AlarmKind::LowBattery, false);
        }
    }

    // ----- keypad view -----

    pub(super) fn view(&self) -> KeypadView {
        let mut flashing = Vec::new();
        if self.pairing_until.is_some() || self.keypad.flash_until.is_some() {
            flashing.push(Key::Digit(0));
        }
        let awake = self.keypad.awake || !flashing.is_empty();
        KeypadView {
            awake,
            lit: if self.keypad.awake {
                self.lit_keys()
            } else {
                Vec::new()
            },
            flashing,
            digits_shown: self.keypad.digits_shown.clone(),
            low_battery_led: self.low_battery,
        }
    }

    fn emit_keypad(&mut self, out: &mut Out) {
        let v = self.view();
        if self.keypad.last_view.as_ref() != Some(&v) {
            self.keypad.last_view = Some(v.clone());
            out.push(Action::Keypad(v));
        }
    }
}
