//! Users, credentials, settings and the rest of [`Persisted`]: loading it
//! at start-up and applying the engine's [`Change`] batches.
//!
//! A batch is one `IMMEDIATE` transaction: either every change in it is
//! stored or none is (B-4.11). A refused change rolls back the whole batch.
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::core::time::{Validity, WallTime};
use crate::core::types::{
    AppKey, AppKeyId, AppKeyRole, Change, Credential, CredentialId, CredentialKind,
    CredentialSecret, GuestInvite, Handing, LockoutRecord, PasscodeMac, Persisted, Role, Settings,
    TempPasscode, TempPasscodeId, User, UserNumber,
};

use crate::core::schedule::{Holder, Schedule, ScheduleKey};

use super::error::{SqlContext, StoreError};
use super::key::{Binding, Sealer};

const HANDING: &str = "handing";
const SETTINGS: &str = "settings";
const LOCKOUT: &str = "lockout";
const TIME_FLOOR: &str = "time_floor";
const PAIRING_GENERATION: &str = "pairing_generation";
/// A waiting update (issue 20), JSON, in `service_meta`: `lock_state`'s
/// CHECK names its rows, and a new name there would take a table rebuild —
/// a step the previous version could not read back (schema.rs).
const PENDING_UPDATE: &str = "engine.pending_update";

/// Everything the engine needs at start-up.
/// Every table holding values sealed with the device key.
pub(crate) const SEALED_TABLES_ERASE: &str = "DELETE FROM credentials;
     DELETE FROM app_keys;
     DELETE FROM guest_invites;
     DELETE FROM temp_passcodes;
     DELETE FROM matter_blobs;
     DELETE FROM owner_notices;
     DELETE FROM notice_acks;";

pub(crate) fn load(conn: &Connection, sealer: &Sealer) -> Result<Persisted, StoreError> {
    Ok(Persisted {
        handing: get_state::<Handing>(conn, HANDING)?,
        users: load_users(conn)?,
        credentials: load_credentials(conn, sealer)?,
        settings: get_state::<Settings>(conn, SETTINGS)?.unwrap_or_default(),
        lockout: get_state::<LockoutRecord>(conn, LOCKOUT)?.unwrap_or_default(),
        temp_passcodes: load_temp_passcodes(conn, sealer)?,
        app_keys: load_app_keys(conn, sealer)?,
        guest_invites: load_guest_invites(conn, sealer)?,
        time_floor: get_state::<WallTime>(conn, TIME_FLOOR)?,
        pairing_generation: get_state::<u32>(conn, PAIRING_GENERATION)?.unwrap_or(0),
        pending_update: load_pending_update(conn)?,
        schedules: load_schedules(conn)?,
    })
}

/// The columns naming a schedule: kind, holder kind, holder, index.
fn schedule_cols(k: &ScheduleKey) -> (&'static str, &'static str, i64, u8) {
    let holder = |h: Holder| match h {
        Holder::User(n) => ("user", i64::from(n.get())),
        Holder::TempPasscode(id) => ("temp_passcode", i64::from(id.0)),
        Holder::GuestKey(id) => ("guest_key", i64::from(id.0)),
    };
    match *k {
        ScheduleKey::WeekDay { holder: h, index } => {
            let (hk, id) = holder(h);
            ("week_day", hk, id, index)
        }
        ScheduleKey::YearDay { holder: h, index } => {
            let (hk, id) = holder(h);
            ("year_day", hk, id, index)
        }
        ScheduleKey::Holiday { index } => ("holiday", "lock", 0, index),
    }
}

fn load_schedules(conn: &Connection) -> Result<Vec<Schedule>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT body FROM schedules ORDER BY kind, holder_kind, holder, idx")
        .ctx("reading schedules")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .ctx("reading schedules")?;
    let mut out = Vec::new();
    for row in rows {
        let body = row.ctx("reading schedules")?;
        let s: Schedule = serde_json::from_str(&body).map_err(|e| StoreError::Decode {
            what: "a schedule".into(),
            detail: e.to_string(),
        })?;
        out.push(s);
    }
    Ok(out)
}

