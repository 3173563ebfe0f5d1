//! The store a face-unlock test starts from: the door direction,
//! administrator 001 with a passcode, and user 002 holding one face
//! template in slot 0 (the lowest free slot, as the menu would pick),
//! written the way the engine persists them. Benches include it with
//! `#[path = "../tests/it/common/face_seed.rs"] mod face_seed;`.
#![allow(dead_code)]

use std::path::Path;

use latchd::core::passcode::{Macer, Passcode};
use latchd::core::time::Validity;
use latchd::core::types::{
    Change, Credential, CredentialId, CredentialKind, CredentialSecret, Handing, Role, User,
    UserNumber,
};
use latchd::store::{Store, StoreOptions};

/// The user who holds the face.
pub const FACE_USER: u16 = 2;

/// Seed `state` (created if missing) with administrator 001
/// (`admin_code`) and user [`FACE_USER`] with `template` (bytes of a
/// `FaceTemplate`).
pub fn seed_face_user(state: &Path, admin_code: &str, template: Vec<u8>) {
    latchd::daemon::create_state_dir(state).expect("state dir");
    let (mut store, key) = Store::open(state, StoreOptions::default()).expect("store");
    let code = Passcode::parse(admin_code).expect("admin code");
    let mac = Macer::new(&key.passcode_key()).mac(code.digits());
    let admin = UserNumber::new(1).expect("001");
    let user = UserNumber::new(FACE_USER).expect("face user");
    store
        .apply(&[
            Change::SetHanding(Handing::RightHand),
            Change::PutUser(User {
                number: admin,
                role: Role::Admin,
                validity: Validity::ALWAYS,
            }),
            Change::PutCredential(Credential {
                id: CredentialId(1),
                user: admin,
                kind: CredentialKind::Passcode,
                secret: CredentialSecret::Passcode(mac),
            }),
            Change::PutUser(User {
                number: user,
                role: Role::User,
                validity: Validity::ALWAYS,
            }),
            Change::PutCredential(Credential {
                id: CredentialId(2),
                user,
                kind: CredentialKind::Face,
                secret: CredentialSecret::FaceTemplate { slot: 0, template },
            }),
        ])
        .expect("seed");
}
