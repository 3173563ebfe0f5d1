//! The Door Lock cluster's words for the engine's, both ways. Pure
//! functions, so every row of the table in `docs/matter.md` is a unit test.
//!
//! ```text
//!  engine Status / Settings ─► attribute values (LockState, DoorState, OperatingMode…)
//!  attribute writes         ─► SettingChange   (OperatingMode, AutoRelockTime, RequirePIN…)
//!  AppError                 ─► IM status (commands) · DlStatus (SetCredential)
//!  logged Event             ─► LockOperation · LockOperationError · DoorLockAlarm ·
//!                              DoorStateChange · LockUserChange
//! ```
use core::time::Duration;

use rs_matter::dm::clusters::decl::door_lock::{
    AlarmCodeEnum, CredentialTypeEnum, DataOperationTypeEnum, DlLockState, DlStatus, DoorStateEnum,
    LockDataTypeEnum, LockOperationTypeEnum, OperatingModeEnum, OperationErrorEnum,
    OperationSourceEnum, UserTypeEnum,
};
use rs_matter::error::ErrorCode;
use rs_matter::tlv::Nullable;

use crate::core::event::{AlarmKind, EventKind, LockHow};
use crate::core::input::DoorPosition;
use crate::core::schedule::{Holder, Schedule, ScheduleKind};
use crate::core::types::{
    CredentialKind, Method, OperatingMode, Role, SettingChange, Settings, UserNumber,
};
use crate::core::{AppError, LockState};

/// `SupportedOperatingModes`: the spec's inverted bitmap, a 0 bit is a
/// supported mode. All five are engine rules (issue 18 item 2,
/// `core::modes`): bits 0–4 clear, the reserved bits set.
pub const SUPPORTED_OPERATING_MODES: u16 = !((1 << OperatingModeEnum::Normal as u16)
    | (1 << OperatingModeEnum::Vacation as u16)
    | (1 << OperatingModeEnum::Privacy as u16)
    | (1 << OperatingModeEnum::NoRemoteLockUnlock as u16)
    | (1 << OperatingModeEnum::Passage as u16));

/// `LockState` from the engine's lock state.
pub fn lock_state(s: LockState) -> Nullable<DlLockState> {
    match s {
        LockState::Locked => Nullable::some(DlLockState::Locked),
        LockState::Unlocked => Nullable::some(DlLockState::Unlocked),
        // In transit or stuck part-way: not fully locked, which is what a
        // controller must show (a jam also raises DoorLockAlarm).
        LockState::Moving | LockState::Jammed => Nullable::some(DlLockState::NotFullyLocked),
        LockState::Unknown => Nullable::none(),
    }
}

/// `DoorState` from the door sensor (null until it reported).
pub fn door_state(d: Option<DoorPosition>) -> Nullable<DoorStateEnum> {
    match d {
        Some(DoorPosition::Open) => Nullable::some(DoorStateEnum::DoorOpen),
        Some(DoorPosition::Closed) => Nullable::some(DoorStateEnum::DoorClosed),
        None => Nullable::none(),
    }
}

/// `OperatingMode`: the engine's operating mode, one to one (Normal and
/// NoRemoteLockUnlock are Normal with remote unlock on / off, B-6.7).
pub fn operating_mode(s: &Settings) -> OperatingModeEnum {
    matter_mode(s.operating_mode())
}

/// The cluster's name for an engine operating mode.
pub fn matter_mode(m: OperatingMode) -> OperatingModeEnum {
    match m {
        OperatingMode::Normal => OperatingModeEnum::Normal,
        OperatingMode::Vacation => OperatingModeEnum::Vacation,
        OperatingMode::Privacy => OperatingModeEnum::Privacy,
        OperatingMode::NoRemoteLockUnlock => OperatingModeEnum::NoRemoteLockUnlock,
        OperatingMode::Passage => OperatingModeEnum::Passage,
    }
}

/// The engine's operating mode for the cluster's (a write of the
/// attribute, a holiday's mode).
pub fn engine_mode(m: OperatingModeEnum) -> OperatingMode {
    match m {
        OperatingModeEnum::Normal => OperatingMode::Normal,
        OperatingModeEnum::Vacation => OperatingMode::Vacation,
        OperatingModeEnum::Privacy => OperatingMode::Privacy,
        OperatingModeEnum::NoRemoteLockUnlock => OperatingMode::NoRemoteLockUnlock,
        OperatingModeEnum::Passage => OperatingMode::Passage,
    }
}