/// The waiting update, if one was kept.
fn load_pending_update(
    conn: &Connection,
) -> Result<Option<crate::core::update::PendingUpdate>, StoreError> {
    let raw: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM service_meta WHERE name = ?1",
            [PENDING_UPDATE],
            |r| r.get(0),
        )
        .optional()
        .ctx("reading the waiting update")?;
    raw.map(|b| {
        serde_json::from_slice(&b).map_err(|e| StoreError::Decode {
            what: "the waiting update".into(),
            detail: e.to_string(),
        })
    })
    .transpose()
}

/// Apply a batch in one transaction; on any error nothing is stored.
pub(crate) fn apply(
    conn: &mut Connection,
    sealer: &Sealer,
    changes: &[Change],
) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock up front, so a concurrent reader
    // cannot make the batch fail half-way with SQLITE_BUSY on upgrade.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("starting a change batch")?;
    for (index, change) in changes.iter().enumerate() {
        apply_one(&tx, sealer, index, change)?;
    }
    // A change the pre-update copy would undo (a revoked key, a deleted
    // user) makes that copy unsafe to restore, in the same transaction.
    if !changes.iter().all(super::fallback::is_carried) {
        tx.execute_batch(super::fallback::FORGET_COPY)
            .ctx("forgetting the pre-update copy")?;
    }
    // Dropping `tx` on any `?` above rolls the batch back.
    tx.commit().ctx("committing a change batch")
}

fn change_name(c: &Change) -> &'static str {
    match c {
        Change::SetHanding(_) => "SetHanding",
        Change::PutUser(_) => "PutUser",
        Change::DeleteUser(_) => "DeleteUser",
        Change::PutCredential(_) => "PutCredential",
        Change::DeleteCredential(_) => "DeleteCredential",
        Change::PutSettings(_) => "PutSettings",
        Change::PutLockout(_) => "PutLockout",
        Change::PutAttempt(_) => "PutAttempt",
        Change::PutTimeFloor(_) => "PutTimeFloor",
        Change::SetPairingGeneration(_) => "SetPairingGeneration",
        Change::PutTempPasscode(_) => "PutTempPasscode",
        Change::DeleteTempPasscode(_) => "DeleteTempPasscode",
        Change::PutAppKey(_) => "PutAppKey",
        Change::DeleteAppKey(_) => "DeleteAppKey",
        Change::PutGuestInvite(_) => "PutGuestInvite",
        Change::DeleteGuestInvite(_) => "DeleteGuestInvite",
        Change::PutPendingUpdate(_) => "PutPendingUpdate",
        Change::PutSchedule(_) => "PutSchedule",
        Change::DeleteSchedule(_) => "DeleteSchedule",
        Change::FactoryReset => "FactoryReset",
    }
}

