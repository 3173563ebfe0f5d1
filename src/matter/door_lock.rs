//! The Door Lock cluster (0x0101) on endpoint 1, over the lock engine.
//!
//! ```text
//!  read   LockState, DoorState, OperatingMode…  ◄── published engine status
//!  write  OperatingMode / AutoRelockTime / RequirePIN ─► AppCommand::Setting
//!  invoke LockDoor, UnlockDoor(PIN), UnlockWithTimeout,
//!         SetUser/GetUser/ClearUser, SetCredential/GetCredentialStatus/
//!         ClearCredential(PIN)              ─► LockPort::submit(Principal::Matter)
//!                                               ─► engine ─► AppResult ─► IM status
//!  run    event log ─► LockOperation, LockOperationError, DoorLockAlarm,
//!                      DoorStateChange, LockUserChange; status ─► attribute reports
//! ```
//!
//! Every rule is the engine's: this file only translates. User and PIN
//! indexes are user numbers (one PIN per user, B-1.2); fingerprint, face
//! and palm-vein (as FingerVein) credentials are shown by their credential
//! id and may be cleared but not created (the lock enrols them in front of
//! its sensors).
use core::cell::{Cell, RefCell};
use core::time::Duration;

use rs_matter::dm::clusters::decl::door_lock::{
    self, AttributeId, ClearCredentialRequest, ClearHolidayScheduleRequest, ClearUserRequest,
    ClearWeekDayScheduleRequest, ClearYearDayScheduleRequest, CommandId, CredentialRuleEnum,
    CredentialTypeEnum, DataOperationTypeEnum, DaysMaskMap, DlCredentialRuleMask, DlLockState,
    DlLockType, DlStatus, DlSupportedOperatingModes, DoorLockAlarm, DoorStateChange, DoorStateEnum,
    Feature, GetCredentialStatusRequest, GetCredentialStatusResponseBuilder,
    GetHolidayScheduleRequest, GetHolidayScheduleResponseBuilder, GetUserRequest,
    GetUserResponseBuilder, GetWeekDayScheduleRequest, GetWeekDayScheduleResponseBuilder,
    GetYearDayScheduleRequest, GetYearDayScheduleResponseBuilder, LockDoorRequest, LockOperation,
    LockOperationError, LockOperationTypeEnum, LockUserChange, OperatingModeEnum,
    OperationSourceEnum, SetAliroReaderConfigRequest, SetCredentialRequest,
    SetCredentialResponseBuilder, SetHolidayScheduleRequest, SetUserRequest,
    SetWeekDayScheduleRequest, SetYearDayScheduleRequest, UnboltDoorRequest, UnlockDoorRequest,
    UnlockWithTimeoutRequest, UserStatusEnum,
};
use rs_matter::dm::{
    Cluster, Dataver, EndptId, HandlerContext, InvokeContext, OperationContext, ReadContext,
    WriteContext,
};
use rs_matter::error::{Error, ErrorCode};
use rs_matter::tlv::{Nullable, TLVBuilderParent};
use rs_matter::with;
use tokio::sync::{broadcast, watch};

use super::labels::{Label, Labels, MAX_NAME};
use super::mapping::{self, MatterEvent, Operation};
use super::port::LockPort;
use super::schedule::{self, Found};
use crate::core::schedule::{Schedule, ScheduleKind};
use crate::core::types::{CredentialId, CredentialKind, Persisted, Role, UserNumber};
use crate::core::{AppCommand, AppError, AppOk, AppResult, Principal, Status};

/// Matter's "all entries" index for ClearUser / ClearCredential.
const ALL: u16 = 0xFFFE;
/// B-1.4: users 001..=999.
const TOTAL_USERS: u16 = UserNumber::MAX;
/// B-1.1: 50 passcodes in the lock.
const PIN_USERS: u16 = crate::core::types::limits::PASSCODES as u16;
/// One PIN, up to 3 faces, 2 palms and 5 fingerprints per user (B-1.2)
/// that Matter can name (the duress code stays hidden, B-6.9).
const CREDENTIALS_PER_USER: u8 = (crate::core::types::limits::PASSCODES_PER_USER
    + crate::core::types::limits::FACES_PER_USER
    + crate::core::types::limits::PALMS_PER_USER
    + crate::core::types::limits::FINGERPRINTS_PER_USER) as u8;

impl std::fmt::Debug for DoorLock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoorLock").finish_non_exhaustive()
    }
}

/// What one Door Lock endpoint needs.
pub struct DoorLock<'a> {
    dataver: Dataver,
    endpoint: EndptId,
    port: &'a dyn LockPort,
    status: watch::Receiver<Status>,
    labels: RefCell<Labels>,
    /// Who sent the last Matter command that reached the engine: the
    /// engine's log says "unlocked over Matter", the LockOperation event
    /// also names the fabric and node.
    last_matter: Cell<Option<(u8, u64)>>,
}

