//! What the engine asks the world to do. The runtime performs a batch of
//! actions strictly in order: a [`Action::Persist`] is committed (one
//! SQLite transaction) before anything after it happens, so a success
//! prompt is never heard for a change that was not stored (B-4.11).
use core::time::Duration;
use serde::{Deserialize, Serialize};

use super::event::{AlarmKind, Event};
use super::input::{BoltPosition, FaceFix, FacePose};
use super::lang::Language;
use super::types::{
    AppKeyId, Change, CredentialKind, Key, Modality, MotorDirection, TempPasscodeId, UserNumber,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Commit these changes in one transaction, before any later action.
    Persist(Vec<Change>),
    /// Append to the event log (and the diagnostics/app streams).
    Log(Event),
    /// Speak a voice prompt (B-3, B-4) in this language (the `language`
    /// setting when it was said): the board plays that language's assets
    /// and shows its text. Every prompt is also traced ([`Action::Trace`]),
    /// spoken or muted.
    Prompt(Prompt, Language),
    /// A line for the diagnostics stream (the journal): what was said.
    /// Stored nowhere (issue 14 item 4: prompts are not log events).
    Trace(Trace),
    /// What the keypad shows now.
    Keypad(KeypadView),
    Motor(MotorCmd),
    Module(ModuleCmd),
    Alarm(AlarmCmd),
    /// Tell the owner's app (away-mode unlock, duress, doorbell, alarms).
    Notify(Notice),
    /// Take a camera snapshot and attach it to the event (B-3.5).
    Snapshot(SnapshotReason),
    /// Answer an [`super::AppRequest`].
    Reply {
        id: u64,
        result: AppResult,
    },
    /// An owner set the wall clock: the runtime's clock reads this time
    /// now (the engine sees it from the next input on).
    SetClock(super::time::WallTime),
    /// Software updates (issue 20, `core::update`): the update task does
    /// this through RAUC and reports back with [`super::Input::Update`].
    Update(UpdateCmd),
}

/// What the update task is asked to do (`core::update`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateCmd {
    /// Have RAUC check the bundle's signature and read its version
    /// (`InspectBundle`); nothing is written.
    Inspect { source: String },
    /// Install the bundle into the other slot (`InstallBundle`); RAUC
    /// checks the signature again and makes that slot primary.
    Install { source: String },
    /// Restart into the new slot (logind `Reboot`).
    Restart,
    /// An installed update whose restart was never safe: make the booted
    /// slot primary again (`Mark("active", "booted")`).
    Abandon,
}

/// What [`Action::Trace`] tells the diagnostics stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trace {
    /// A prompt's words (system information by name only: its
    /// verification code is a pairing secret); `spoken: false` while
    /// muted (B-3.4).
    Prompt { text: String, spoken: bool },
}