fn apply_one(
    tx: &Transaction<'_>,
    sealer: &Sealer,
    index: usize,
    change: &Change,
) -> Result<(), StoreError> {
    let reject = |reason: String| StoreError::Rejected {
        index,
        change: change_name(change),
        reason,
    };
    match change {
        Change::SetHanding(h) => put_state(tx, HANDING, h),
        Change::PutSettings(s) => put_state(tx, SETTINGS, s),
        // A pending attempt is the lockout record as it stands if the
        // attempt fails: the same row, so a power cut leaves it counted.
        Change::PutLockout(l) | Change::PutAttempt(l) => put_state(tx, LOCKOUT, l),
        Change::PutTimeFloor(w) => {
            // Only ever raised: a stale writer cannot lower the floor.
            let current = tx_get_state::<WallTime>(tx, TIME_FLOOR)?;
            if current.is_some_and(|c| c >= *w) {
                return Ok(());
            }
            put_state(tx, TIME_FLOOR, w)
        }
        Change::SetPairingGeneration(g) => put_state(tx, PAIRING_GENERATION, g),
        Change::PutPendingUpdate(None) => {
            tx.execute("DELETE FROM service_meta WHERE name = ?1", [PENDING_UPDATE])
                .ctx("forgetting the waiting update")?;
            Ok(())
        }
        Change::PutPendingUpdate(Some(p)) => {
            let json = serde_json::to_vec(p).map_err(|e| reject(e.to_string()))?;
            tx.execute(
                "INSERT INTO service_meta (name, value) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![PENDING_UPDATE, json],
            )
            .ctx("storing the waiting update")?;
            Ok(())
        }
        Change::PutUser(u) => {
            let (from, until) = validity_cols(&u.validity);
            // An upsert, not INSERT OR REPLACE: REPLACE deletes the old row
            // first, and the cascade would take the user's credentials
            // with it.
            tx.execute(
                "INSERT INTO users (number, role, valid_from, valid_until) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(number) DO UPDATE SET
                   role = excluded.role, valid_from = excluded.valid_from,
                   valid_until = excluded.valid_until",
                params![u.number.get(), role_name(u.role), from, until],
            )
            .ctx("storing a user")?;
            Ok(())
        }
        Change::DeleteUser(n) => {
            // Credentials and owner app keys go with the user (ON DELETE
            // CASCADE). Deleting an absent user is a no-op: the state asked
            // for already holds.
            tx.execute("DELETE FROM users WHERE number = ?1", [n.get()])
                .ctx("deleting a user")?;
            Ok(())
        }
        Change::PutCredential(c) => {
            if !user_exists(tx, c.user)? {
                return Err(reject(format!("user {} does not exist", c.user)));
            }
            let (secret_kind, slot) = match (&c.secret, is_passcode_kind(c.kind)) {
                (CredentialSecret::Passcode(_), true) => ("passcode", None),
                (CredentialSecret::ModuleSlot(s), false) => ("module_slot", Some(*s)),
                (CredentialSecret::FaceTemplate { slot, .. }, false) => {
                    ("face_template", Some(*slot))
                }
                (secret, _) => {
                    return Err(reject(format!(
                        "a {} credential cannot hold a {secret:?} secret",
                        kind_name(c.kind)
                    )))
                }
            };
            let bind_kind = credential_binding_kind(c.kind, secret_kind);
            let bind = Binding {
                table: "credentials",
                id: i64::from(c.id.0),
                kind: &bind_kind,
                owner: Some(i64::from(c.user.get())),
            };
            let sealed = match &c.secret {
                CredentialSecret::ModuleSlot(_) => None,
                CredentialSecret::FaceTemplate { template, .. } => {
                    Some(sealer.seal(&bind, template)?)
                }
                CredentialSecret::Passcode(mac) => Some(sealer.seal(&bind, &mac.0)?),
            };
            tx.execute(
                "INSERT INTO credentials (id, user, kind, secret_kind, slot, sealed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET
                   user = excluded.user, kind = excluded.kind, secret_kind = excluded.secret_kind,
                   slot = excluded.slot, sealed = excluded.sealed",
                params![
                    c.id.0,
                    c.user.get(),
                    kind_name(c.kind),
                    secret_kind,
                    slot,
                    sealed
                ],
            )
            .ctx("storing a credential")?;
            Ok(())
        }
        Change::DeleteCredential(id) => {
            tx.execute("DELETE FROM credentials WHERE id = ?1", [id.0])
                .ctx("deleting a credential")?;
            Ok(())
        }
        Change::PutTempPasscode(t) => {
            let sealed = sealer.seal(&temp_binding(t.id), &t.mac.0)?;
            let (from, until) = validity_cols(&t.validity);
            tx.execute(
                "INSERT INTO temp_passcodes (id, sealed_mac, valid_from, valid_until, one_time)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET
                   sealed_mac = excluded.sealed_mac, valid_from = excluded.valid_from,
                   valid_until = excluded.valid_until, one_time = excluded.one_time",
                params![t.id.0, sealed, from, until, t.one_time],
            )
            .ctx("storing a temporary passcode")?;
            Ok(())
        }
        Change::DeleteTempPasscode(id) => {
            tx.execute("DELETE FROM temp_passcodes WHERE id = ?1", [id.0])
                .ctx("deleting a temporary passcode")?;
            Ok(())
        }
        Change::PutAppKey(k) => {
            let (role, admin) = app_key_role_cols(k.role);
            if let Some(admin) = admin {
                let n = UserNumber::new(admin)
                    .ok_or_else(|| reject(format!("admin {admin} is not a user number")))?;
                if !user_exists(tx, n)? {
                    return Err(reject(format!("administrator {n} does not exist")));
                }
            }
            let sealed = sealer.seal(&app_key_binding(k.id, role, admin), &k.public_key)?;
            let (from, until) = validity_cols(&k.validity);
            tx.execute(
                // A new key starts after the notices already kept; an
                // update of a key keeps where it started.
                "INSERT INTO app_keys
                   (id, role, admin, sealed_public_key, valid_from, valid_until, label, notices_from)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,
                         (SELECT coalesce(max(id), 0) FROM owner_notices))
                 ON CONFLICT(id) DO UPDATE SET
                   role = excluded.role, admin = excluded.admin,
                   sealed_public_key = excluded.sealed_public_key,
                   valid_from = excluded.valid_from, valid_until = excluded.valid_until,
                   label = excluded.label",
                params![k.id.0, role, admin, sealed, from, until, k.label],
            )
            .ctx("storing an app key")?;
            Ok(())
        }
        Change::DeleteAppKey(id) => {
            tx.execute("DELETE FROM app_keys WHERE id = ?1", [id.0])
                .ctx("deleting an app key")?;
            Ok(())
        }
        Change::PutGuestInvite(i) => {
            let (Some(from), Some(until)) = (i.validity.from, i.validity.until) else {
                return Err(reject(
                    "a guest invite needs both ends of its window".into(),
                ));
            };
            let sealed = sealer.seal(&invite_binding(i.slot, i.code_id), &i.secret)?;
            tx.execute(
                "INSERT INTO guest_invites
                   (slot, code_id, sealed_secret, valid_from, valid_until, code_expires_at, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(slot) DO UPDATE SET
                   code_id = excluded.code_id, sealed_secret = excluded.sealed_secret,
                   valid_from = excluded.valid_from, valid_until = excluded.valid_until,
                   code_expires_at = excluded.code_expires_at, attempts = excluded.attempts",
                params![
                    i.slot.0,
                    i.code_id,
                    sealed,
                    from.0,
                    until.0,
                    i.code_expires_at.0,
                    i.attempts
                ],
            )
            .ctx("storing a guest invite")?;
            Ok(())
        }
        Change::DeleteGuestInvite(slot) => {
            tx.execute("DELETE FROM guest_invites WHERE slot = ?1", [slot.0])
                .ctx("deleting a guest invite")?;
            Ok(())
        }
        Change::PutSchedule(sch) => {
            let exists = match sch.key().holder() {
                None => true,
                Some(Holder::User(n)) => user_exists(tx, n)?,
                Some(Holder::TempPasscode(id)) => tx
                    .query_row("SELECT 1 FROM temp_passcodes WHERE id = ?1", [id.0], |_| {
                        Ok(())
                    })
                    .optional()
                    .ctx("looking up a temporary passcode")?
                    .is_some(),
                Some(Holder::GuestKey(id)) => tx
                    .query_row(
                        "SELECT 1 FROM app_keys WHERE id = ?1 AND role = 'guest'",
                        [id.0],
                        |_| Ok(()),
                    )
                    .optional()
                    .ctx("looking up a guest key")?
                    .is_some(),
            };
            if !exists {
                return Err(reject(format!(
                    "the holder of {:?} does not exist",
                    sch.key()
                )));
            }
            let (kind, holder_kind, holder, idx) = schedule_cols(&sch.key());
            let body = serde_json::to_string(sch).map_err(|e| StoreError::Decode {
                what: "a schedule".into(),
                detail: e.to_string(),
            })?;
            tx.execute(
                "INSERT INTO schedules (kind, holder_kind, holder, idx, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(kind, holder_kind, holder, idx) DO UPDATE SET body = excluded.body",
                params![kind, holder_kind, holder, idx, body],
            )
            .ctx("storing a schedule")?;
            Ok(())
        }
        Change::DeleteSchedule(k) => {
            let (kind, holder_kind, holder, idx) = schedule_cols(k);
            tx.execute(
                "DELETE FROM schedules
                 WHERE kind = ?1 AND holder_kind = ?2 AND holder = ?3 AND idx = ?4",
                params![kind, holder_kind, holder, idx],
            )
            .ctx("deleting a schedule")?;
            Ok(())
        }
        Change::FactoryReset => {
            // Children first is not needed with the cascades, but explicit
            // deletes keep the reset complete even for guest keys and temp
            // passcodes, which belong to no user. The event log goes too
            // (issue 13: a buyer of a used lock must not page the previous
            // household's history; the engine logs one "factory reset"
            // event after this commit). Service counters stay, and so does
            // the trusted-time floor: time does not run backwards for the
            // next owner either. The device key is marked for rotation in
            // the same transaction (store/keystore), and Store::apply then
            // scrubs the files (store/erase.rs).
            // The fingerprint module keeps its password across the reset
            // (store/module_secret.rs): carried past the key rotation.
            super::module_secret::carry_for_reset(tx, sealer)?;
            tx.execute_batch(SEALED_TABLES_ERASE)
                .ctx("erasing users and settings (factory reset)")?;
            tx.execute_batch(super::erase::EVENTS_ERASE)
                .ctx("erasing the event log (factory reset)")?;
            tx.execute_batch(
                "DELETE FROM users;
                 DELETE FROM schedules;
                 DELETE FROM lock_state WHERE name <> 'time_floor';
                 DELETE FROM service_meta WHERE name = 'engine.pending_update';
                 INSERT INTO store_meta (name, value) VALUES ('key_rotation_pending', x'01')
                   ON CONFLICT(name) DO UPDATE SET value = excluded.value;",
            )
            .ctx("erasing users and settings (factory reset)")?;
            Ok(())
        }
    }
}

