//! What an authenticated, authorised app request does — the same for the
//! BLE secure channel and the broker (`src/remote`): engine commands go to
//! the engine, reads are answered from the store, guest invites are made
//! here (the engine has no randomness) and registered by the engine.
//!
//! ```text
//!  (stored key, Request) ── answer ──┬─ engine command ─► LockLink::submit ─► engine ─► Reply
//!                                    ├─ Status          ─► published status
//!                                    ├─ List*/Settings  ─► LockLink::persisted (store, async)
//!                                    ├─ Events          ─► LockLink::events_before (store, async)
//!                                    ├─ Pending/AckNotices ─► LockLink::pending_notices / ack_notices (owner only)
//!                                    ├─ CreateGuestKey  ─► random code ─► CreateGuestInvite
//!                                    ├─ RevokeGuestKey  ─► guest slot? (app keys snapshot)
//!                                    │                     ─► RevokeAppKey
//!                                    └─ TimeSync        ─► SetClock (owner only, engine-checked)
//! ```
//!
//! The role check ([`super::authz::authorize`]) ran before this; the
//! engine checks again that the key is still registered and allowed, so a
//! key revoked mid-session is refused there.
use rand_core::CryptoRngCore;

use super::lock_link::{LockLink, StorageError};
use super::pairing;
use super::protocol::ErrorCode;
use super::request::{Request, TempPasscodeKind, MAX_EVENTS_PER_PAGE, MAX_NOTICES_PER_REPLY};
use super::response::{
    Credentials, GuestKeyEntry, OwnerKeyEntry, PasscodeEntry, Response, UserEntry,
};
use super::wire;
use crate::core::action::{AppError, AppOk};
use crate::core::time::WallTime;
use crate::core::types::{AppKey, AppKeyId, AppKeyRole, CredentialKind, Persisted};
use crate::core::{AppCommand, AppResult, Channel, Language};

/// Times a fresh random code id is tried when it collides with an
/// outstanding invite's (16 invites among 65 536 ids: a second try is
/// already rare).
const CODE_ID_TRIES: usize = 4;

/// Answer one request from `key` arriving over `via`.
pub async fn answer(
    link: &dyn LockLink,
    key: &AppKey,
    via: Channel,
    request: &Request,
    rng: &mut (dyn CryptoRngCore + Send),
) -> Response {
    let principal = wire::engine_principal(key);
    if let Some(r) = stream(link, via, principal, request).await {
        return r;
    }
    match request.engine_command() {
        Err(e) => return Response::error(e.code(), &e.to_string()),
        Ok(Some(cmd)) => return submit(link, via, principal, cmd).await,
        Ok(None) => {}
    }
    match request {
        // The plain status stays what it always was on the wire: apps that
        // predate issue 20 refuse trailing bytes.
        Request::Status => Response::Status(wire::StatusReport {
            update: None,
            ..link.status()
        }),
        Request::StatusWithUpdate => Response::Status(link.status()),
        Request::TimeSync { now } => submit(link, via, principal, AppCommand::SetClock(*now)).await,
        Request::CreateGuestKey {
            valid_from,
            valid_until,
        } => create_guest_key(link, via, key, *valid_from, *valid_until, rng).await,
        Request::RevokeGuestKey { slot } => {
            let access = link.app_access();
            let id = AppKeyId(u32::from(*slot));
            let is_guest = access
                .keys
                .get(&id)
                .is_some_and(|k| k.role == AppKeyRole::Guest)
                || access.invites.contains_key(&id);
            if !is_guest {
                // Owner keys are not revoked through the guest command.
                return Response::error(ErrorCode::Refused, "no guest key or invite in that slot");
            }
            submit(link, via, principal, AppCommand::RevokeAppKey(id)).await
        }
        Request::Events { before, limit } => match events_page(link, *before, *limit).await {
            Ok(r) => r,
            Err(e) => store_error(&e),
        },
        Request::PendingNotices | Request::AckNotices { .. } => notices(link, key, request).await,
        Request::ListUsers
        | Request::ListPasscodes
        | Request::ListGuestKeys
        | Request::GetSettings => match link.persisted().await {
            Ok(p) => read(request, &p, link.default_language()),
            Err(e) => store_error(&e),
        },
        other => Response::error(
            ErrorCode::Refused,
            &format!(
                "`{}` has no handler in this version of latchd",
                other.name()
            ),
        ),
    }
}

