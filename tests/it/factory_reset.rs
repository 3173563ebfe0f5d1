//! Issue 13 item 5: a factory reset is a real erase (B-10.6, ETSI EN 303
//! 645 provision 5.11), on real database files in a temporary state
//! directory, with the real snapshot store and the real BLE connection
//! code.
//!
//! * No byte sequence of a sealed value, an event, a snapshot or the old
//!   device key from before the reset is left in any file of the state
//!   directory: checked right after the reset's commit (everything but the
//!   key and its check, which go with the rotation) and after the restart
//!   under the new key (everything).
//! * An old owner key no longer opens a session: its row is gone and the
//!   lock's identity changed with the key.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use latchd::app::client::AppSessionStart;
use latchd::app::connection::ChannelConn;
use latchd::app::crypto::{lock_keypair, StaticKeypair};
use latchd::app::lock_link::{LinkFuture, LockLink, LoggedEvent, StorageError};
use latchd::app::pairing::VerificationCode;
use latchd::app::protocol::{fragment, ChannelError, ErrorCode, Reassembler, DEFAULT_IDLE_TIMEOUT};
use latchd::app::wire::StatusReport;
use latchd::board::frames::{Frame, PixelFormat};
use latchd::core::action::SnapshotReason;
use latchd::core::event::{AppRefusal, Event, EventKind};
use latchd::core::time::{Instant, Validity, WallTime};
use latchd::core::types::{
    AppKey, AppKeyId, AppKeyRole, Change, Credential, CredentialId, CredentialKind,
    CredentialSecret, GuestInvite, PasscodeMac, Persisted, Role, TempPasscode, TempPasscodeId,
    User, UserNumber,
};
use latchd::core::users::AppAccess;
use latchd::core::{AppCommand, AppResult, Channel, Principal};
use latchd::store::{DeviceKey, Store, StoreOptions, DB_FILE, KEY_FILE};
use latchd::video::SnapshotStore;
use rand_core::OsRng;

const NOW: Instant = Instant(5_000);
const MTU: u16 = 185;

fn n(x: u16) -> UserNumber {
    UserNumber::new(x).unwrap()
}

fn open(dir: &Path) -> (Store, DeviceKey) {
    Store::open(dir, StoreOptions::default()).expect("store opens")
}

/// A household: an administrator with a face, a passcode and a
/// fingerprint, an owner app key, a guest key, an invite, a visitor code.
fn household(owner_public: [u8; 32]) -> Vec<Change> {
    let admin = User {
        number: n(1),
        role: Role::Admin,
        validity: Validity::ALWAYS,
    };
    let cred = |id, kind, secret| {
        Change::PutCredential(Credential {
            id: CredentialId(id),
            user: n(1),
            kind,
            secret,
        })
    };
    vec![
        Change::PutUser(admin),
        cred(
            1,
            CredentialKind::Face,
            CredentialSecret::FaceTemplate {
                slot: 0,
                template: b"HOUSEHOLD-FACE-TEMPLATE-0123456789abcdef".to_vec(),
            },
        ),
        cred(
            2,
            CredentialKind::Passcode,
            CredentialSecret::Passcode(PasscodeMac(*b"HOUSEHOLD-PASSCODE-MAC-012345678")),
        ),
        cred(
            3,
            CredentialKind::Fingerprint,
            CredentialSecret::ModuleSlot(7),
        ),
        Change::PutTempPasscode(TempPasscode {
            id: TempPasscodeId(4),
            mac: PasscodeMac(*b"HOUSEHOLD-VISITOR-MAC-0123456789"),
            validity: Validity {
                from: None,
                until: Some(WallTime(1_900_000_000)),
            },
            one_time: true,
        }),
        Change::PutAppKey(AppKey {
            id: AppKeyId(1),
            role: AppKeyRole::Owner { admin: n(1) },
            public_key: owner_public,
            validity: Validity::ALWAYS,
            label: "HOUSEHOLD-OWNER-PHONE".into(),
        }),
        Change::PutAppKey(AppKey {
            id: AppKeyId(2),
            role: AppKeyRole::Guest,
            public_key: *b"HOUSEHOLD-GUEST-PUBLIC-KEY-01234",
            validity: Validity {
                from: Some(WallTime(1_700_000_000)),
                until: Some(WallTime(1_900_000_000)),
            },
            label: "HOUSEHOLD-GUEST-PHONE".into(),
        }),
        Change::PutGuestInvite(GuestInvite {
            slot: AppKeyId(3),
            code_id: 0x1234,
            secret: *b"HOUSEHOLDINVT",
            validity: Validity {
                from: Some(WallTime(1_700_000_000)),
                until: Some(WallTime(1_900_000_000)),
            },
            code_expires_at: WallTime(1_800_000_000),
            attempts: 0,
        }),
    ]
}