/// A write of `OperatingMode`: the setting change it asks for (the engine
/// may still refuse it: [`command_error`] gives the status).
pub fn operating_mode_change(m: OperatingModeEnum) -> SettingChange {
    SettingChange::OperatingMode(engine_mode(m))
}

/// `AutoRelockTime` in seconds: the B-8.3 countdown, 0 when it is off.
pub fn auto_relock_time(s: &Settings) -> u32 {
    s.auto_lock
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// A write of `AutoRelockTime` (0 turns the countdown off; the engine
/// checks the range, B-8.3).
pub fn auto_relock_change(secs: u32) -> SettingChange {
    SettingChange::AutoLock((secs != 0).then(|| Duration::from_secs(u64::from(secs))))
}

/// Matter user type for an engine role.
pub fn user_type(role: Role) -> UserTypeEnum {
    match role {
        Role::Admin => UserTypeEnum::ProgrammingUser,
        Role::User => UserTypeEnum::UnrestrictedUser,
    }
}

/// The engine role for a Matter user type; the schedule-bound and special
/// types need rules the engine does not have.
pub fn role(t: UserTypeEnum) -> Result<Role, ErrorCode> {
    match t {
        UserTypeEnum::ProgrammingUser => Ok(Role::Admin),
        UserTypeEnum::UnrestrictedUser => Ok(Role::User),
        _ => Err(ErrorCode::ConstraintError),
    }
}

/// A Matter user or PIN index as a user number (the index is the number:
/// one PIN per user, B-1.2).
pub fn user_number(index: u16) -> Option<UserNumber> {
    UserNumber::new(index)
}

/// The IM status a refused command answers with.
pub fn command_error(e: &AppError) -> ErrorCode {
    match e {
        // Issue 18: Privacy is left only from inside, and refuses every
        // unlock from outside; Vacation refuses a non-administrator.
        AppError::Forbidden
        | AppError::RemoteUnlockDisabled
        | AppError::PrivacyMode
        | AppError::VacationMode => ErrorCode::UnsupportedAccess,
        AppError::Busy => ErrorCode::Busy,
        AppError::NoSuchUser | AppError::NotFound => ErrorCode::NotFound,
        AppError::UserExists => ErrorCode::AlreadyExists,
        AppError::Limit(_) | AppError::NoFreeUserNumber => ErrorCode::ResourceExhausted,
        AppError::BadSetting(_) | AppError::BadValidity | AppError::BadPasscode(_) => {
            ErrorCode::ConstraintError
        }
        AppError::CodeRequired => ErrorCode::InvalidCommand,
        // Wrong code, lockout, outside validity, jammed, door open, no
        // handing, no administrator, last admin, only user: the spec's
        // plain FAILURE (with LockOperationError where it says so).
        _ => ErrorCode::Failure,
    }
}

/// `SetCredential`'s status for a refusal.
pub fn credential_status(e: &AppError) -> DlStatus {
    match e {
        // B-2.3: a weak code is an invalid field; one that equals or
        // contains another user's is a duplicate.
        AppError::BadPasscode(why) if why.contains("already in use") => DlStatus::Duplicate,
        AppError::BadPasscode(_) => DlStatus::InvalidField,
        AppError::Limit(_) => DlStatus::ResourceExhausted,
        AppError::NoSuchUser | AppError::NotFound => DlStatus::NotFound,
        AppError::UserExists => DlStatus::Occupied,
        _ => DlStatus::Failure,
    }
}

/// `LockOperationError.operationError` for a refused unlock/lock.
pub fn operation_error(e: &AppError) -> OperationErrorEnum {
    match e {
        AppError::WrongCode | AppError::CodeRequired => OperationErrorEnum::InvalidCredential,
        AppError::OutsideValidity => OperationErrorEnum::DisabledUserDenied,
        AppError::LockedOut
        | AppError::RemoteUnlockDisabled
        | AppError::Forbidden
        | AppError::PrivacyMode
        | AppError::VacationMode => OperationErrorEnum::Restricted,
        _ => OperationErrorEnum::Unspecified,
    }
}

/// Where an unlock came from, in the cluster's words.
pub fn unlock_source(m: Method) -> OperationSourceEnum {
    match m {
        Method::Face | Method::Palm | Method::Fingerprint => OperationSourceEnum::Biometric,
        Method::Passcode | Method::DuressPasscode | Method::TempPasscode => {
            OperationSourceEnum::Keypad
        }
        Method::MechanicalKey | Method::Inside => OperationSourceEnum::Manual,
        // The owner's app over BLE or the broker: latchd's own protocol.
        Method::Ble | Method::Remote => OperationSourceEnum::ProprietaryRemote,
        Method::Matter => OperationSourceEnum::Remote,
    }
}

/// Where a lock came from.
pub fn lock_source(h: LockHow) -> OperationSourceEnum {
    match h {
        LockHow::Outside => OperationSourceEnum::Keypad,
        LockHow::Inside => OperationSourceEnum::Button,
        LockHow::Auto => OperationSourceEnum::Auto,
        LockHow::App => OperationSourceEnum::ProprietaryRemote,
        LockHow::Matter => OperationSourceEnum::Remote,
    }
}

/// A `LockOperation` or `LockOperationError` event from a logged event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub kind: LockOperationTypeEnum,
    pub source: OperationSourceEnum,
    pub user: Option<UserNumber>,
    /// `None` for a done operation; the reason for a refused one.
    pub error: Option<OperationErrorEnum>,
}