/// Issue 17 item 8: the owner notices kept for this key's app, and its
/// acknowledgement. Owner keys only — refused by `authz` before this, and
/// here again: a guest never learns of a duress opening or a doorbell.
async fn notices(link: &dyn LockLink, key: &AppKey, request: &Request) -> Response {
    if !matches!(key.role, AppKeyRole::Owner { .. }) {
        return response_of(&Err(AppError::Forbidden));
    }
    match request {
        Request::AckNotices { up_to } => match link.ack_notices(key, *up_to).await {
            Ok(()) => Response::Ok,
            Err(e) => store_error(&e),
        },
        _ => match link
            .pending_notices(key, usize::from(MAX_NOTICES_PER_REPLY))
            .await
        {
            Ok((notices, more)) => Response::Notices {
                notices,
                more: u16::try_from(more).unwrap_or(u16::MAX),
            },
            Err(e) => store_error(&e),
        },
    }
}

/// A bundle streamed in chunks (`super::bundle`); `None` for any other
/// request. BLE only: over the broker every chunk would be a stored and
/// forwarded message (a 256 MiB bundle is 65 000 of them, each through
/// the remote's rate limit and replay window) — the remote sends a URL.
async fn stream(
    link: &dyn LockLink,
    via: Channel,
    principal: crate::core::Principal,
    request: &Request,
) -> Option<Response> {
    if !matches!(
        request,
        Request::UpdateBegin { .. }
            | Request::UpdateChunk { .. }
            | Request::UpdateCommit { .. }
            | Request::UpdateAbort
    ) {
        return None;
    }
    if via != Channel::Ble {
        return Some(Response::error(
            ErrorCode::Refused,
            "a bundle is streamed over BLE only; send a URL (StartUpdate) over this channel",
        ));
    }
    // Guests are refused before this (`authz`) and again here: a stream
    // writes to the lock's flash before the engine sees the commit (which
    // checks the owner key once more).
    if !matches!(principal, crate::core::Principal::Owner { .. }) {
        return Some(response_of(&Err(AppError::Forbidden)));
    }
    let Some(bundles) = link.bundles() else {
        return Some(response_of(&Err(AppError::UpdatesOff)));
    };
    let refused =
        |e: super::bundle::StreamError| Response::error(ErrorCode::Refused, &e.to_string());
    Some(match request {
        Request::UpdateBegin { size, sha256 } => match bundles.begin(*size, *sha256) {
            Ok(offset) => Response::UpdateOffset { offset },
            Err(e) => refused(e),
        },
        Request::UpdateChunk { offset, bytes } => match bundles.chunk(*offset, bytes) {
            Ok(offset) => Response::UpdateOffset { offset },
            Err(e) => refused(e),
        },
        Request::UpdateCommit { allow_older } => match bundles.commit() {
            Ok(source) => {
                let cmd = AppCommand::StartUpdate {
                    source: source.clone(),
                    allow_older: *allow_older,
                };
                let r = submit(link, via, principal, cmd).await;
                if r != Response::Ok {
                    bundles.forget(&source);
                }
                r
            }
            Err(e) => refused(e),
        },
        _ => {
            bundles.abort();
            Response::Ok
        }
    })
}

fn store_error(e: &StorageError) -> Response {
    tracing::error!("app request: cannot read the store: {e}");
    Response::error(ErrorCode::Refused, "the lock cannot read its storage")
}

async fn submit(
    link: &dyn LockLink,
    via: Channel,
    principal: crate::core::Principal,
    cmd: AppCommand,
) -> Response {
    match link.submit(via, principal, cmd).await {
        Some(result) => response_of(&result),
        None => Response::error(ErrorCode::Refused, "the lock engine has stopped"),
    }
}

/// The engine's answer as a wire response.
pub fn response_of(result: &AppResult) -> Response {
    match result {
        Ok(AppOk::Done) | Ok(AppOk::AppKeyAdded(_)) | Ok(AppOk::GuestInviteCreated(_)) => {
            Response::Ok
        }
        Ok(AppOk::UserAdded(n)) => Response::UserAdded { user: n.get() },
        Ok(AppOk::TempPasscodeAdded(id)) => Response::PasscodeCreated {
            id: u16::try_from(id.0).unwrap_or(u16::MAX),
        },
        Ok(AppOk::Schedules(list)) => Response::Schedules(list.clone()),
        Ok(AppOk::OwnerKeys(keys)) => Response::OwnerKeys(
            keys.iter()
                .filter_map(|k| {
                    Some(OwnerKeyEntry {
                        slot: u16::try_from(k.slot.0).ok()?,
                        admin: k.admin.get(),
                        label: k.label.clone(),
                    })
                })
                .collect(),
        ),
        Err(e) => {
            let code = match e {
                AppError::Forbidden => ErrorCode::Forbidden,
                AppError::OutsideValidity => ErrorCode::OutsideValidity,
                _ => ErrorCode::Refused,
            };
            Response::error(code, &e.to_string())
        }
    }
}