/// Every file under `dir`, recursively (the database, its -wal and -shm,
/// the key, snapshots, request files), with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("state dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            let bytes = std::fs::read(&path).expect("readable");
            out.push((path, bytes));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The needles that are still somewhere in the state directory.
fn found(dir: &Path, needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let all = files(dir);
    needles
        .iter()
        .filter_map(|(what, needle)| {
            all.iter()
                .find(|(_, bytes)| contains(bytes, needle))
                .map(|(path, _)| format!("{what} in {}", path.display()))
        })
        .collect()
}

/// Every sealed value the database holds, read raw (what an image of the
/// flash would show), with what it is.
fn sealed_values(db: &Path) -> Vec<(String, Vec<u8>)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("db opens");
    let mut out = Vec::new();
    for (table, column) in [
        ("credentials", "sealed"),
        ("temp_passcodes", "sealed_mac"),
        ("app_keys", "sealed_public_key"),
        ("guest_invites", "sealed_secret"),
        ("store_meta", "value"),
    ] {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT rowid, {column} FROM {table} WHERE {column} IS NOT NULL"
            ))
            .or_else(|_| {
                // WITHOUT ROWID tables (store_meta) have no rowid.
                conn.prepare(&format!(
                    "SELECT name, {column} FROM {table} WHERE {column} IS NOT NULL"
                ))
            })
            .expect("query");
        let rows: Vec<(String, Vec<u8>)> = stmt
            .query_map([], |r| {
                use rusqlite::types::Value;
                let id: Value = r.get(0)?;
                // Sealed values are blobs; store_meta also keeps plain
                // numbers (the schema floor), which are no secret.
                Ok(match r.get::<_, Value>(1)? {
                    Value::Blob(b) => Some((format!("{table}.{column} {id:?}"), b)),
                    _ => None,
                })
            })
            .expect("rows")
            .filter_map(|r| r.expect("row"))
            .collect();
        out.extend(rows);
    }
    out
}

fn household_event(i: u32) -> Event {
    Event {
        at: Some(WallTime(1_750_000_000 + i as i64)),
        mono_ms: u64::from(i),
        kind: EventKind::ModuleFault {
            detail: format!("HOUSEHOLD-EVENT-{i:05}"),
        },
    }
}

