//! The SQLite store against real database files in temporary directories:
//! first start, round trips of every change, the event log, sealing at
//! rest, every refusal to start, a full disk and all-or-nothing batches.
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use latchd::core::event::{Event, EventKind, LockHow};
use latchd::core::schedule::{Holder, Period, Schedule, WeekDay};
use latchd::core::time::{Validity, WallTime};
use latchd::core::types::{
    AppKey, AppKeyId, AppKeyRole, Change, Credential, CredentialId, CredentialKind,
    CredentialSecret, GuestInvite, Handing, LockoutRecord, Method, PasscodeMac, Persisted,
    RecentFailure, Role, Settings, TempPasscode, TempPasscodeId, User, UserNumber,
};
use latchd::store::{EventId, Store, StoreError, StoreOptions, DB_FILE, KEY_FILE};

fn opts() -> StoreOptions {
    StoreOptions::default()
}

fn open(dir: &Path) -> Store {
    Store::open(dir, opts()).expect("store opens").0
}

fn open_err(dir: &Path) -> StoreError {
    Store::open(dir, opts()).expect_err("store must refuse to open")
}

fn n(x: u16) -> UserNumber {
    UserNumber::new(x).unwrap()
}

fn user(x: u16, role: Role) -> User {
    User {
        number: n(x),
        role,
        validity: Validity::ALWAYS,
    }
}

fn cred(id: u32, u: u16, kind: CredentialKind, secret: CredentialSecret) -> Credential {
    Credential {
        id: CredentialId(id),
        user: n(u),
        kind,
        secret,
    }
}

// Distinctive byte patterns, so the raw file can be searched for them.
const TEMPLATE: [u8; 48] = *b"FACE-TEMPLATE-PLAINTEXT-0123456789abcdefghijklmn";
const MAC: [u8; 32] = *b"PASSCODE-MAC-PLAINTEXT-012345678";
const DURESS_MAC: [u8; 32] = *b"DURESS-MAC-PLAINTEXT-01234567890";
const TEMP_MAC: [u8; 32] = *b"TEMP-MAC-PLAINTEXT-0123456789012";
const APP_PUB: [u8; 32] = *b"APP-PUBLIC-KEY-PLAINTEXT-0123456";
const GUEST_PUB: [u8; 32] = *b"GUEST-PUBLIC-KEY-PLAINTEXT-01234";
const INVITE_SECRET: [u8; 13] = *b"INVITE-SECRET";