fn user_exists(tx: &Transaction<'_>, n: UserNumber) -> Result<bool, StoreError> {
    tx.query_row("SELECT 1 FROM users WHERE number = ?1", [n.get()], |_| {
        Ok(())
    })
    .optional()
    .ctx("looking up a user")
    .map(|r| r.is_some())
}

fn put_state<T: Serialize>(tx: &Transaction<'_>, name: &str, value: &T) -> Result<(), StoreError> {
    let json = serde_json::to_string(value).map_err(|e| StoreError::Decode {
        what: name.to_string(),
        detail: e.to_string(),
    })?;
    tx.execute(
        "INSERT INTO lock_state (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        params![name, json],
    )
    .ctx("storing lock state")?;
    Ok(())
}

fn tx_get_state<T: DeserializeOwned>(
    tx: &Transaction<'_>,
    name: &str,
) -> Result<Option<T>, StoreError> {
    get_state(tx, name)
}

fn get_state<T: DeserializeOwned>(conn: &Connection, name: &str) -> Result<Option<T>, StoreError> {
    let json: Option<String> = conn
        .query_row(
            "SELECT value FROM lock_state WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .ctx("reading lock state")?;
    json.map(|j| {
        serde_json::from_str(&j).map_err(|e| StoreError::Decode {
            what: name.to_string(),
            detail: e.to_string(),
        })
    })
    .transpose()
}

fn load_users(conn: &Connection) -> Result<Vec<User>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT number, role, valid_from, valid_until FROM users ORDER BY number")
        .ctx("reading users")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })
        .ctx("reading users")?;
    let mut users = Vec::new();
    for row in rows {
        let (number, role, from, until) = row.ctx("reading users")?;
        users.push(User {
            number: user_number(number, "users.number")?,
            role: parse_role(&role)?,
            validity: validity(from, until),
        });
    }
    Ok(users)
}