#[test]
fn after_a_reset_no_byte_of_the_household_is_left_in_the_state_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let app = StaticKeypair::generate(&mut OsRng);
    let (mut store, old_key) = open(dir);
    store.apply(&household(app.public())).unwrap();
    // Enough events to span many pages (and the WAL's high-water mark).
    let events: Vec<Event> = (0..400).map(household_event).collect();
    store.append_events(&events).unwrap();
    // Doorbell snapshots where the camera puts them.
    let snapshots = SnapshotStore::in_state_dir(dir, 10);
    let picture = |i: u32| {
        let mut jpeg = vec![0xFF, 0xD8];
        jpeg.extend(format!("HOUSEHOLD-VISITOR-PICTURE-{i}").bytes());
        jpeg.extend([0xFF, 0xD9]);
        jpeg
    };
    for i in 0..3 {
        let frame = Frame::new(4, 2, PixelFormat::Mjpeg, picture(i));
        snapshots
            .save(&frame, SnapshotReason::Doorbell, Some(u64::from(i)))
            .unwrap();
    }

    // The needles: every sealed value, the key check among them, as
    // stored; every event's text; the pictures; the plain labels; the key.
    let mut sealed = sealed_values(&dir.join(DB_FILE));
    assert!(
        sealed.len() >= 7,
        "credentials, visitor code, two app keys, invite, key check: {sealed:?}"
    );
    let key_check = sealed
        .iter()
        .position(|(what, _)| what.contains("key_check"))
        .map(|i| sealed.remove(i))
        .expect("the key check is sealed");
    let mut needles = sealed;
    // Every event's text starts so: one needle finds any of the 400
    // (checked before the reset: the scan sees them).
    needles.push(("an event".into(), b"HOUSEHOLD-EVENT-".to_vec()));
    for i in 0..3 {
        needles.push((format!("snapshot {i}"), picture(i)));
    }
    for label in ["HOUSEHOLD-OWNER-PHONE", "HOUSEHOLD-GUEST-PHONE"] {
        needles.push((label.into(), label.as_bytes().to_vec()));
    }
    // The scan sees them all before the reset (WAL or main file).
    let mut all = needles.clone();
    all.push(("key check".into(), key_check.1.clone()));
    let key_file = std::fs::read(dir.join(KEY_FILE)).unwrap();
    assert_eq!(key_file.len(), 32, "a file key: 32 raw bytes");
    all.push(("device key".into(), key_file));
    assert_eq!(found(dir, &all).len(), all.len(), "the scan must see them");

    store.apply(&[Change::FactoryReset]).unwrap();
    // The engine logs one "factory reset" event right after the commit.
    store
        .append_events(&[Event {
            at: Some(WallTime(1_760_000_000)),
            mono_ms: 9_999,
            kind: EventKind::FactoryReset,
        }])
        .unwrap();
    // Still open, before the restart: only the retired key and the check it
    // sealed are left (the rotation takes them).
    let left = found(dir, &needles);
    assert!(left.is_empty(), "left after the reset: {left:?}");
    drop(store);

    // The restart under a new key (the daemon exits 75 and starts again).
    let (store, new_key) = open(dir);
    assert_ne!(*new_key.passcode_key(), *old_key.passcode_key());
    let kept = store.recent_events(10).unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].event.kind, EventKind::FactoryReset);
    assert!(kept[0].id.0 > 400, "ids keep growing: {:?}", kept[0].id);
    assert_eq!(store.load().unwrap().app_keys, Vec::new());
    // Scanned while the new daemon runs (its WAL not yet checkpointed by
    // a close), and again after it stopped.
    let left = found(dir, &all);
    assert!(left.is_empty(), "left after the restart: {left:?}");
    drop(store);
    let left = found(dir, &all);
    assert!(
        left.is_empty(),
        "left after the restart and a stop: {left:?}"
    );
    assert!(dir.join(KEY_FILE).exists());
}

/// The lock side of BLE as the daemon runs it ([`ChannelConn`]), over
/// what the store holds; nothing but the session handshake is expected.
struct StoreLink {
    access: Arc<AppAccess>,
    refused: AtomicUsize,
}

impl StoreLink {
    fn of(store: &Store) -> StoreLink {
        StoreLink {
            access: Arc::new(AppAccess::from_persisted(&store.load().unwrap())),
            refused: AtomicUsize::new(0),
        }
    }
}