/// One of everything the engine can persist.
fn everything() -> (Vec<Change>, Persisted) {
    let admin = User {
        number: n(1),
        role: Role::Admin,
        validity: Validity::ALWAYS,
    };
    let visitor = User {
        number: n(42),
        role: Role::User,
        validity: Validity {
            from: Some(WallTime(1_700_000_000)),
            until: Some(WallTime(1_800_000_000)),
        },
    };
    let creds = vec![
        cred(
            1,
            1,
            CredentialKind::Face,
            CredentialSecret::FaceTemplate {
                slot: 3,
                template: TEMPLATE.to_vec(),
            },
        ),
        cred(
            2,
            1,
            CredentialKind::Fingerprint,
            CredentialSecret::ModuleSlot(17),
        ),
        cred(3, 1, CredentialKind::Palm, CredentialSecret::ModuleSlot(2)),
        cred(
            4,
            1,
            CredentialKind::Passcode,
            CredentialSecret::Passcode(PasscodeMac(MAC)),
        ),
        cred(
            5,
            1,
            CredentialKind::DuressPasscode,
            CredentialSecret::Passcode(PasscodeMac(DURESS_MAC)),
        ),
        cred(
            6,
            42,
            CredentialKind::Fingerprint,
            CredentialSecret::ModuleSlot(18),
        ),
    ];
    let settings = Settings {
        auto_lock: Some(Duration::from_secs(30)),
        lockout_protection: false,
        remote_unlock: true,
        wifi: false,
        require_pin_remote: true,
        door_ajar: Some(Duration::from_secs(120)),
        language: Some(latchd::core::Language::ZhTw),
        mode: latchd::core::types::DoorMode::Privacy,
    };
    let lockout = LockoutRecord {
        failures_expire_in: Vec::new(),
        recent: vec![RecentFailure {
            expires_in: Duration::from_millis(1500),
            weight: 11,
            method: Some(Method::Passcode),
        }],
        locked_for: Some(Duration::from_secs(170)),
        strikes: 23,
        leak_in: Some(Duration::from_secs(3600)),
        keypad_disabled: true,
    };
    let temp = TempPasscode {
        id: TempPasscodeId(9),
        mac: PasscodeMac(TEMP_MAC),
        validity: Validity {
            from: None,
            until: Some(WallTime(1_750_000_000)),
        },
        one_time: true,
    };
    let owner_key = AppKey {
        id: AppKeyId(1),
        role: AppKeyRole::Owner { admin: n(1) },
        public_key: APP_PUB,
        validity: Validity::ALWAYS,
        label: "owner-phone-label".into(),
    };
    let guest_key = AppKey {
        id: AppKeyId(2),
        role: AppKeyRole::Guest,
        public_key: GUEST_PUB,
        validity: Validity {
            from: Some(WallTime(10)),
            until: Some(WallTime(20)),
        },
        label: "guest".into(),
    };
    let invite = GuestInvite {
        slot: AppKeyId(3),
        code_id: 0x4242,
        secret: INVITE_SECRET,
        validity: Validity {
            from: Some(WallTime(100)),
            until: Some(WallTime(200)),
        },
        code_expires_at: WallTime(150),
        attempts: 2,
    };
    let pending = latchd::core::update::PendingUpdate {
        source: "https://updates.example.net/lock-0.2.0.raucb".into(),
        allow_older: false,
        by: n(1),
        phase: latchd::core::update::Phase::WaitingToRestart,
        version: Some("0.2.0".into()),
        running: "0.1.0".into(),
    };
    let mut changes = vec![
        Change::SetHanding(Handing::LeftHand),
        Change::PutUser(admin.clone()),
        Change::PutUser(visitor.clone()),
    ];
    changes.extend(creds.iter().cloned().map(Change::PutCredential));
    changes.extend([
        Change::PutSettings(settings.clone()),
        Change::PutLockout(lockout.clone()),
        Change::PutTempPasscode(temp.clone()),
        Change::PutAppKey(owner_key.clone()),
        Change::PutAppKey(guest_key.clone()),
        Change::PutGuestInvite(invite.clone()),
        Change::PutTimeFloor(WallTime(1_790_000_000)),
        Change::SetPairingGeneration(3),
        Change::PutPendingUpdate(Some(pending.clone())),
    ]);
    // Issue 17 item 2: stored in (kind, holder, index) order.
    let schedules = vec![
        Schedule::Holiday {
            index: 8,
            period: Period::new(1_790_000_000, 1_790_086_400).unwrap(),
            mode: latchd::core::types::OperatingMode::Vacation,
        },
        Schedule::WeekDay {
            holder: Holder::User(n(42)),
            index: 2,
            window: WeekDay::new(0b0011_1110, (7, 30), (18, 0)).unwrap(),
        },
    ];
    changes.extend(schedules.iter().rev().copied().map(Change::PutSchedule));
    let persisted = Persisted {
        handing: Some(Handing::LeftHand),
        users: vec![admin, visitor],
        credentials: creds,
        settings,
        lockout,
        temp_passcodes: vec![temp],
        app_keys: vec![owner_key, guest_key],
        guest_invites: vec![invite],
        time_floor: Some(WallTime(1_790_000_000)),
        pairing_generation: 3,
        pending_update: Some(pending),
        schedules,
    };
    (changes, persisted)
}

fn event(i: u64) -> Event {
    Event {
        at: Some(WallTime(1_700_000_000 + i as i64)),
        mono_ms: i,
        kind: if i.is_multiple_of(2) {
            EventKind::Unlocked {
                method: Method::Passcode,
                user: Some(n(1)),
            }
        } else {
            EventKind::Locked { how: LockHow::Auto }
        },
    }
}