/// B-6.6: a one-time code the owner's app hands to the guest. The code
/// leaves the lock once, sealed, in this response; the lock keeps only the
/// sealed secret to check the guest's handshake against.
async fn create_guest_key(
    link: &dyn LockLink,
    via: Channel,
    key: &AppKey,
    valid_from: WallTime,
    valid_until: WallTime,
    rng: &mut (dyn CryptoRngCore + Send),
) -> Response {
    let Some(now) = link.now().1 else {
        return response_of(&Err(AppError::ClockUnknown));
    };
    let principal = wire::engine_principal(key);
    let mut rng = rng;
    for _ in 0..CODE_ID_TRIES {
        let code_id = (rng.next_u32() & 0xFFFF) as u16;
        let (invite, code) =
            pairing::GuestInvite::create(code_id, valid_from, valid_until, now, &mut rng);
        let code_expires_at = invite.code_expires_at;
        let result = link
            .submit(
                via,
                principal,
                AppCommand::CreateGuestInvite(invite.to_stored()),
            )
            .await;
        return match result {
            Some(Ok(AppOk::GuestInviteCreated(slot))) => match u16::try_from(slot.0) {
                Ok(slot) => Response::GuestKeyCreated {
                    slot,
                    code,
                    code_expires_at,
                },
                Err(_) => Response::error(ErrorCode::Refused, "guest slot out of range"),
            },
            Some(Err(AppError::KeyExists)) => continue,
            Some(other) => response_of(&other),
            None => Response::error(ErrorCode::Refused, "the lock engine has stopped"),
        };
    }
    Response::error(ErrorCode::Refused, "no free guest code id; try again")
}

/// The read-only requests, answered from what the store holds.
/// `default_language`: the config's, for a store that holds no choice.
pub fn read(request: &Request, p: &Persisted, default_language: Language) -> Response {
    match request {
        Request::ListUsers => Response::Users(
            p.users
                .iter()
                .map(|u| {
                    let has = |k: CredentialKind| {
                        p.credentials
                            .iter()
                            .any(|c| c.user == u.number && c.kind == k)
                    };
                    UserEntry {
                        user: u.number.get(),
                        role: wire::Role::from_core(u.role),
                        validity: u.validity,
                        credentials: Credentials {
                            face: has(CredentialKind::Face),
                            palm: has(CredentialKind::Palm),
                            fingerprint: has(CredentialKind::Fingerprint),
                            passcode: has(CredentialKind::Passcode),
                            duress_passcode: has(CredentialKind::DuressPasscode),
                        },
                    }
                })
                .collect(),
        ),
        Request::ListPasscodes => Response::Passcodes(
            p.temp_passcodes
                .iter()
                .filter_map(|t| {
                    let kind = if t.one_time {
                        TempPasscodeKind::OneTime
                    } else {
                        TempPasscodeKind::Window {
                            from: t.validity.from?,
                            until: t.validity.until?,
                        }
                    };
                    Some(PasscodeEntry {
                        id: u16::try_from(t.id.0).ok()?,
                        kind,
                        // The engine deletes a one-time code at its first
                        // use, so every listed code is unused.
                        used: false,
                    })
                })
                .collect(),
        ),
        Request::ListGuestKeys => {
            let keys = p.app_keys.iter().filter_map(|k| {
                (k.role == AppKeyRole::Guest).then_some(GuestKeyEntry {
                    slot: u16::try_from(k.id.0).ok()?,
                    valid_from: k.validity.from.unwrap_or(WallTime(i64::MIN)),
                    valid_until: k.validity.until.unwrap_or(WallTime(i64::MAX)),
                    redeemed: true,
                })
            });
            let invites = p.guest_invites.iter().filter_map(|i| {
                Some(GuestKeyEntry {
                    slot: u16::try_from(i.slot.0).ok()?,
                    valid_from: i.validity.from?,
                    valid_until: i.validity.until?,
                    redeemed: false,
                })
            });
            let mut all: Vec<_> = keys.chain(invites).collect();
            all.sort_by_key(|e| e.slot);
            Response::GuestKeys(all)
        }
        Request::GetSettings => Response::Settings(wire::settings(
            &p.settings,
            p.settings.language.unwrap_or(default_language),
        )),
        other => Response::error(
            ErrorCode::Refused,
            &format!("`{}` is not a read", other.name()),
        ),
    }
}