fn load_credentials(conn: &Connection, sealer: &Sealer) -> Result<Vec<Credential>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT id, user, kind, secret_kind, slot, sealed FROM credentials ORDER BY id")
        .ctx("reading credentials")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<Vec<u8>>>(5)?,
            ))
        })
        .ctx("reading credentials")?;
    let mut out = Vec::new();
    for row in rows {
        let (id, user, kind, secret_kind, slot, sealed) = row.ctx("reading credentials")?;
        let what = || format!("credential {id}");
        let decode = |detail: &str| StoreError::Decode {
            what: what(),
            detail: detail.to_string(),
        };
        let user = user_number(user, "credentials.user")?;
        let kind = parse_kind(&kind)?;
        let bind_kind = credential_binding_kind(kind, &secret_kind);
        let bind = Binding {
            table: "credentials",
            id,
            kind: &bind_kind,
            owner: Some(i64::from(user.get())),
        };
        let slot = slot
            .map(|s| u16::try_from(s).map_err(|_| decode("slot out of range")))
            .transpose()?;
        let secret = match (secret_kind.as_str(), slot, sealed) {
            ("module_slot", Some(s), None) => CredentialSecret::ModuleSlot(s),
            ("face_template", Some(s), Some(sealed)) => CredentialSecret::FaceTemplate {
                slot: s,
                template: sealer.open(&bind, &sealed)?.to_vec(),
            },
            ("passcode", None, Some(sealed)) => {
                let mac = sealer.open(&bind, &sealed)?;
                let mac: [u8; 32] = mac[..]
                    .try_into()
                    .map_err(|_| decode("a passcode MAC is not 32 bytes"))?;
                CredentialSecret::Passcode(PasscodeMac(mac))
            }
            _ => return Err(decode("secret columns do not match the secret kind")),
        };
        out.push(Credential {
            id: CredentialId(u32::try_from(id).map_err(|_| decode("id out of range"))?),
            user,
            kind,
            secret,
        });
    }
    Ok(out)
}