impl<'a> DoorLock<'a> {
    pub const CLUSTER: Cluster<'static> = door_lock::FULL_CLUSTER
        .with_features(
            Feature::PIN_CREDENTIAL.bits()
                | Feature::USER.bits()
                | Feature::DOOR_POSITION_SENSOR.bits()
                | Feature::CREDENTIALS_OVER_THE_AIR_ACCESS.bits()
                | Feature::FINGER_CREDENTIALS.bits()
                | Feature::FACE_CREDENTIALS.bits()
                | Feature::WEEK_DAY_ACCESS_SCHEDULES.bits()
                | Feature::YEAR_DAY_ACCESS_SCHEDULES.bits()
                | Feature::HOLIDAY_SCHEDULES.bits(),
        )
        .with_attrs(with!(
            required;
            AttributeId::DoorState
                | AttributeId::NumberOfTotalUsersSupported
                | AttributeId::NumberOfPINUsersSupported
                | AttributeId::MaxPINCodeLength
                | AttributeId::MinPINCodeLength
                | AttributeId::CredentialRulesSupport
                | AttributeId::NumberOfCredentialsSupportedPerUser
                | AttributeId::AutoRelockTime
                | AttributeId::WrongCodeEntryLimit
                | AttributeId::UserCodeTemporaryDisableTime
                | AttributeId::RequirePINforRemoteOperation
                | AttributeId::NumberOfWeekDaySchedulesSupportedPerUser
                | AttributeId::NumberOfYearDaySchedulesSupportedPerUser
                | AttributeId::NumberOfHolidaySchedulesSupported
        ))
        .with_cmds(with!(
            CommandId::LockDoor
                | CommandId::UnlockDoor
                | CommandId::UnlockWithTimeout
                | CommandId::SetUser
                | CommandId::GetUser
                | CommandId::ClearUser
                | CommandId::SetCredential
                | CommandId::GetCredentialStatus
                | CommandId::ClearCredential
                | CommandId::SetWeekDaySchedule
                | CommandId::GetWeekDaySchedule
                | CommandId::ClearWeekDaySchedule
                | CommandId::SetYearDaySchedule
                | CommandId::GetYearDaySchedule
                | CommandId::ClearYearDaySchedule
                | CommandId::SetHolidaySchedule
                | CommandId::GetHolidaySchedule
                | CommandId::ClearHolidaySchedule
        ));

    pub fn new(dataver: Dataver, endpoint: EndptId, port: &'a dyn LockPort) -> Self {
        DoorLock {
            dataver,
            endpoint,
            port,
            status: port.status(),
            labels: RefCell::new(Labels::load(port)),
            last_matter: Cell::new(None),
        }
    }

    /// The Matter principal behind a command: its fabric and node.
    fn principal(ctx: &impl OperationContext) -> Result<(u8, u64), Error> {
        let accessor = ctx.accessor()?;
        let fabric = accessor.fab_idx()?.get();
        Ok((fabric, node_of(&accessor.subjects().to_string())))
    }

    /// Run a command in the engine as the command's sender.
    async fn submit(
        &self,
        ctx: &impl OperationContext,
        command: AppCommand,
    ) -> Result<AppResult, Error> {
        let (fabric, node) = Self::principal(ctx)?;
        self.last_matter.set(Some((fabric, node)));
        match self
            .port
            .submit(Principal::Matter { fabric, node }, command)
            .await
        {
            Some(result) => Ok(result),
            None => {
                tracing::error!("Matter: the lock engine has stopped");
                Err(ErrorCode::Busy.into())
            }
        }
    }

    /// A command whose only answer is a status.
    async fn command(&self, ctx: &impl InvokeContext, command: AppCommand) -> Result<AppOk, Error> {
        match self.submit(ctx, command).await? {
            Ok(ok) => Ok(ok),
            Err(e) => {
                tracing::info!("Matter: command refused: {e}");
                Err(mapping::command_error(&e).into())
            }
        }
    }