#[test]
fn first_start_creates_a_private_key_and_an_empty_database() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let (store, key) = Store::open(&dir, opts()).unwrap();
    let key_meta = fs::metadata(dir.join(KEY_FILE)).unwrap();
    assert_eq!(key_meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(key_meta.len(), 32);
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let db_mode = fs::metadata(dir.join(DB_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        db_mode & 0o077,
        0,
        "database must be private, mode {db_mode:o}"
    );
    assert_eq!(store.load().unwrap(), Persisted::default());
    assert!(store.health().ok);
    drop(store);

    // Second start: same key, same (empty) state.
    let (store, key2) = Store::open(&dir, opts()).unwrap();
    assert_eq!(*key.passcode_key(), *key2.passcode_key());
    assert_eq!(store.load().unwrap(), Persisted::default());
}

#[test]
fn every_change_round_trips_through_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (changes, expected) = everything();
    {
        let mut store = open(tmp.path());
        store.apply(&changes).unwrap();
        assert_eq!(store.load().unwrap(), expected);
    }
    let mut store = open(tmp.path());
    assert_eq!(store.load().unwrap(), expected);
    // The narrow reads the channels use agree with the full load.
    assert_eq!(store.app_keys().unwrap(), expected.app_keys);
    assert_eq!(store.guest_invites().unwrap(), expected.guest_invites);

    // Deletes of each kind.
    store
        .apply(&[
            Change::DeleteCredential(CredentialId(3)),
            Change::DeleteTempPasscode(TempPasscodeId(9)),
            Change::DeleteAppKey(AppKeyId(2)),
        ])
        .unwrap();
    let mut want = expected.clone();
    want.credentials.retain(|c| c.id != CredentialId(3));
    want.temp_passcodes.clear();
    want.app_keys.retain(|k| k.id != AppKeyId(1 + 1));
    assert_eq!(store.load().unwrap(), want);

    // Deleting the admin takes its credentials and its owner app key.
    store.apply(&[Change::DeleteUser(n(1))]).unwrap();
    want.users.retain(|u| u.number != n(1));
    want.credentials.retain(|c| c.user != n(1));
    want.app_keys.clear();
    drop(store);
    assert_eq!(open(tmp.path()).load().unwrap(), want);
}

#[test]
fn putting_a_user_again_updates_it_and_keeps_its_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let (changes, _) = everything();
    store.apply(&changes).unwrap();
    let mut demoted = user(1, Role::User);
    demoted.validity.until = Some(WallTime(5));
    store.apply(&[Change::PutUser(demoted.clone())]).unwrap();
    let p = store.load().unwrap();
    assert_eq!(p.users[0], demoted);
    assert_eq!(p.credentials.iter().filter(|c| c.user == n(1)).count(), 5);
    assert_eq!(p.app_keys.len(), 2);
}

#[test]
fn factory_reset_erases_state_and_the_event_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let (changes, _) = everything();
    store.apply(&changes).unwrap();
    let ids = store.append_events(&[event(1), event(2)]).unwrap();
    store.put_counter("ble.rx", 77).unwrap();
    store.apply(&[Change::FactoryReset]).unwrap();
    drop(store);

    let mut store = open(tmp.path());
    // Issue 13: the trusted-time floor survives a reset (time does not run
    // backwards for the next owner); the pairing generation goes back to
    // the label's code.
    assert_eq!(
        store.load().unwrap(),
        Persisted {
            time_floor: Some(WallTime(1_790_000_000)),
            ..Persisted::default()
        }
    );
    // Issue 13 item 5: the household's history goes with it (the engine
    // logs one "factory reset" event after the commit; see
    // tests/it/factory_reset.rs); service counters stay.
    assert_eq!(store.recent_events(10).unwrap(), Vec::new());
    assert_eq!(store.get_counter("ble.rx").unwrap(), Some(77));
    // Ids keep growing after a reset.
    let next = store.append_events(&[event(3)]).unwrap();
    assert!(next[0] > ids[1]);
    // The lock can be set up again.
    store.apply(&changes).unwrap();
}