/// What a logged event is in Matter's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatterEvent {
    Operation(Operation),
    Alarm(AlarmCodeEnum),
    DoorState(DoorStateEnum),
    UserChange {
        data: LockDataTypeEnum,
        op: DataOperationTypeEnum,
        user: UserNumber,
    },
    /// A schedule set or cleared: a user's (week-day, year-day) or the
    /// lock's (holiday); `index` 0xFE is "all of them".
    ScheduleChange {
        data: LockDataTypeEnum,
        op: DataOperationTypeEnum,
        user: Option<UserNumber>,
        index: u8,
    },
}

/// The Matter events an engine event becomes. `locked` is whether the
/// bolt was thrown when it happened (a door opened then was forced).
pub fn events_of(kind: &EventKind, locked: bool) -> Vec<MatterEvent> {
    let mut out = Vec::new();
    match kind {
        EventKind::Unlocked { method, user } => out.push(MatterEvent::Operation(Operation {
            kind: LockOperationTypeEnum::Unlock,
            source: unlock_source(*method),
            user: *user,
            error: None,
        })),
        EventKind::Locked { how } => out.push(MatterEvent::Operation(Operation {
            kind: LockOperationTypeEnum::Lock,
            source: lock_source(*how),
            user: None,
            error: None,
        })),
        EventKind::VerifyFailed { method, .. } => out.push(MatterEvent::Operation(Operation {
            kind: LockOperationTypeEnum::Unlock,
            source: unlock_source(*method),
            user: None,
            error: Some(OperationErrorEnum::InvalidCredential),
        })),
        EventKind::AlarmRaised { alarm } => {
            let code = match alarm {
                AlarmKind::Jam => Some(AlarmCodeEnum::LockJammed),
                AlarmKind::Lockout => Some(AlarmCodeEnum::WrongCodeEntryLimit),
                // A swapped fingerprint module means the outside panel was
                // opened: the app shows it as tamper too.
                AlarmKind::Tamper | AlarmKind::ModuleSwap => {
                    Some(AlarmCodeEnum::FrontEsceutcheonRemoved)
                }
                // Duress is silent (B-6.9): it never leaves as a Matter
                // event any household member's controller could show.
                AlarmKind::Duress | AlarmKind::LowBattery => None,
                AlarmKind::DoorForcedOpen => Some(AlarmCodeEnum::DoorForcedOpen),
                AlarmKind::DoorAjar => Some(AlarmCodeEnum::DoorAjar),
            };
            out.extend(code.map(MatterEvent::Alarm));
        }
        EventKind::FactoryReset => out.push(MatterEvent::Alarm(AlarmCodeEnum::LockFactoryReset)),
        EventKind::DoorOpened => {
            // The DoorForcedOpen alarm event comes from the engine's
            // alarm (`AlarmRaised`, once per episode, core::door); the
            // door state says how this opening looked.
            if locked {
                out.push(MatterEvent::DoorState(DoorStateEnum::DoorForcedOpen));
            } else {
                out.push(MatterEvent::DoorState(DoorStateEnum::DoorOpen));
            }
        }
        EventKind::DoorClosed => out.push(MatterEvent::DoorState(DoorStateEnum::DoorClosed)),
        EventKind::UserAdded { user } => out.push(MatterEvent::UserChange {
            data: LockDataTypeEnum::UserIndex,
            op: DataOperationTypeEnum::Add,
            user: *user,
        }),
        EventKind::UserDeleted { user } => out.push(MatterEvent::UserChange {
            data: LockDataTypeEnum::UserIndex,
            op: DataOperationTypeEnum::Clear,
            user: *user,
        }),
        EventKind::CredentialAdded { user, kind } => {
            out.extend(credential_data(*kind).map(|data| MatterEvent::UserChange {
                data,
                op: DataOperationTypeEnum::Add,
                user: *user,
            }))
        }
        EventKind::CredentialRemoved { user, kind } => {
            out.extend(credential_data(*kind).map(|data| MatterEvent::UserChange {
                data,
                op: DataOperationTypeEnum::Clear,
                user: *user,
            }))
        }
        EventKind::ScheduleSet { schedule } => {
            let (data, holder, index) = match *schedule {
                Schedule::WeekDay { holder, index, .. } => {
                    (LockDataTypeEnum::WeekDaySchedule, Some(holder), index)
                }
                Schedule::YearDay { holder, index, .. } => {
                    (LockDataTypeEnum::YearDaySchedule, Some(holder), index)
                }
                Schedule::Holiday { index, .. } => (LockDataTypeEnum::HolidaySchedule, None, index),
            };
            out.extend(schedule_change(
                data,
                DataOperationTypeEnum::Add,
                holder,
                index,
            ));
        }
        EventKind::SchedulesCleared {
            kind,
            holder,
            index,
        } => {
            let data = match kind {
                ScheduleKind::WeekDay => LockDataTypeEnum::WeekDaySchedule,
                ScheduleKind::YearDay => LockDataTypeEnum::YearDaySchedule,
                ScheduleKind::Holiday => LockDataTypeEnum::HolidaySchedule,
            };
            out.extend(schedule_change(
                data,
                DataOperationTypeEnum::Clear,
                *holder,
                index.unwrap_or(0xFE),
            ));
        }
        _ => {}
    }
    out
}