    /// A schedule command: the engine's refusals as the cluster's statuses.
    async fn schedule_command(
        &self,
        ctx: &impl InvokeContext,
        command: AppCommand,
    ) -> Result<(), Error> {
        match self.submit(ctx, command).await? {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::info!("Matter: schedule command refused: {e}");
                Err(schedule::command_error(&e).into())
            }
        }
    }

    /// Clearing the schedules of a user that does not exist is FAILURE
    /// (the engine would clear none and say so).
    fn user_must_exist(&self, user: UserNumber) -> Result<(), Error> {
        if self.directory()?.users.iter().any(|u| u.number == user) {
            Ok(())
        } else {
            Err(ErrorCode::Failure.into())
        }
    }

    /// Lock or unlock: a refusal is also a LockOperationError event (the
    /// engine logs the wrong-code case itself; that one is left to it).
    async fn operate(
        &self,
        ctx: &impl InvokeContext,
        kind: LockOperationTypeEnum,
        command: AppCommand,
    ) -> Result<(), Error> {
        let (fabric, node) = Self::principal(ctx)?;
        match self.submit(ctx, command).await? {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::info!("Matter: {kind:?} refused: {e}");
                if e != AppError::WrongCode {
                    let op = Operation {
                        kind,
                        source: OperationSourceEnum::Remote,
                        user: None,
                        error: Some(mapping::operation_error(&e)),
                    };
                    if let Err(err) = emit_operation(ctx, self.endpoint, op, Some((fabric, node))) {
                        tracing::warn!("Matter: cannot emit LockOperationError: {err:?}");
                    }
                }
                Err(mapping::command_error(&e).into())
            }
        }
    }

    fn directory(&self) -> Result<Persisted, Error> {
        self.port.directory().map_err(|e| {
            tracing::error!("Matter: cannot read the user table: {e}");
            ErrorCode::Failure.into()
        })
    }

    /// Attribute changes the status carries, as report notifications.
    fn notify_status(&self, ctx: &impl HandlerContext, old: &Status, new: &Status) {
        let mut changed = Vec::new();
        if old.lock != new.lock {
            changed.push(AttributeId::LockState);
        }
        if old.door != new.door {
            changed.push(AttributeId::DoorState);
        }
        if old.settings.remote_unlock != new.settings.remote_unlock {
            changed.push(AttributeId::OperatingMode);
        }
        if old.settings.auto_lock != new.settings.auto_lock {
            changed.push(AttributeId::AutoRelockTime);
        }
        if old.settings.require_pin_remote != new.settings.require_pin_remote {
            changed.push(AttributeId::RequirePINforRemoteOperation);
        }
        if changed.is_empty() {
            return;
        }
        self.dataver.changed();
        for attr in changed {
            ctx.notify_attr_changed(self.endpoint, Self::CLUSTER.id, attr as _);
        }
    }

    /// One logged engine event, as the Matter events it becomes.
    fn on_event(&self, ctx: &impl HandlerContext, event: &crate::core::Event) {
        use crate::core::event::EventKind;
        let locked = self.status.borrow().lock == crate::core::LockState::Locked;
        if let EventKind::UserDeleted { user } = &event.kind {
            if let Err(e) = self.labels.borrow_mut().set(self.port, *user, None) {
                tracing::warn!("Matter: cannot drop the label of deleted user {user}: {e}");
            }
        }
        // A wrong PIN over Matter: its command left the LockOperationError
        // to this, the engine's record of the counted failure.
        if let EventKind::VerifyFailed {
            method: crate::core::types::Method::Matter,
            ..
        } = &event.kind
        {
            let op = Operation {
                kind: LockOperationTypeEnum::Unlock,
                source: OperationSourceEnum::Remote,
                user: None,
                error: Some(door_lock::OperationErrorEnum::InvalidCredential),
            };
            if let Err(e) = emit_operation(ctx, self.endpoint, op, self.last_matter.get()) {
                tracing::warn!("Matter: cannot emit an event: {e:?}");
            }
            return;
        }
        for m in mapping::events_of(&event.kind, locked) {
            let result = match m {
                MatterEvent::Operation(op) => {
                    let source = (op.source == OperationSourceEnum::Remote)
                        .then(|| self.last_matter.get())
                        .flatten();
                    emit_operation(ctx, self.endpoint, op, source)
                }
                MatterEvent::Alarm(code) => {
                    DoorLockAlarm::emit_for(ctx, self.endpoint, |b| b.alarm_code(code)?.end())
                }
                MatterEvent::DoorState(state) => {
                    DoorStateChange::emit_for(ctx, self.endpoint, |b| b.door_state(state)?.end())
                }
                MatterEvent::ScheduleChange {
                    data,
                    op,
                    user,
                    index,
                } => LockUserChange::emit_for(ctx, self.endpoint, |b| {
                    b.lock_data_type(data)?
                        .data_operation_type(op)?
                        .operation_source(OperationSourceEnum::Unspecified)?
                        .user_index(Nullable::new(user.map(UserNumber::get)))?
                        .fabric_index(Nullable::none())?
                        .source_node(Nullable::none())?
                        .data_index(Nullable::some(u16::from(index)))?
                        .end()
                }),
                MatterEvent::UserChange { data, op, user } => {
                    LockUserChange::emit_for(ctx, self.endpoint, |b| {
                        b.lock_data_type(data)?
                            .data_operation_type(op)?
                            .operation_source(OperationSourceEnum::Unspecified)?
                            .user_index(Nullable::some(user.get()))?
                            .fabric_index(Nullable::none())?
                            .source_node(Nullable::none())?
                            .data_index(Nullable::some(user.get()))?
                            .end()
                    })
                }
            };
            if let Err(e) = result {
                tracing::warn!("Matter: cannot emit an event: {e:?}");
            }
        }
    }

    /// SetCredential for a PIN: the index is the user number.
    async fn set_pin(
        &self,
        ctx: &impl InvokeContext,
        op: DataOperationTypeEnum,
        index: u16,
        data: &[u8],
        user_index: Nullable<u16>,
        user_type: Nullable<door_lock::UserTypeEnum>,
    ) -> Result<(DlStatus, Option<UserNumber>), Error> {
        let Some(user) = mapping::user_number(index) else {
            return Ok((DlStatus::InvalidField, None));
        };
        if user_index.as_opt_ref().is_some_and(|u| *u != index) {
            // One PIN per user, under the user's own number.
            return Ok((DlStatus::InvalidField, None));
        }
        let Ok(digits) = pin_text(data) else {
            return Ok((DlStatus::InvalidField, None));
        };
        let dir = self.directory()?;
        let exists = dir.users.iter().any(|u| u.number == user);
        let has_pin = dir
            .credentials
            .iter()
            .any(|c| c.user == user && c.kind == CredentialKind::Passcode);
        match op {
            DataOperationTypeEnum::Add if has_pin => return Ok((DlStatus::Occupied, Some(user))),
            DataOperationTypeEnum::Modify if !has_pin => return Ok((DlStatus::NotFound, None)),
            DataOperationTypeEnum::Clear => return Err(ErrorCode::InvalidCommand.into()),
            _ => {}
        }
        if !exists {
            if !user_index.is_none() {
                return Ok((DlStatus::NotFound, None));
            }
            // A PIN for a new user: the user is made first, as Matter asks.
            let role = match user_type.into_option() {
                None => Role::User,
                Some(t) => match mapping::role(t) {
                    Ok(r) => r,
                    Err(_) => return Ok((DlStatus::InvalidField, None)),
                },
            };
            if let Err(e) = self
                .submit(ctx, AppCommand::AddUserAt { user, role })
                .await?
            {
                return Ok((mapping::credential_status(&e), None));
            }
        }
        let result = self
            .submit(
                ctx,
                AppCommand::SetPasscode {
                    user,
                    digits: digits.into(),
                },
            )
            .await?;
        Ok(match result {
            Ok(_) => (DlStatus::Success, Some(user)),
            Err(e) => {
                tracing::info!("Matter: PIN for user {user} refused: {e}");
                (mapping::credential_status(&e), None)
            }
        })
    }
}