fn load_temp_passcodes(
    conn: &Connection,
    sealer: &Sealer,
) -> Result<Vec<TempPasscode>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, sealed_mac, valid_from, valid_until, one_time FROM temp_passcodes ORDER BY id",
        )
        .ctx("reading temporary passcodes")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, bool>(4)?,
            ))
        })
        .ctx("reading temporary passcodes")?;
    let mut out = Vec::new();
    for row in rows {
        let (id, sealed, from, until, one_time) = row.ctx("reading temporary passcodes")?;
        let id = TempPasscodeId(id);
        let mac = sealer.open(&temp_binding(id), &sealed)?;
        let mac: [u8; 32] = mac[..].try_into().map_err(|_| StoreError::Decode {
            what: format!("temporary passcode {}", id.0),
            detail: "the MAC is not 32 bytes".into(),
        })?;
        out.push(TempPasscode {
            id,
            mac: PasscodeMac(mac),
            validity: validity(from, until),
            one_time,
        });
    }
    Ok(out)
}

pub(crate) fn load_app_keys(conn: &Connection, sealer: &Sealer) -> Result<Vec<AppKey>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, role, admin, sealed_public_key, valid_from, valid_until, label
             FROM app_keys ORDER BY id",
        )
        .ctx("reading app keys")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, String>(6)?,
            ))
        })
        .ctx("reading app keys")?;
    let mut out = Vec::new();
    for row in rows {
        let (id, role, admin, sealed, from, until, label) = row.ctx("reading app keys")?;
        let id = AppKeyId(id);
        let decode = |detail: &str| StoreError::Decode {
            what: format!("app key {}", id.0),
            detail: detail.to_string(),
        };
        let (role_name, admin_col) = match (role.as_str(), admin) {
            ("owner", Some(a)) => ("owner", Some(a)),
            ("guest", None) => ("guest", None),
            _ => return Err(decode("role and administrator do not match")),
        };
        let admin_u16 = admin_col
            .map(|a| u16::try_from(a).map_err(|_| decode("administrator out of range")))
            .transpose()?;
        let public = sealer.open(&app_key_binding(id, role_name, admin_u16), &sealed)?;
        let public_key: [u8; 32] = public[..]
            .try_into()
            .map_err(|_| decode("the public key is not 32 bytes"))?;
        let role = match admin_col {
            Some(a) => AppKeyRole::Owner {
                admin: user_number(a, "app_keys.admin")?,
            },
            None => AppKeyRole::Guest,
        };
        out.push(AppKey {
            id,
            role,
            public_key,
            validity: validity(from, until),
            label,
        });
    }
    Ok(out)
}