/// Raw log rows read per store query while filling a page.
const SCAN_BATCH: usize = 64;
/// Raw log rows one page may scan (prompts and menu steps are logged too
/// but are not app events; this bounds the work per request).
const SCAN_LIMIT: usize = 1024;

/// B-9.6: a page of app events, newest first, strictly older than
/// `before`. Log entries that are not app events (prompts, menu steps)
/// are skipped; `next_cursor` continues after the last entry looked at.
async fn events_page(
    link: &dyn LockLink,
    before: Option<u64>,
    limit: u8,
) -> Result<Response, StorageError> {
    let limit = usize::from(limit.clamp(1, MAX_EVENTS_PER_PAGE));
    let mut cursor = before;
    let mut scanned = 0;
    let mut events = Vec::with_capacity(limit);
    loop {
        let batch = link.events_before(cursor, SCAN_BATCH).await?;
        let exhausted = batch.len() < SCAN_BATCH;
        for stored in &batch {
            scanned += 1;
            cursor = Some(stored.id);
            if let Some(e) = wire::event_entry(stored.id, &stored.event) {
                events.push(e);
                if events.len() == limit {
                    // More may follow: the app asks again from here.
                    return Ok(Response::Events {
                        events,
                        next_cursor: cursor,
                    });
                }
            }
        }
        if exhausted {
            return Ok(Response::Events {
                events,
                next_cursor: None,
            });
        }
        if scanned >= SCAN_LIMIT {
            return Ok(Response::Events {
                events,
                next_cursor: cursor,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::Validity;
    use crate::core::types::{
        Credential, CredentialId, CredentialSecret, GuestInvite, User, UserNumber,
        GUEST_INVITE_SECRET,
    };

    fn n(u: u16) -> UserNumber {
        UserNumber::new(u).unwrap()
    }

    #[test]
    fn users_list_their_credential_kinds_never_secrets() {
        let p = Persisted {
            users: vec![User {
                number: n(1),
                role: crate::core::types::Role::Admin,
                validity: Validity::ALWAYS,
            }],
            credentials: vec![Credential {
                id: CredentialId(1),
                user: n(1),
                kind: CredentialKind::Fingerprint,
                secret: CredentialSecret::ModuleSlot(3),
            }],
            ..Persisted::default()
        };
        let Response::Users(users) = read(&Request::ListUsers, &p, Language::En) else {
            panic!()
        };
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].role, wire::Role::Administrator);
        assert!(users[0].credentials.fingerprint && !users[0].credentials.passcode);
    }

    #[test]
    fn guest_listing_shows_keys_and_pending_invites_by_slot() {
        let window = Validity {
            from: Some(WallTime(10)),
            until: Some(WallTime(20)),
        };
        let p = Persisted {
            app_keys: vec![
                AppKey {
                    id: AppKeyId(4),
                    role: AppKeyRole::Guest,
                    public_key: [1; 32],
                    validity: window,
                    label: "g".into(),
                },
                AppKey {
                    id: AppKeyId(1),
                    role: AppKeyRole::Owner { admin: n(1) },
                    public_key: [2; 32],
                    validity: Validity::ALWAYS,
                    label: "o".into(),
                },
            ],
            guest_invites: vec![GuestInvite {
                slot: AppKeyId(2),
                code_id: 5,
                secret: [0; GUEST_INVITE_SECRET],
                validity: window,
                code_expires_at: WallTime(15),
                attempts: 0,
            }],
            ..Persisted::default()
        };
        let Response::GuestKeys(g) = read(&Request::ListGuestKeys, &p, Language::En) else {
            panic!()
        };
        assert_eq!(
            g.iter().map(|e| (e.slot, e.redeemed)).collect::<Vec<_>>(),
            vec![(2, false), (4, true)],
            "owner keys are not listed"
        );
    }

    /// Issue 17 item 4: the settings reply names the language the lock
    /// speaks — the stored choice, else the config's default (which the
    /// store does not hold, so a factory reset returns to it).
    #[test]
    fn settings_show_the_chosen_language_else_the_configured_one() {
        let mut p = Persisted::default();
        let lang = |p: &Persisted, default| match read(&Request::GetSettings, p, default) {
            Response::Settings(s) => s.language,
            other => panic!("{other:?}"),
        };
        assert_eq!(lang(&p, Language::ZhTw), Language::ZhTw);
        assert_eq!(lang(&p, Language::En), Language::En);
        p.settings.language = Some(Language::En);
        assert_eq!(lang(&p, Language::ZhTw), Language::En);
    }
}