/// A schedule change Matter can see: a user's or a holiday, not those of
/// visitor codes and guest keys (the owner's app's, see `schedule.rs`).
fn schedule_change(
    data: LockDataTypeEnum,
    op: DataOperationTypeEnum,
    holder: Option<Holder>,
    index: u8,
) -> Option<MatterEvent> {
    let user = match holder {
        None => None,
        Some(Holder::User(u)) => Some(u),
        Some(Holder::TempPasscode(_) | Holder::GuestKey(_)) => return None,
    };
    Some(MatterEvent::ScheduleChange {
        data,
        op,
        user,
        index,
    })
}

/// The cluster's data type for a credential kind Matter can name. A palm
/// vein is shown as a finger vein (see [`biometric_type`]); duress codes
/// stay silent (B-6.9).
pub fn credential_data(kind: CredentialKind) -> Option<LockDataTypeEnum> {
    match kind {
        CredentialKind::Passcode => Some(LockDataTypeEnum::PIN),
        CredentialKind::Fingerprint => Some(LockDataTypeEnum::Fingerprint),
        CredentialKind::Palm => Some(LockDataTypeEnum::FingerVein),
        CredentialKind::Face => Some(LockDataTypeEnum::Face),
        CredentialKind::DuressPasscode => None,
    }
}

/// The credential type a biometric is listed as (GetUser,
/// GetCredentialStatus, ClearCredential), indexed by its credential id.
///
/// Decision: Matter 1.4 has no palm type. Its one vein biometric is
/// FingerVein, under the same feature bit as fingerprints (FGP), so palm
/// veins are listed as FingerVein: the owner's controller sees them and can
/// delete them, with the wrong word for the body part. Hiding them would
/// leave credentials that open the door invisible to the household's app.
pub fn biometric_type(kind: CredentialKind) -> Option<CredentialTypeEnum> {
    match kind {
        CredentialKind::Fingerprint => Some(CredentialTypeEnum::Fingerprint),
        CredentialKind::Palm => Some(CredentialTypeEnum::FingerVein),
        CredentialKind::Face => Some(CredentialTypeEnum::Face),
        CredentialKind::Passcode | CredentialKind::DuressPasscode => None,
    }
}