/// The keypad's whole visible state; the board renders it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeypadView {
    /// Backlight on (woken) or asleep (B-3.2).
    pub awake: bool,
    /// Only the keys valid in the current step are lit (B-3.3).
    pub lit: Vec<Key>,
    /// Keys flashing (pairing mode flashes "0", B-5.1; mute confirmation
    /// flashes twice, B-3.4).
    pub flashing: Vec<Key>,
    /// A user number or a wrong number shown digit by digit (B-1.4, B-4.9).
    pub digits_shown: Vec<u8>,
    /// B-10.1.
    pub low_battery_led: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MotorCmd {
    /// Drive the bolt to `target`, turning the way the door's handing
    /// requires (B-2.1).
    Drive {
        target: BoltPosition,
        direction: MotorDirection,
    },
    /// Stop and de-energise now.
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleCmd {
    /// Begin enrolling into `slot`; progress arrives as module reports.
    Enrol { modality: Modality, slot: u16 },
    /// Abandon an enrolment; nothing is stored.
    CancelEnrol { modality: Modality },
    /// Remove one template.
    Delete { modality: Modality, slot: u16 },
    /// Remove every template (factory reset).
    Wipe { modality: Modality },
    /// Start one face recognition attempt (B-6.2; the IR light flashes).
    RecogniseFace,
    /// An administrator's re-pair after a module replacement (issue 13
    /// item 7): a module the lock refused is tried again, and adopted only
    /// if it is factory-fresh (it is given the lock's module password).
    Pair { modality: Modality },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmCmd {
    Sound { kind: AlarmKind, duration: Duration },
    Silence { kind: AlarmKind },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// B-3.6: an unlock while away mode is armed.
    AwayUnlock {
        event: Event,
    },
    /// B-6.9: silent.
    Duress {
        user: UserNumber,
    },
    Doorbell,
    Alarm(AlarmKind),
    /// Issue 13: failed attempts reached a new lockout level (the first
    /// lockout included) or disabled the keypad. Sealed to the owner's app
    /// over every channel, queued while offline.
    Lockout {
        level: u32,
        /// The timed lockout started, in minutes (`None`: protection off).
        minutes: Option<u32>,
        /// The keypad is disabled until the owner releases it.
        keypad_disabled: bool,
    },
    /// The wall clock reads earlier than the time the lock already
    /// trusted: time-windowed credentials are refused until it is right.
    ClockBehind,
    /// B-10.7: the Wi-Fi signal stayed weak (dBm).
    WifiWeak {
        rssi: i16,
    },
    /// A fingerprint or palm module (or the face camera) stopped answering
    /// (issue 15 item 5): once per outage.
    ModuleFault {
        modality: Modality,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotReason {
    Doorbell,
    Alarm(AlarmKind),
}

/// The engine's answer to an app command.
pub type AppResult = Result<AppOk, AppError>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppOk {
    Done,
    UserAdded(UserNumber),
    TempPasscodeAdded(TempPasscodeId),
    AppKeyAdded(AppKeyId),
    /// The owner keys, for the owner's app (issue 13 item 6).
    OwnerKeys(Vec<OwnerKeyEntry>),
    /// A guest invite now holds this slot.
    GuestInviteCreated(AppKeyId),
    /// Every schedule of the lock (issue 17 item 2).
    Schedules(Vec<super::schedule::Schedule>),
}

/// One owner key in a listing: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerKeyEntry {
    pub slot: AppKeyId,
    /// The administrator it speaks for.
    pub admin: UserNumber,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum AppError {
    #[error("this key may not do that")]
    Forbidden,
    #[error("the key is outside its validity window, or the lock's clock is unknown")]
    OutsideValidity,
    #[error("remote unlock is turned off in the unlock settings")]
    RemoteUnlockDisabled,
    #[error("the lock is locked out after repeated failures")]
    LockedOut,
    #[error("no such user")]
    NoSuchUser,
    #[error("the last administrator cannot be deleted")]
    LastAdmin,
    #[error("passcode rejected: {0}")]
    BadPasscode(String),
    #[error("limit reached: {0:?}")]
    Limit(CredentialKind),
    #[error("no free user number")]
    NoFreeUserNumber,
    #[error("no such item")]
    NotFound,
    #[error("the lock is busy (menu or enrolment in progress)")]
    Busy,
    #[error("the bolt is jammed")]
    Jammed,
    #[error("the door is open; close it before locking")]
    DoorOpen,
    #[error("no administrator exists yet; create one on the keypad first")]
    NoAdmin,
    #[error("the only remaining user cannot be deleted")]
    OnlyUser,
    #[error("the validity window ends before it begins")]
    BadValidity,
    #[error("setting rejected: {0}")]
    BadSetting(String),
    #[error("the door direction has not been set on the lock yet")]
    NoHanding,
    #[error("the guest pairing code is unknown, used, expired or burned after too many attempts; ask the owner for a new one")]
    InviteRefused,
    #[error("this app key is already registered")]
    KeyExists,
    #[error("the lock's clock is not set; sync the time from the owner's app first")]
    ClockUnknown,
    #[error("wrong code (counted towards the lockout)")]
    WrongCode,
    #[error("a PIN is required to operate the lock remotely")]
    CodeRequired,
    #[error("that user number is taken")]
    UserExists,
    #[error(
        "that time is earlier than the time the lock already trusted; check the phone's clock"
    )]
    ClockBehindTrusted,
    #[error("that time is out of range (before 2025, after 2200, or more than 400 days past the time the lock trusted)")]
    ClockOutOfRange,
    #[error("this lock has no software updates configured ([update] bus = \"off\")")]
    UpdatesOff,
    #[error("an update is already in progress")]
    UpdateInProgress,
    #[error("update refused: {0}")]
    UpdateRefused(super::update::UpdateRefusal),
    #[error("the lock is in vacation mode: only an administrator may open it")]
    VacationMode,
    #[error("the lock is in privacy mode: nothing opens from outside, and only someone inside (the handle, or an administrator at SET) ends it")]
    PrivacyMode,
    #[error("privacy mode needs the door locked first")]
    NotLocked,
    /// Issue 17 item 2.
    #[error("schedule refused: {0}")]
    Schedule(super::schedule::ScheduleError),
}

/// Every voice prompt, as an id: its words in each language are
/// [`Prompt::text`] (the tables in `core::lang`); the WAV asset of the
/// same name in each language's folder is [`Prompt::asset`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    ChooseDirection,
    DirectionSet,
    CreateAdmin,
    EnterPasscode,
    RepeatPasscode,
    PasscodeMismatch,
    PasscodeTooSimple,
    PasscodeTaken,
    InputTooLong,
    Success,
    Failure,
    /// B-1.4 (the digits are also lit one by one).
    UserNumber(UserNumber),
    MenuMain,
    ChooseMethod,
    /// `ChooseMethod` for a stored user: "5" also sets a duress passcode.
    ChooseMethodOrDuress,
    /// `ChooseMethodOrDuress` for a stored user who holds a credential:
    /// "0" also deletes one (issue 17 item 1).
    ChooseMethodOrDelete,
    /// Issue 17 item 1: which of the user's credentials to delete, by the
    /// method keys (only the kinds the user holds are lit).
    ChooseCredentialToDelete,
    FacePose(FacePose),
    FaceFix(FaceFix),
    PlacePalm,
    PlaceFinger,
    PresentAgain,
    Remove,
    AlreadyEnrolled,
    LimitReached,
    EnterUserNumber,
    NoSuchUser,
    CannotDeleteLastAdmin,
    Deleted,
    SystemInfo {
        serial: String,
        firmware: String,
        verification_code: String,
        /// The Matter manual pairing code (issue 18), when the lock has a
        /// Matter node: the label's code, spoken for an owner without it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        matter_code: Option<String>,
    },
    VerifyAdmin,
    Unlocked,
    Locked,
    VerifyFailed,
    LockedOut,
    /// Issue 13: the keypad disabled itself after repeated lockouts.
    KeypadDisabled,
    /// An administrator released the disabled keypad (menu).
    KeypadReleased,
    UserNotValidNow,
    TamperAlarm,
    LowBattery,
    PairingMode,
    PairingEnded,
    /// Improv "identify" (B-5.1).
    Identify,
    MuteOn,
    AwayArmed,
    AwayDisarmed,
    Doorbell,
    FactoryResetRelease,
    FactoryResetConfirm,
    FactoryResetDone,
    Jammed,
    ModuleFault,
    /// Issue 17 item 3: the door was left open.
    DoorAjar,
    /// Issue 17 item 3: the door was forced open.
    DoorForcedOpen,
    /// Issue 17 item 4: the language menu (menu "6"), every language's
    /// line in its own words.
    ChooseLanguage,
    /// The prompt language changed (said in the new language).
    LanguageSet,
    /// Issue 20: RAUC starts writing the other slot (the lock is safe and
    /// idle; the owner may not be at the door, whoever is hears why the
    /// lock is busy).
    UpdateInstalling,
    /// Issue 20: the lock restarts into the updated software.
    UpdateRestarting,
    /// Issue 20: a bundle was refused (version rule, RAUC's verdict) or
    /// its install failed; nothing changed. Said only when no one is in a
    /// menu.
    UpdateNotInstalled,
}

impl Prompt {
    /// The asset name of the recorded prompt
    /// (`assets/prompts/<language>/<name>.wav`). Prompts with spoken values
    /// (user number, system information) are made of several assets; see
    /// [`Prompt::text`] for what is said.
    pub fn asset(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or_default();
        match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Object(m) => {
                let (k, inner) = m.into_iter().next().unwrap_or_default();
                match inner {
                    serde_json::Value::String(s) => format!("{k}_{s}"),
                    _ => k,
                }
            }
            _ => "unknown".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_information_says_the_matter_code_when_there_is_one() {
        let mut p = Prompt::SystemInfo {
            serial: "LD-1".into(),
            firmware: "0.1.0".into(),
            verification_code: "AB".into(),
            matter_code: None,
        };
        assert!(!p.text(Language::En).contains("Matter"));
        if let Prompt::SystemInfo { matter_code, .. } = &mut p {
            *matter_code = Some("34970112332".into());
        }
        let en = p.text(Language::En);
        assert!(en.ends_with("Matter setup code 34970112332."), "{en}");
        let zh = p.text(Language::ZhTw);
        assert!(
            zh.ends_with("Matter 設定碼 三 四 九 七 零 一 一 二 三 三 二。"),
            "{zh}"
        );
    }

    #[test]
    fn asset_names_are_snake_case() {
        assert_eq!(Prompt::Unlocked.asset(), "unlocked");
        assert_eq!(Prompt::FacePose(FacePose::Up).asset(), "face_pose_up");
        assert_eq!(
            Prompt::UserNumber(UserNumber::new(7).unwrap()).asset(),
            "user_number"
        );
    }
}