pub(crate) fn load_guest_invites(
    conn: &Connection,
    sealer: &Sealer,
) -> Result<Vec<GuestInvite>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT slot, code_id, sealed_secret, valid_from, valid_until, code_expires_at, attempts
             FROM guest_invites ORDER BY slot",
        )
        .ctx("reading guest invites")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, u16>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, u8>(6)?,
            ))
        })
        .ctx("reading guest invites")?;
    let mut out = Vec::new();
    for row in rows {
        let (slot, code_id, sealed, from, until, expires, attempts) =
            row.ctx("reading guest invites")?;
        let slot = AppKeyId(slot);
        let plain = sealer.open(&invite_binding(slot, code_id), &sealed)?;
        let secret = plain[..].try_into().map_err(|_| StoreError::Decode {
            what: format!("guest invite {}", slot.0),
            detail: "the secret has the wrong length".into(),
        })?;
        out.push(GuestInvite {
            slot,
            code_id,
            secret,
            validity: Validity {
                from: Some(WallTime(from)),
                until: Some(WallTime(until)),
            },
            code_expires_at: WallTime(expires),
            attempts,
        });
    }
    Ok(out)
}

/// The code id is bound too: a sealed secret moved to another invite's
/// row (or its id edited) no longer opens.
fn invite_binding(slot: AppKeyId, code_id: u16) -> Binding<'static> {
    Binding {
        table: "guest_invites",
        id: i64::from(slot.0),
        kind: "guest_code",
        owner: Some(i64::from(code_id)),
    }
}

fn temp_binding(id: TempPasscodeId) -> Binding<'static> {
    Binding {
        table: "temp_passcodes",
        id: i64::from(id.0),
        kind: "passcode",
        owner: None,
    }
}

fn app_key_binding(id: AppKeyId, role: &str, admin: Option<u16>) -> Binding<'_> {
    Binding {
        table: "app_keys",
        id: i64::from(id.0),
        kind: role,
        owner: admin.map(i64::from),
    }
}

fn credential_binding_kind(kind: CredentialKind, secret_kind: &str) -> String {
    format!("{}/{}", kind_name(kind), secret_kind)
}

fn app_key_role_cols(role: AppKeyRole) -> (&'static str, Option<u16>) {
    match role {
        AppKeyRole::Owner { admin } => ("owner", Some(admin.get())),
        AppKeyRole::Guest => ("guest", None),
    }
}

fn is_passcode_kind(k: CredentialKind) -> bool {
    matches!(k, CredentialKind::Passcode | CredentialKind::DuressPasscode)
}

fn kind_name(k: CredentialKind) -> &'static str {
    match k {
        CredentialKind::Face => "face",
        CredentialKind::Palm => "palm",
        CredentialKind::Fingerprint => "fingerprint",
        CredentialKind::Passcode => "passcode",
        CredentialKind::DuressPasscode => "duress_passcode",
    }
}

fn parse_kind(s: &str) -> Result<CredentialKind, StoreError> {
    Ok(match s {
        "face" => CredentialKind::Face,
        "palm" => CredentialKind::Palm,
        "fingerprint" => CredentialKind::Fingerprint,
        "passcode" => CredentialKind::Passcode,
        "duress_passcode" => CredentialKind::DuressPasscode,
        other => {
            return Err(StoreError::Decode {
                what: "credential kind".into(),
                detail: format!("unknown kind `{other}`"),
            })
        }
    })
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Admin => "admin",
        Role::User => "user",
    }
}

fn parse_role(s: &str) -> Result<Role, StoreError> {
    match s {
        "admin" => Ok(Role::Admin),
        "user" => Ok(Role::User),
        other => Err(StoreError::Decode {
            what: "user role".into(),
            detail: format!("unknown role `{other}`"),
        }),
    }
}

fn user_number(n: i64, column: &str) -> Result<UserNumber, StoreError> {
    u16::try_from(n)
        .ok()
        .and_then(UserNumber::new)
        .ok_or_else(|| StoreError::Decode {
            what: column.to_string(),
            detail: format!("{n} is not a user number"),
        })
}

fn validity_cols(v: &Validity) -> (Option<i64>, Option<i64>) {
    (v.from.map(|w| w.0), v.until.map(|w| w.0))
}

fn validity(from: Option<i64>, until: Option<i64>) -> Validity {
    Validity {
        from: from.map(WallTime),
        until: until.map(WallTime),
    }
}