/// Issue 13: the trusted-time floor is only ever raised in the store, and
/// a pending attempt is the lockout row itself.
#[test]
fn the_time_floor_only_rises_and_an_attempt_is_the_lockout_row() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    store
        .apply(&[Change::PutTimeFloor(WallTime(1_800_000_000))])
        .unwrap();
    store
        .apply(&[Change::PutTimeFloor(WallTime(1_700_000_000))])
        .unwrap();
    assert_eq!(
        store.load().unwrap().time_floor,
        Some(WallTime(1_800_000_000))
    );
    let attempt = LockoutRecord {
        strikes: 1,
        ..LockoutRecord::default()
    };
    store.apply(&[Change::PutAttempt(attempt.clone())]).unwrap();
    drop(store);
    assert_eq!(open(tmp.path()).load().unwrap().lockout, attempt);
}

#[test]
fn event_log_is_pruned_at_max_events_and_ids_grow_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let small = StoreOptions {
        max_events: 5,
        ..opts()
    };
    let mut last = EventId(0);
    for round in 0..3u64 {
        let (mut store, _) = Store::open(tmp.path(), small.clone()).unwrap();
        for i in 0..4 {
            let ids = store.append_events(&[event(round * 10 + i)]).unwrap();
            assert!(ids[0] > last, "ids must grow: {:?} after {last:?}", ids[0]);
            last = ids[0];
        }
        let all = store.recent_events(100).unwrap();
        assert!(all.len() <= 5);
        assert_eq!(all[0].id, last);
        assert_eq!(store.health().events, all.len() as u64);
    }
    let store = open(tmp.path());
    let all = store.recent_events(100).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(
        all.iter().map(|e| e.id.0).collect::<Vec<_>>(),
        vec![12, 11, 10, 9, 8]
    );
    assert_eq!(all[0].event, event(23));
    assert_eq!(
        store.event_bounds().unwrap(),
        Some((EventId(8), EventId(12)))
    );
}

#[test]
fn batches_larger_than_the_log_keep_the_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(
        tmp.path(),
        StoreOptions {
            max_events: 3,
            ..opts()
        },
    )
    .unwrap();
    let batch: Vec<Event> = (0..10).map(event).collect();
    let ids = store.append_events(&batch).unwrap();
    assert_eq!(ids.len(), 10);
    let kept: Vec<_> = store.recent_events(10).unwrap();
    assert_eq!(
        kept.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[9], ids[8], ids[7]]
    );
}

#[test]
fn events_page_newest_first_and_replay_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let batch: Vec<Event> = (0..25).map(event).collect();
    let ids = store.append_events(&batch).unwrap();

    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        let page = store.events_before(cursor, 10).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        cursor = page.last().map(|e| e.id);
        seen.extend(page.into_iter().map(|e| (e.id, e.event)));
    }
    let want: Vec<_> = ids
        .iter()
        .copied()
        .zip(batch.iter().cloned())
        .rev()
        .collect();
    assert_eq!(seen, want);

    let replay = store.events_after(ids[19], 100).unwrap();
    assert_eq!(
        replay.iter().map(|e| e.id).collect::<Vec<_>>(),
        ids[20..].to_vec()
    );
    assert_eq!(store.events_after(ids[0], 3).unwrap()[0].id, ids[1]);
    assert!(store.events_after(ids[24], 10).unwrap().is_empty());
}