impl LockLink for StoreLink {
    fn pairing_mode(&self) -> bool {
        false
    }
    fn status(&self) -> StatusReport {
        panic!("a handshake asks for no status")
    }
    fn default_language(&self) -> latchd::core::Language {
        panic!("a handshake asks for no settings")
    }
    fn app_access(&self) -> Arc<AppAccess> {
        self.access.clone()
    }
    fn persisted(&self) -> LinkFuture<'_, Result<Persisted, StorageError>> {
        panic!("a handshake reads no store")
    }
    fn events_before(
        &self,
        _before: Option<u64>,
        _limit: usize,
    ) -> LinkFuture<'_, Result<Vec<LoggedEvent>, StorageError>> {
        panic!("a handshake reads no events")
    }
    fn submit(
        &self,
        _via: Channel,
        _principal: Principal,
        _command: AppCommand,
    ) -> LinkFuture<'_, Option<AppResult>> {
        panic!("a handshake submits nothing")
    }
    fn refused(&self, _via: Channel, reason: AppRefusal) {
        assert_eq!(reason, AppRefusal::UnknownKey);
        self.refused.fetch_add(1, Ordering::SeqCst);
    }
    fn ble_connected(&self, _connected: bool) {}
    fn identify(&self) {}
    fn now(&self) -> (Instant, Option<WallTime>) {
        (NOW, Some(WallTime(1_760_000_000)))
    }
}

/// One frame through the lock side, fragmented both ways.
async fn exchange(conn: &mut ChannelConn, link: &StoreLink, frame: &[u8]) -> Vec<u8> {
    let mut reasm = Reassembler::new(MTU).expect("mtu");
    let mut answer = None;
    for part in fragment(frame, MTU).expect("fragments") {
        for out in conn.on_write(link, &part).await {
            if let Some(f) = reasm.push(&out).expect("a well-formed answer") {
                answer = Some(f);
            }
        }
    }
    answer.expect("the lock answered")
}

/// The lock as the daemon builds it from the store's device key.
fn lock_side(key: &DeviceKey) -> (Arc<StaticKeypair>, ChannelConn) {
    let lock = Arc::new(lock_keypair(&key.passcode_key()));
    let code = VerificationCode::generate(&mut OsRng);
    let conn = ChannelConn::new(lock.clone(), Arc::new(code), MTU);
    (lock, conn)
}

#[tokio::test]
async fn an_old_owner_key_no_longer_opens_a_session_after_a_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let app = StaticKeypair::generate(&mut OsRng);
    let (mut store, old_key) = open(tmp.path());
    store.apply(&household(app.public())).unwrap();

    // Before: the owner's phone opens a session.
    let (old_lock, mut conn) = lock_side(&old_key);
    let link = StoreLink::of(&store);
    let (start, init) = AppSessionStart::new(&app, old_lock.public(), &mut OsRng);
    let accept = exchange(&mut conn, &link, &init).await;
    start
        .finish(&app, &accept, NOW, DEFAULT_IDLE_TIMEOUT)
        .expect("the owner's session opens before the reset");

    store.apply(&[Change::FactoryReset]).unwrap();
    drop(store);
    let (store, new_key) = open(tmp.path());
    let (new_lock, mut conn) = lock_side(&new_key);
    assert_ne!(new_lock.public(), old_lock.public(), "a new identity");
    let link = StoreLink::of(&store);

    // The phone as it was (the old lock's public key), and one that
    // learned the new identity: both are unknown keys now.
    for lock_public in [old_lock.public(), new_lock.public()] {
        let (start, init) = AppSessionStart::new(&app, lock_public, &mut OsRng);
        let answer = exchange(&mut conn, &link, &init).await;
        let e = start
            .finish(&app, &answer, NOW, DEFAULT_IDLE_TIMEOUT)
            .expect_err("an old owner key must not open a session");
        assert!(
            matches!(e, ChannelError::PeerError(ErrorCode::UnknownKey)),
            "{e:?}"
        );
        assert!(!conn.is_open());
    }
    assert_eq!(link.refused.load(Ordering::SeqCst), 2);
}