/// The biometric a Matter credential type names ([`biometric_type`]
/// backwards); `None` for PINs and the types this lock has not.
pub fn biometric_kind(t: CredentialTypeEnum) -> Option<CredentialKind> {
    match t {
        CredentialTypeEnum::Fingerprint => Some(CredentialKind::Fingerprint),
        CredentialTypeEnum::FingerVein => Some(CredentialKind::Palm),
        CredentialTypeEnum::Face => Some(CredentialKind::Face),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_and_door_states() {
        assert_eq!(
            lock_state(LockState::Locked),
            Nullable::some(DlLockState::Locked)
        );
        assert_eq!(
            lock_state(LockState::Unlocked),
            Nullable::some(DlLockState::Unlocked)
        );
        assert_eq!(
            lock_state(LockState::Moving),
            Nullable::some(DlLockState::NotFullyLocked)
        );
        assert_eq!(
            lock_state(LockState::Jammed),
            Nullable::some(DlLockState::NotFullyLocked)
        );
        assert!(lock_state(LockState::Unknown).is_none());
        assert_eq!(
            door_state(Some(DoorPosition::Open)),
            Nullable::some(DoorStateEnum::DoorOpen)
        );
        assert!(door_state(None).is_none());
    }

    #[test]
    fn operating_modes_map_one_to_one() {
        let s = Settings::default();
        assert_eq!(operating_mode(&s), OperatingModeEnum::NoRemoteLockUnlock);
        // Every mode written reads back as itself.
        for m in [
            OperatingModeEnum::Normal,
            OperatingModeEnum::Vacation,
            OperatingModeEnum::Privacy,
            OperatingModeEnum::NoRemoteLockUnlock,
            OperatingModeEnum::Passage,
        ] {
            let SettingChange::OperatingMode(om) = operating_mode_change(m) else {
                panic!("not a mode change")
            };
            assert_eq!(operating_mode(&s.clone().with_operating_mode(om)), m);
        }
        // All five supported: a CLEARED bit means supported.
        assert_eq!(SUPPORTED_OPERATING_MODES & 0b1_1111, 0);
        assert_eq!(SUPPORTED_OPERATING_MODES, 0xFFE0);
        assert_eq!(
            command_error(&AppError::PrivacyMode),
            ErrorCode::UnsupportedAccess
        );
    }

    #[test]
    fn auto_relock_time_is_the_b_8_3_countdown() {
        let mut s = Settings::default();
        assert_eq!(auto_relock_time(&s), 0);
        s.auto_lock = Some(Duration::from_secs(30));
        assert_eq!(auto_relock_time(&s), 30);
        assert_eq!(auto_relock_change(0), SettingChange::AutoLock(None));
        assert_eq!(
            auto_relock_change(45),
            SettingChange::AutoLock(Some(Duration::from_secs(45)))
        );
    }

    #[test]
    fn refusals_and_their_statuses() {
        assert_eq!(command_error(&AppError::WrongCode), ErrorCode::Failure);
        assert_eq!(
            command_error(&AppError::RemoteUnlockDisabled),
            ErrorCode::UnsupportedAccess
        );
        assert_eq!(
            credential_status(&AppError::BadPasscode("too simple".into())),
            DlStatus::InvalidField
        );
        assert_eq!(
            credential_status(&AppError::BadPasscode(
                "it equals or contains a passcode already in use; choose another".into()
            )),
            DlStatus::Duplicate
        );
        assert_eq!(
            operation_error(&AppError::WrongCode),
            OperationErrorEnum::InvalidCredential
        );
        assert_eq!(
            operation_error(&AppError::LockedOut),
            OperationErrorEnum::Restricted
        );
    }

    #[test]
    fn engine_events_become_matter_events() {
        let u = UserNumber::new(3).unwrap();
        assert_eq!(
            events_of(
                &EventKind::Unlocked {
                    method: Method::Passcode,
                    user: Some(u)
                },
                true
            ),
            vec![MatterEvent::Operation(Operation {
                kind: LockOperationTypeEnum::Unlock,
                source: OperationSourceEnum::Keypad,
                user: Some(u),
                error: None,
            })]
        );
        assert_eq!(
            events_of(
                &EventKind::AlarmRaised {
                    alarm: AlarmKind::Lockout
                },
                false
            ),
            vec![MatterEvent::Alarm(AlarmCodeEnum::WrongCodeEntryLimit)]
        );
        assert!(events_of(
            &EventKind::AlarmRaised {
                alarm: AlarmKind::Duress
            },
            false
        )
        .is_empty());
        assert_eq!(
            events_of(&EventKind::DoorOpened, true),
            vec![MatterEvent::DoorState(DoorStateEnum::DoorForcedOpen)]
        );
        assert_eq!(
            events_of(
                &EventKind::AlarmRaised {
                    alarm: AlarmKind::DoorForcedOpen
                },
                true
            ),
            vec![MatterEvent::Alarm(AlarmCodeEnum::DoorForcedOpen)]
        );
        assert_eq!(
            events_of(
                &EventKind::AlarmRaised {
                    alarm: AlarmKind::DoorAjar
                },
                false
            ),
            vec![MatterEvent::Alarm(AlarmCodeEnum::DoorAjar)]
        );
        assert_eq!(
            events_of(
                &EventKind::CredentialAdded {
                    user: u,
                    kind: CredentialKind::Passcode
                },
                false
            ),
            vec![MatterEvent::UserChange {
                data: LockDataTypeEnum::PIN,
                op: DataOperationTypeEnum::Add,
                user: u
            }]
        );
        assert!(events_of(
            &EventKind::CredentialAdded {
                user: u,
                kind: CredentialKind::DuressPasscode
            },
            false
        )
        .is_empty());
        assert_eq!(
            events_of(
                &EventKind::CredentialRemoved {
                    user: u,
                    kind: CredentialKind::Palm
                },
                false
            ),
            vec![MatterEvent::UserChange {
                data: LockDataTypeEnum::FingerVein,
                op: DataOperationTypeEnum::Clear,
                user: u
            }]
        );
    }

    /// LockUserChange for schedules: a user's (with its index) and the
    /// holidays (no user); 0xFE for "all"; none for a visitor code's.
    #[test]
    fn schedule_changes_become_lock_user_changes() {
        use crate::core::schedule::{Holder, Period, Schedule, ScheduleKind, WeekDay};
        use crate::core::types::TempPasscodeId;
        let u = UserNumber::new(2).unwrap();
        let set = EventKind::ScheduleSet {
            schedule: Schedule::WeekDay {
                holder: Holder::User(u),
                index: 3,
                window: WeekDay::new(1, (9, 0), (10, 0)).unwrap(),
            },
        };
        assert_eq!(
            events_of(&set, false),
            vec![MatterEvent::ScheduleChange {
                data: LockDataTypeEnum::WeekDaySchedule,
                op: DataOperationTypeEnum::Add,
                user: Some(u),
                index: 3
            }]
        );
        let holiday = EventKind::ScheduleSet {
            schedule: Schedule::Holiday {
                index: 2,
                period: Period::new(0, 10).unwrap(),
                mode: OperatingMode::Vacation,
            },
        };
        assert_eq!(
            events_of(&holiday, false),
            vec![MatterEvent::ScheduleChange {
                data: LockDataTypeEnum::HolidaySchedule,
                op: DataOperationTypeEnum::Add,
                user: None,
                index: 2
            }]
        );
        let cleared = EventKind::SchedulesCleared {
            kind: ScheduleKind::YearDay,
            holder: Some(Holder::User(u)),
            index: None,
        };
        assert_eq!(
            events_of(&cleared, false),
            vec![MatterEvent::ScheduleChange {
                data: LockDataTypeEnum::YearDaySchedule,
                op: DataOperationTypeEnum::Clear,
                user: Some(u),
                index: 0xFE
            }]
        );
        let visitor = EventKind::SchedulesCleared {
            kind: ScheduleKind::WeekDay,
            holder: Some(Holder::TempPasscode(TempPasscodeId(1))),
            index: None,
        };
        assert_eq!(events_of(&visitor, false), vec![]);
    }

    #[test]
    fn biometrics_are_listed_under_their_matter_types() {
        for kind in [
            CredentialKind::Fingerprint,
            CredentialKind::Palm,
            CredentialKind::Face,
        ] {
            let t = biometric_type(kind).unwrap();
            assert_eq!(biometric_kind(t), Some(kind));
        }
        assert_eq!(
            biometric_type(CredentialKind::Palm),
            Some(CredentialTypeEnum::FingerVein)
        );
        assert_eq!(biometric_type(CredentialKind::Passcode), None);
        assert_eq!(biometric_type(CredentialKind::DuressPasscode), None);
        assert_eq!(biometric_kind(CredentialTypeEnum::PIN), None);
        assert_eq!(biometric_kind(CredentialTypeEnum::RFID), None);
    }
}