fn read_db_files(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(DB_FILE) {
            all.extend(fs::read(&path).unwrap());
        }
    }
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn secrets_are_sealed_at_rest_b_11_2() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut store = open(tmp.path());
        let (changes, _) = everything();
        store.apply(&changes).unwrap();
        // Both the WAL (before a checkpoint) and the main file are checked.
        let raw = read_db_files(tmp.path());
        assert!(
            contains(&raw, b"owner-phone-label"),
            "the search must see plain columns"
        );
        for secret in [
            &TEMPLATE[..],
            &MAC,
            &DURESS_MAC,
            &TEMP_MAC,
            &APP_PUB,
            &GUEST_PUB,
            &INVITE_SECRET,
        ] {
            assert!(
                !contains(&raw, secret),
                "{} stored in plain text",
                String::from_utf8_lossy(secret)
            );
        }
    }
    // After the close checkpoints the WAL into the main file.
    let raw = read_db_files(tmp.path());
    assert!(contains(&raw, b"owner-phone-label"));
    for secret in [
        &TEMPLATE[..],
        &MAC,
        &DURESS_MAC,
        &TEMP_MAC,
        &APP_PUB,
        &GUEST_PUB,
        &INVITE_SECRET,
    ] {
        assert!(!contains(&raw, secret));
    }
}

/// A state dir holding a set-up lock.
fn set_up_lock() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let (changes, _) = everything();
    store.apply(&changes).unwrap();
    tmp
}

#[test]
fn missing_key_is_refused_without_a_reset() {
    let tmp = set_up_lock();
    fs::remove_file(tmp.path().join(KEY_FILE)).unwrap();
    let before = fs::read(tmp.path().join(DB_FILE)).unwrap();
    let e = open_err(tmp.path());
    assert!(matches!(e, StoreError::KeyMissing { .. }), "{e}");
    assert!(e.to_string().contains(KEY_FILE));
    assert!(
        !tmp.path().join(KEY_FILE).exists(),
        "no new key may be made"
    );
    assert_eq!(fs::read(tmp.path().join(DB_FILE)).unwrap(), before);
}

#[test]
fn missing_database_is_refused_without_a_reset() {
    let tmp = set_up_lock();
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(tmp.path().join(format!("{DB_FILE}{suffix}")));
    }
    let e = open_err(tmp.path());
    assert!(matches!(e, StoreError::DatabaseMissing { .. }), "{e}");
    assert!(e.to_string().contains(DB_FILE));
    assert!(
        !tmp.path().join(DB_FILE).exists(),
        "no new database may be made"
    );
}

#[test]
fn garbage_database_is_refused() {
    let tmp = set_up_lock();
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(tmp.path().join(format!("{DB_FILE}{suffix}")));
    }
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(tmp.path().join(DB_FILE), &garbage).unwrap();
    let e = open_err(tmp.path());
    assert!(matches!(e, StoreError::NotADatabase { .. }), "{e}");
    assert_eq!(
        fs::read(tmp.path().join(DB_FILE)).unwrap(),
        garbage,
        "file left as it was"
    );
}

#[test]
fn a_foreign_key_file_is_refused() {
    let tmp = set_up_lock();
    let other = tempfile::tempdir().unwrap();
    drop(open(other.path()));
    fs::copy(other.path().join(KEY_FILE), tmp.path().join(KEY_FILE)).unwrap();
    let e = open_err(tmp.path());
    assert!(matches!(e, StoreError::WrongKey { .. }), "{e}");
}

#[test]
fn truncated_key_is_refused() {
    let tmp = set_up_lock();
    let key_path = tmp.path().join(KEY_FILE);
    let key = fs::read(&key_path).unwrap();
    fs::write(&key_path, &key[..20]).unwrap();
    let e = open_err(tmp.path());
    assert!(matches!(e, StoreError::KeyLength { len: 20, .. }), "{e}");
}