/// The operational node id from an accessor's subjects as rs-matter
/// prints them (`[112233, CAT(…)]`): rs-matter 0.4.1 does not expose the
/// subjects list. 0 when there is none (a PASE session).
fn node_of(subjects: &str) -> u64 {
    subjects
        .trim_start_matches('[')
        .split(',')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A PIN as text: Matter sends the digits as ASCII bytes.
fn pin_text(data: &[u8]) -> Result<&str, Error> {
    match core::str::from_utf8(data) {
        Ok(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Ok(s),
        _ => Err(ErrorCode::ConstraintError.into()),
    }
}

fn emit_operation(
    emitter: impl rs_matter::dm::EventEmitter,
    endpoint: EndptId,
    op: Operation,
    source: Option<(u8, u64)>,
) -> Result<rs_matter::dm::EventNumber, Error> {
    let user = Nullable::new(op.user.map(|u| u.get()));
    let fabric = Nullable::new(source.map(|(f, _)| f));
    let node = Nullable::new(source.map(|(_, n)| n).filter(|n| *n != 0));
    match op.error {
        None => LockOperation::emit_for(emitter, endpoint, |b| {
            b.lock_operation_type(op.kind)?
                .operation_source(op.source)?
                .user_index(user)?
                .fabric_index(fabric)?
                .source_node(node)?
                .credentials()?
                .none()
                .end()
        }),
        Some(error) => LockOperationError::emit_for(emitter, endpoint, |b| {
            b.lock_operation_type(op.kind)?
                .operation_source(op.source)?
                .operation_error(error)?
                .user_index(user)?
                .fabric_index(fabric)?
                .source_node(node)?
                .credentials()?
                .none()
                .end()
        }),
    }
}

impl door_lock::ClusterAsyncHandler for DoorLock<'_> {
    const CLUSTER: Cluster<'static> = DoorLock::CLUSTER;

    fn dataver(&self) -> u32 {
        self.dataver.get()
    }

    fn dataver_changed(&self) {
        self.dataver.changed();
    }

    /// Follow the lock: status changes become attribute reports, logged
    /// events become Matter events.
    async fn run(&self, ctx: impl HandlerContext) -> Result<(), Error> {
        let mut status = self.port.status();
        let mut events = self.port.events();
        let mut seen = status.borrow_and_update().clone();
        loop {
            tokio::select! {
                changed = status.changed() => {
                    if changed.is_err() {
                        return Ok(()); // the lock is shutting down
                    }
                    let now = status.borrow_and_update().clone();
                    self.notify_status(&ctx, &seen, &now);
                    seen = now;
                }
                event = events.recv() => match event {
                    Ok(e) => self.on_event(&ctx, &e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("Matter: {n} lock events were not turned into Matter events (too many at once)");
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    async fn lock_state(&self, _ctx: impl ReadContext) -> Result<Nullable<DlLockState>, Error> {
        Ok(mapping::lock_state(self.status.borrow().lock))
    }

    async fn lock_type(&self, _ctx: impl ReadContext) -> Result<DlLockType, Error> {
        // The lock drives the bolt of a 6068/5085 mortise lock body.
        Ok(DlLockType::Mortise)
    }

    async fn actuator_enabled(&self, _ctx: impl ReadContext) -> Result<bool, Error> {
        Ok(true)
    }

    async fn door_state(&self, _ctx: impl ReadContext) -> Result<Nullable<DoorStateEnum>, Error> {
        Ok(mapping::door_state(self.status.borrow().door))
    }

    async fn number_of_total_users_supported(&self, _ctx: impl ReadContext) -> Result<u16, Error> {
        Ok(TOTAL_USERS)
    }

    async fn number_of_pin_users_supported(&self, _ctx: impl ReadContext) -> Result<u16, Error> {
        Ok(PIN_USERS)
    }

    async fn max_pin_code_length(&self, _ctx: impl ReadContext) -> Result<u8, Error> {
        Ok(crate::core::types::limits::PASSCODE_MAX as u8)
    }

    async fn min_pin_code_length(&self, _ctx: impl ReadContext) -> Result<u8, Error> {
        Ok(crate::core::types::limits::PASSCODE_MIN as u8)
    }

    async fn credential_rules_support(
        &self,
        _ctx: impl ReadContext,
    ) -> Result<DlCredentialRuleMask, Error> {
        Ok(DlCredentialRuleMask::SINGLE)
    }

    async fn number_of_credentials_supported_per_user(
        &self,
        _ctx: impl ReadContext,
    ) -> Result<u8, Error> {
        Ok(CREDENTIALS_PER_USER)
    }

    async fn number_of_week_day_schedules_supported_per_user(
        &self,
        _ctx: impl ReadContext,
    ) -> Result<u8, Error> {
        Ok(crate::core::schedule::WEEK_DAY_PER_HOLDER)
    }

    async fn number_of_year_day_schedules_supported_per_user(
        &self,
        _ctx: impl ReadContext,
    ) -> Result<u8, Error> {
        Ok(crate::core::schedule::YEAR_DAY_PER_HOLDER)
    }

    async fn number_of_holiday_schedules_supported(
        &self,
        _ctx: impl ReadContext,
    ) -> Result<u8, Error> {
        Ok(crate::core::schedule::HOLIDAYS)
    }

    async fn auto_relock_time(&self, _ctx: impl ReadContext) -> Result<u32, Error> {
        Ok(mapping::auto_relock_time(&self.status.borrow().settings))
    }

    async fn set_auto_relock_time(&self, ctx: impl WriteContext, value: u32) -> Result<(), Error> {
        let change = mapping::auto_relock_change(value);
        self.submit(&ctx, AppCommand::Setting(change))
            .await?
            .map_err(|e| Error::from(mapping::command_error(&e)))?;
        ctx.notify_changed();
        Ok(())
    }

    async fn operating_mode(&self, _ctx: impl ReadContext) -> Result<OperatingModeEnum, Error> {
        Ok(mapping::operating_mode(&self.status.borrow().settings))
    }

    async fn set_operating_mode(
        &self,
        ctx: impl WriteContext,
        value: OperatingModeEnum,
    ) -> Result<(), Error> {
        let change = mapping::operating_mode_change(value);
        self.submit(&ctx, AppCommand::Setting(change))
            .await?
            .map_err(|e| Error::from(mapping::command_error(&e)))?;
        ctx.notify_changed();
        Ok(())
    }

    async fn supported_operating_modes(
        &self,
        _ctx: impl ReadContext,
    ) -> Result<DlSupportedOperatingModes, Error> {
        Ok(DlSupportedOperatingModes::from_bits_retain(
            mapping::SUPPORTED_OPERATING_MODES,
        ))
    }

    async fn wrong_code_entry_limit(&self, _ctx: impl ReadContext) -> Result<u8, Error> {
        Ok(crate::core::policy::STRIKES_PER_LEVEL as u8)
    }

    async fn set_wrong_code_entry_limit(
        &self,
        _ctx: impl WriteContext,
        value: u8,
    ) -> Result<(), Error> {
        // B-7.1 fixes the budget; writing the value it has is accepted.
        if u32::from(value) == crate::core::policy::STRIKES_PER_LEVEL {
            Ok(())
        } else {
            Err(ErrorCode::ConstraintError.into())
        }
    }

    async fn user_code_temporary_disable_time(&self, _ctx: impl ReadContext) -> Result<u8, Error> {
        Ok(u8::try_from(crate::core::policy::LOCKOUT.as_secs()).unwrap_or(u8::MAX))
    }

    async fn set_user_code_temporary_disable_time(
        &self,
        _ctx: impl WriteContext,
        value: u8,
    ) -> Result<(), Error> {
        if u64::from(value) == crate::core::policy::LOCKOUT.as_secs() {
            Ok(())
        } else {
            Err(ErrorCode::ConstraintError.into())
        }
    }

    async fn require_pi_nfor_remote_operation(
        &self,
        _ctx: impl ReadContext,
    ) -> Result<bool, Error> {
        Ok(self.status.borrow().settings.require_pin_remote)
    }

    async fn set_require_pi_nfor_remote_operation(
        &self,
        ctx: impl WriteContext,
        value: bool,
    ) -> Result<(), Error> {
        let change = crate::core::types::SettingChange::RequirePinRemote(value);
        self.submit(&ctx, AppCommand::Setting(change))
            .await?
            .map_err(|e| Error::from(mapping::command_error(&e)))?;
        ctx.notify_changed();
        Ok(())
    }

    async fn handle_lock_door(
        &self,
        ctx: impl InvokeContext,
        _request: LockDoorRequest<'_>,
    ) -> Result<(), Error> {
        // Decision: locking needs no PIN even when RequirePINforRemoteOperation
        // is set, and works in NoRemoteLockUnlock: a lock never refuses to
        // lock (the engine's rule on every channel).
        self.operate(&ctx, LockOperationTypeEnum::Lock, AppCommand::Lock)
            .await
    }

    async fn handle_unlock_door(
        &self,
        ctx: impl InvokeContext,
        request: UnlockDoorRequest<'_>,
    ) -> Result<(), Error> {
        let code = request
            .pin_code()?
            .map(|p| pin_text(p.0).map(str::to_string))
            .transpose();
        let code = match code {
            Ok(c) => c,
            // Not even digits: a wrong code all the same, counted.
            Err(_) => Some(String::from("x")),
        };
        self.operate(
            &ctx,
            LockOperationTypeEnum::Unlock,
            AppCommand::UnlockWithCode {
                code: code.map(Into::into),
                relock_after: None,
            },
        )
        .await
    }

    async fn handle_unlock_with_timeout(
        &self,
        ctx: impl InvokeContext,
        request: UnlockWithTimeoutRequest<'_>,
    ) -> Result<(), Error> {
        let timeout = request.timeout()?;
        if timeout == 0 {
            return Err(ErrorCode::ConstraintError.into());
        }
        let code = request
            .pin_code()?
            .map(|p| pin_text(p.0).map(str::to_string))
            .transpose();
        let code = code.unwrap_or_else(|_| Some(String::from("x")));
        self.operate(
            &ctx,
            LockOperationTypeEnum::Unlock,
            AppCommand::UnlockWithCode {
                code: code.map(Into::into),
                relock_after: Some(Duration::from_secs(u64::from(timeout))),
            },
        )
        .await
    }

    async fn handle_set_user(
        &self,
        ctx: impl InvokeContext,
        request: SetUserRequest<'_>,
    ) -> Result<(), Error> {
        let user = mapping::user_number(request.user_index()?).ok_or(ErrorCode::ConstraintError)?;
        if request
            .user_status()?
            .into_option()
            .is_some_and(|s| s != UserStatusEnum::OccupiedEnabled)
        {
            // The engine has no disabled users.
            return Err(ErrorCode::ConstraintError.into());
        }
        if request
            .credential_rule()?
            .into_option()
            .is_some_and(|r| r != CredentialRuleEnum::Single)
        {
            return Err(ErrorCode::ConstraintError.into());
        }
        let role = request
            .user_type()?
            .into_option()
            .map(mapping::role)
            .transpose()?;
        let name = request.user_name()?.into_option().map(str::to_string);
        if name.as_ref().is_some_and(|n| n.chars().count() > MAX_NAME) {
            return Err(ErrorCode::ConstraintError.into());
        }
        let unique_id = request.user_unique_id()?.into_option();
        match request.operation_type()? {
            DataOperationTypeEnum::Add => {
                let role = role.unwrap_or(Role::User);
                self.command(&ctx, AppCommand::AddUserAt { user, role })
                    .await?;
            }
            DataOperationTypeEnum::Modify => {
                if let Some(role) = role {
                    self.command(&ctx, AppCommand::SetRole { user, role })
                        .await?;
                } else if !self.directory()?.users.iter().any(|u| u.number == user) {
                    return Err(ErrorCode::NotFound.into());
                }
            }
            DataOperationTypeEnum::Clear => return Err(ErrorCode::InvalidCommand.into()),
        }
        if name.is_some() || unique_id.is_some() {
            let label = Label {
                name: name.unwrap_or_default(),
                unique_id,
            };
            self.labels
                .borrow_mut()
                .set(self.port, user, Some(label))
                .map_err(|e| {
                    tracing::error!("{e}");
                    Error::from(ErrorCode::Failure)
                })?;
        }
        Ok(())
    }

    async fn handle_get_user<P: TLVBuilderParent>(
        &self,
        _ctx: impl InvokeContext,
        request: GetUserRequest<'_>,
        response: GetUserResponseBuilder<P>,
    ) -> Result<P, Error> {
        let index = request.user_index()?;
        let user = mapping::user_number(index).ok_or(ErrorCode::ConstraintError)?;
        let dir = self.directory()?;
        let next = dir
            .users
            .iter()
            .map(|u| u.number.get())
            .find(|n| *n > index);
        let found = dir.users.iter().find(|u| u.number == user);
        let labels = self.labels.borrow();
        let label = labels.get(user);
        let b = response.user_index(index)?;
        let Some(u) = found else {
            return b
                .user_name(Nullable::none())?
                .user_unique_id(Nullable::none())?
                .user_status(Nullable::none())?
                .user_type(Nullable::none())?
                .credential_rule(Nullable::none())?
                .credentials()?
                .null()?
                .creator_fabric_index(Nullable::none())?
                .last_modified_fabric_index(Nullable::none())?
                .next_user_index(Nullable::new(next))?
                .end();
        };
        let mut creds = b
            .user_name(Nullable::some(label.map_or("", |l| l.name.as_str())))?
            .user_unique_id(Nullable::new(label.and_then(|l| l.unique_id)))?
            .user_status(Nullable::some(UserStatusEnum::OccupiedEnabled))?
            .user_type(Nullable::some(mapping::user_type(u.role)))?
            .credential_rule(Nullable::some(CredentialRuleEnum::Single))?
            .credentials()?
            .non_null()?;
        for c in dir.credentials.iter().filter(|c| c.user == user) {
            let (kind, idx) = match c.kind {
                CredentialKind::Passcode => (CredentialTypeEnum::PIN, user.get()),
                // Duress codes stay silent (B-6.9).
                CredentialKind::DuressPasscode => continue,
                // Fingerprints, faces, palm veins (as FingerVein) by id.
                biometric => match mapping::biometric_type(biometric) {
                    Some(t) => (t, credential_index(c.id)),
                    None => continue,
                },
            };
            creds = creds
                .push()?
                .credential_type(kind)?
                .credential_index(idx)?
                .end()?;
        }
        creds
            .end()?
            .creator_fabric_index(Nullable::none())?
            .last_modified_fabric_index(Nullable::none())?
            .next_user_index(Nullable::new(next))?
            .end()
    }

    async fn handle_clear_user(
        &self,
        ctx: impl InvokeContext,
        request: ClearUserRequest<'_>,
    ) -> Result<(), Error> {
        let index = request.user_index()?;
        if index == ALL {
            // Decision: "all users" would delete every administrator; the
            // engine always keeps the last one, so this is refused whole.
            return Err(ErrorCode::InvalidCommand.into());
        }
        let user = mapping::user_number(index).ok_or(ErrorCode::ConstraintError)?;
        self.command(&ctx, AppCommand::DeleteUser(user)).await?;
        Ok(())
    }

    async fn handle_set_credential<P: TLVBuilderParent>(
        &self,
        ctx: impl InvokeContext,
        request: SetCredentialRequest<'_>,
        response: SetCredentialResponseBuilder<P>,
    ) -> Result<P, Error> {
        let credential = request.credential()?;
        let (status, user) = match credential.credential_type()? {
            CredentialTypeEnum::PIN => {
                let data = request.credential_data()?;
                self.set_pin(
                    &ctx,
                    request.operation_type()?,
                    credential.credential_index()?,
                    data.0,
                    request.user_index()?,
                    request.user_type()?,
                )
                .await?
            }
            // Fingerprints and faces are enrolled at the lock's sensors,
            // never sent over the air; programming PINs do not exist here.
            _ => return Err(ErrorCode::InvalidCommand.into()),
        };
        let next = if status == DlStatus::Success {
            None
        } else {
            next_free_pin(&self.directory()?, credential.credential_index()?)
        };
        response
            .status(status)?
            .user_index(Nullable::new(user.map(|u| u.get())))?
            .next_credential_index(Nullable::new(next))?
            .end()
    }

    async fn handle_get_credential_status<P: TLVBuilderParent>(
        &self,
        _ctx: impl InvokeContext,
        request: GetCredentialStatusRequest<'_>,
        response: GetCredentialStatusResponseBuilder<P>,
    ) -> Result<P, Error> {
        let credential = request.credential()?;
        let index = credential.credential_index()?;
        let dir = self.directory()?;
        let (owner, next) = match credential.credential_type()? {
            CredentialTypeEnum::PIN => {
                let user = mapping::user_number(index).ok_or(ErrorCode::ConstraintError)?;
                let owner = dir
                    .credentials
                    .iter()
                    .any(|c| c.user == user && c.kind == CredentialKind::Passcode)
                    .then_some(user);
                let next = dir
                    .credentials
                    .iter()
                    .filter(|c| c.kind == CredentialKind::Passcode && c.user.get() > index)
                    .map(|c| c.user.get())
                    .min();
                (owner, next)
            }
            t => {
                let kind = mapping::biometric_kind(t).ok_or(ErrorCode::InvalidCommand)?;
                let owner = dir
                    .credentials
                    .iter()
                    .find(|c| c.kind == kind && credential_index(c.id) == index)
                    .map(|c| c.user);
                let next = dir
                    .credentials
                    .iter()
                    .filter(|c| c.kind == kind && credential_index(c.id) > index)
                    .map(|c| credential_index(c.id))
                    .min();
                (owner, next)
            }
        };
        response
            .credential_exists(owner.is_some())?
            .user_index(Nullable::new(owner.map(|u| u.get())))?
            .creator_fabric_index(Nullable::none())?
            .last_modified_fabric_index(Nullable::none())?
            .next_credential_index(Nullable::new(next))?
            // PINs are never read back (the lock keeps only their MAC).
            .credential_data(None)?
            .end()
    }

    async fn handle_clear_credential(
        &self,
        ctx: impl InvokeContext,
        request: ClearCredentialRequest<'_>,
    ) -> Result<(), Error> {
        let Some(credential) = request.credential()?.into_option() else {
            // "Every credential of every user": refused, like ClearUser(all).
            return Err(ErrorCode::InvalidCommand.into());
        };
        let index = credential.credential_index()?;
        if index == ALL {
            return Err(ErrorCode::InvalidCommand.into());
        }
        let dir = self.directory()?;
        let id = match credential.credential_type()? {
            CredentialTypeEnum::PIN => {
                let user = mapping::user_number(index).ok_or(ErrorCode::ConstraintError)?;
                dir.credentials
                    .iter()
                    .find(|c| c.user == user && c.kind == CredentialKind::Passcode)
                    .map(|c| c.id)
            }
            t => {
                let kind = mapping::biometric_kind(t).ok_or(ErrorCode::InvalidCommand)?;
                find_id(&dir, kind, index)
            }
        };
        let id = id.ok_or(ErrorCode::NotFound)?;
        self.command(&ctx, AppCommand::DeleteCredential(id)).await?;
        Ok(())
    }

    // The schedules (WDSCH, YDSCH, HDSCH): `schedule.rs` converts, the
    // engine decides.

    async fn handle_set_week_day_schedule(
        &self,
        ctx: impl InvokeContext,
        request: SetWeekDayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        let command = schedule::set_week_day(
            request.week_day_index()?,
            request.user_index()?,
            request.days_mask()?.bits(),
            (request.start_hour()?, request.start_minute()?),
            (request.end_hour()?, request.end_minute()?),
        )?;
        self.schedule_command(&ctx, command).await
    }

    async fn handle_get_week_day_schedule<P: TLVBuilderParent>(
        &self,
        _ctx: impl InvokeContext,
        request: GetWeekDayScheduleRequest<'_>,
        response: GetWeekDayScheduleResponseBuilder<P>,
    ) -> Result<P, Error> {
        let (index, user) = (request.week_day_index()?, request.user_index()?);
        let found = schedule::get(&self.directory()?, ScheduleKind::WeekDay, index, Some(user));
        let b = response.week_day_index(index)?.user_index(user)?;
        match found {
            Found::Schedule(Schedule::WeekDay { window, .. }) => {
                let ((sh, sm), (eh, em)) = window.hm();
                b.status(DlStatus::Success)?
                    .days_mask(Some(DaysMaskMap::from_bits_retain(window.days)))?
                    .start_hour(Some(sh))?
                    .start_minute(Some(sm))?
                    .end_hour(Some(eh))?
                    .end_minute(Some(em))?
                    .end()
            }
            other => b
                .status(found_status(other))?
                .days_mask(None)?
                .start_hour(None)?
                .start_minute(None)?
                .end_hour(None)?
                .end_minute(None)?
                .end(),
        }
    }

    async fn handle_clear_week_day_schedule(
        &self,
        ctx: impl InvokeContext,
        request: ClearWeekDayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        let (user, command) = schedule::clear_for_user(
            ScheduleKind::WeekDay,
            request.week_day_index()?,
            request.user_index()?,
        )?;
        self.user_must_exist(user)?;
        self.schedule_command(&ctx, command).await
    }

    async fn handle_set_year_day_schedule(
        &self,
        ctx: impl InvokeContext,
        request: SetYearDayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        let command = schedule::set_year_day(
            request.year_day_index()?,
            request.user_index()?,
            request.local_start_time()?,
            request.local_end_time()?,
        )?;
        self.schedule_command(&ctx, command).await
    }

    async fn handle_get_year_day_schedule<P: TLVBuilderParent>(
        &self,
        _ctx: impl InvokeContext,
        request: GetYearDayScheduleRequest<'_>,
        response: GetYearDayScheduleResponseBuilder<P>,
    ) -> Result<P, Error> {
        let (index, user) = (request.year_day_index()?, request.user_index()?);
        let found = schedule::get(&self.directory()?, ScheduleKind::YearDay, index, Some(user));
        let b = response.year_day_index(index)?.user_index(user)?;
        match found {
            Found::Schedule(Schedule::YearDay { period, .. }) => b
                .status(DlStatus::Success)?
                .local_start_time(Some(schedule::to_matter(period.start)))?
                .local_end_time(Some(schedule::to_matter(period.end)))?
                .end(),
            other => b
                .status(found_status(other))?
                .local_start_time(None)?
                .local_end_time(None)?
                .end(),
        }
    }

    async fn handle_clear_year_day_schedule(
        &self,
        ctx: impl InvokeContext,
        request: ClearYearDayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        let (user, command) = schedule::clear_for_user(
            ScheduleKind::YearDay,
            request.year_day_index()?,
            request.user_index()?,
        )?;
        self.user_must_exist(user)?;
        self.schedule_command(&ctx, command).await
    }

    async fn handle_set_holiday_schedule(
        &self,
        ctx: impl InvokeContext,
        request: SetHolidayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        let command = schedule::set_holiday(
            request.holiday_index()?,
            request.local_start_time()?,
            request.local_end_time()?,
            request.operating_mode()?,
        )?;
        self.schedule_command(&ctx, command).await
    }

    async fn handle_get_holiday_schedule<P: TLVBuilderParent>(
        &self,
        _ctx: impl InvokeContext,
        request: GetHolidayScheduleRequest<'_>,
        response: GetHolidayScheduleResponseBuilder<P>,
    ) -> Result<P, Error> {
        let index = request.holiday_index()?;
        let found = schedule::get(&self.directory()?, ScheduleKind::Holiday, index, None);
        let b = response.holiday_index(index)?;
        match found {
            Found::Schedule(Schedule::Holiday { period, mode, .. }) => b
                .status(DlStatus::Success)?
                .local_start_time(Some(schedule::to_matter(period.start)))?
                .local_end_time(Some(schedule::to_matter(period.end)))?
                .operating_mode(Some(mapping::matter_mode(mode)))?
                .end(),
            other => b
                .status(found_status(other))?
                .local_start_time(None)?
                .local_end_time(None)?
                .operating_mode(None)?
                .end(),
        }
    }

    async fn handle_unbolt_door(
        &self,
        _ctx: impl InvokeContext,
        _request: UnboltDoorRequest<'_>,
    ) -> Result<(), Error> {
        Self::not_a_feature()
    }

    async fn handle_set_aliro_reader_config(
        &self,
        _ctx: impl InvokeContext,
        _request: SetAliroReaderConfigRequest<'_>,
    ) -> Result<(), Error> {
        Self::not_a_feature()
    }

    async fn handle_clear_aliro_reader_config(
        &self,
        _ctx: impl InvokeContext,
    ) -> Result<(), Error> {
        Self::not_a_feature()
    }

    async fn handle_clear_holiday_schedule(
        &self,
        ctx: impl InvokeContext,
        request: ClearHolidayScheduleRequest<'_>,
    ) -> Result<(), Error> {
        let command = schedule::clear_holiday(request.holiday_index()?)?;
        self.schedule_command(&ctx, command).await
    }
}

/// A Get's status when it found no schedule of its kind.
fn found_status(found: Found) -> DlStatus {
    match found {
        Found::Status(s) => s,
        // A key of one kind names a schedule of that kind only.
        Found::Schedule(_) => DlStatus::Failure,
    }
}

/// Unbolt and Aliro: features this lock does not have (not in CLUSTER's
/// command list; the Interaction Model refuses them before they arrive).
impl DoorLock<'_> {
    fn not_a_feature<T>() -> Result<T, Error> {
        Err(ErrorCode::CommandNotFound.into())
    }
}

/// A credential id as a Matter index (ids are small; a huge one is shown
/// as the largest index rather than wrapping onto another).
fn credential_index(id: CredentialId) -> u16 {
    u16::try_from(id.0).unwrap_or(0xFFFD)
}

fn find_id(dir: &Persisted, kind: CredentialKind, index: u16) -> Option<CredentialId> {
    dir.credentials
        .iter()
        .find(|c| c.kind == kind && credential_index(c.id) == index)
        .map(|c| c.id)
}

/// The next PIN index after `index` that could take a PIN: a user number
/// without one.
fn next_free_pin(dir: &Persisted, index: u16) -> Option<u16> {
    (index.saturating_add(1)..=TOTAL_USERS).find(|n| {
        !dir.credentials
            .iter()
            .any(|c| c.user.get() == *n && c.kind == CredentialKind::Passcode)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_comes_from_the_printed_subjects() {
        assert_eq!(node_of("[112233, ]"), 112233);
        assert_eq!(node_of("[]"), 0);
        assert_eq!(node_of("[CAT(1 - 1)]"), 0);
    }

    #[test]
    fn pins_are_ascii_digits() {
        assert_eq!(pin_text(b"135790").unwrap(), "135790");
        assert!(pin_text(b"").is_err());
        assert!(pin_text(b"12a4").is_err());
        assert!(pin_text(&[0xff]).is_err());
    }
}