#[test]
fn readable_key_is_refused() {
    let tmp = set_up_lock();
    let key_path = tmp.path().join(KEY_FILE);
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();
    let e = open_err(tmp.path());
    assert!(
        matches!(e, StoreError::KeyPermissions { mode: 0o644, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("chmod 600"));
}

#[test]
fn database_from_a_newer_schema_is_refused() {
    let tmp = set_up_lock();
    {
        // A newer latchd that this one cannot read back records so
        // (issue 20: `min_reader`), and left no pre-update copy.
        let conn = rusqlite::Connection::open(tmp.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        conn.execute(
            "UPDATE store_meta SET value = 99 WHERE name = 'min_reader'",
            [],
        )
        .unwrap();
    }
    let e = open_err(tmp.path());
    assert!(
        matches!(e, StoreError::SchemaTooNew { found: 99, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("no pre-update copy"), "{e}");
}

#[test]
fn a_sealed_value_moved_to_another_row_does_not_open() {
    let tmp = set_up_lock();
    {
        // Copy the admin's passcode MAC onto the visitor's credential row,
        // as someone with write access to the file (but not the key) might.
        let conn = rusqlite::Connection::open(tmp.path().join(DB_FILE)).unwrap();
        conn.execute(
            "UPDATE credentials SET kind = 'passcode', secret_kind = 'passcode', slot = NULL,
               sealed = (SELECT sealed FROM credentials WHERE id = 4) WHERE id = 6",
            [],
        )
        .unwrap();
    }
    let store = open(tmp.path());
    let e = store
        .load()
        .expect_err("a moved sealed value must not load");
    assert!(matches!(e, StoreError::Unseal { .. }), "{e}");
}

#[test]
fn a_passcode_relabelled_as_a_duress_code_or_back_does_not_open() {
    // Someone with write access to the file (not the key) swaps the kind
    // column: the administrator's code would raise the silent alarm, or
    // the duress code (id 5) would open without it. The sealed MAC is
    // bound to its kind, so neither row opens.
    for (id, kind) in [(4, "duress_passcode"), (5, "passcode")] {
        let tmp = set_up_lock();
        {
            let conn = rusqlite::Connection::open(tmp.path().join(DB_FILE)).unwrap();
            let changed = conn
                .execute(
                    "UPDATE credentials SET kind = ?1 WHERE id = ?2",
                    rusqlite::params![kind, id],
                )
                .unwrap();
            assert_eq!(changed, 1);
        }
        let e = open(tmp.path())
            .load()
            .expect_err("a relabelled passcode must not load");
        assert!(
            matches!(e, StoreError::Unseal { .. }),
            "credential {id}: {e}"
        );
    }
}

#[test]
fn a_refused_change_leaves_the_whole_batch_out() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let (changes, expected) = everything();
    store.apply(&changes).unwrap();
    let e = store
        .apply(&[
            Change::PutUser(user(5, Role::User)),
            Change::PutCredential(cred(
                50,
                5,
                CredentialKind::Palm,
                CredentialSecret::ModuleSlot(9),
            )),
            Change::DeleteUser(n(42)),
            Change::PutCredential(cred(
                51,
                77,
                CredentialKind::Fingerprint,
                CredentialSecret::ModuleSlot(1),
            )),
        ])
        .expect_err("credential of an unknown user");
    assert!(
        matches!(
            e,
            StoreError::Rejected {
                index: 3,
                change: "PutCredential",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("077"));
    assert_eq!(store.load().unwrap(), expected);

    // A secret that does not fit the kind is refused too.
    let e = store
        .apply(&[Change::PutCredential(cred(
            60,
            1,
            CredentialKind::Passcode,
            CredentialSecret::ModuleSlot(1),
        ))])
        .unwrap_err();
    assert!(matches!(e, StoreError::Rejected { index: 0, .. }), "{e}");
    // And an owner key for an administrator that does not exist.
    let e = store
        .apply(&[Change::PutAppKey(AppKey {
            id: AppKeyId(7),
            role: AppKeyRole::Owner { admin: n(500) },
            public_key: [1; 32],
            validity: Validity::ALWAYS,
            label: "x".into(),
        })])
        .unwrap_err();
    assert!(matches!(e, StoreError::Rejected { .. }), "{e}");
    drop(store);
    assert_eq!(open(tmp.path()).load().unwrap(), expected);
}

#[test]
fn a_full_disk_is_a_typed_error_and_changes_nothing() {
    let tmp = set_up_lock();
    let ids_before = {
        let mut store = open(tmp.path());
        store.append_events(&[event(1), event(2)]).unwrap()
    };
    let expected = open(tmp.path()).load().unwrap();
    let size = fs::metadata(tmp.path().join(DB_FILE)).unwrap().len();
    let (mut store, _) = Store::open(
        tmp.path(),
        StoreOptions {
            max_db_bytes: Some(size),
            ..opts()
        },
    )
    .unwrap();

    // An enrolment batch far larger than the room left.
    let mut big = vec![Change::PutUser(user(7, Role::User))];
    for i in 0..40u32 {
        big.push(Change::PutCredential(cred(
            100 + i,
            7,
            CredentialKind::Face,
            CredentialSecret::FaceTemplate {
                slot: i as u16,
                template: vec![i as u8; 4096],
            },
        )));
    }
    let e = store.apply(&big).expect_err("the batch cannot fit");
    assert!(matches!(e, StoreError::Full { .. }), "{e}");
    assert_eq!(store.load().unwrap(), expected);

    // The event log hits the same wall.
    let flood: Vec<Event> = (0..5000).map(event).collect();
    let e = store.append_events(&flood).expect_err("the log cannot fit");
    assert!(matches!(e, StoreError::Full { .. }), "{e}");
    let recent = store.recent_events(10).unwrap();
    assert_eq!(
        recent.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids_before[1], ids_before[0]]
    );
    assert!(store.health().ok);
    assert_eq!(store.integrity_check().unwrap(), "ok");
    drop(store);

    // Without the cap, the same batch goes in.
    let mut store = open(tmp.path());
    assert_eq!(store.load().unwrap(), expected);
    store.apply(&big).unwrap();
    assert_eq!(
        store.load().unwrap().credentials.len(),
        expected.credentials.len() + 40
    );
}

#[test]
fn service_counters_and_values_survive_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut store = open(tmp.path());
        store.put_counter("ble.tx", 1).unwrap();
        store.put_counter("ble.tx", u64::MAX).unwrap();
        store.put_meta("mqtt.session", b"abc").unwrap();
        assert!(matches!(
            store.put_counter("bad name", 1),
            Err(StoreError::Invalid(_))
        ));
    }
    let store = open(tmp.path());
    assert_eq!(store.get_counter("ble.tx").unwrap(), Some(u64::MAX));
    assert_eq!(store.get_counter("ble.rx").unwrap(), None);
    assert_eq!(
        store.get_meta("mqtt.session").unwrap(),
        Some(b"abc".to_vec())
    );
}

#[test]
fn health_reports_size_events_and_checks() {
    let tmp = set_up_lock();
    let (mut store, _) = Store::open(tmp.path(), opts()).unwrap();
    store.append_events(&[event(1)]).unwrap();
    let h = store.health();
    assert!(h.ok, "{}", h.detail);
    assert_eq!(h.detail, "ok");
    assert_eq!(h.events, 1);
    assert!(h.db_bytes >= 4096);
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

/// Issue 17 item 3: the door alarms are stored like every alarm, are
/// records (not noise a flood could push out) and read back after a restart.
#[test]
fn door_alarm_events_are_stored_as_records_and_survive_a_restart() {
    use latchd::core::event::{AlarmKind, Retention};
    let tmp = tempfile::tempdir().unwrap();
    let batch: Vec<Event> = [
        EventKind::AlarmRaised {
            alarm: AlarmKind::DoorForcedOpen,
        },
        EventKind::AlarmRaised {
            alarm: AlarmKind::DoorAjar,
        },
        EventKind::AlarmCleared {
            alarm: AlarmKind::DoorForcedOpen,
        },
    ]
    .into_iter()
    .enumerate()
    .map(|(i, kind)| Event {
        at: Some(WallTime(1_700_000_000 + i as i64)),
        mono_ms: i as u64,
        kind,
    })
    .collect();
    assert!(batch
        .iter()
        .all(|e| e.kind.retention() == Retention::Record));
    open(tmp.path()).append_events(&batch).unwrap();
    let page = open(tmp.path()).events_before(None, 10).unwrap();
    let read: Vec<Event> = page.into_iter().rev().map(|e| e.event).collect();
    assert_eq!(read, batch);
}
