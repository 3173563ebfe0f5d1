//! The store's row decoders on rows nobody should have written: whoever
//! can write the flash can put any value of any type in any column, past
//! the schema's `CHECK`s. The fuzzer writes users, credentials, temporary
//! passcodes, app keys, guest invites, lock state JSON, events and the
//! sealed module password into an in-memory database with latchd's schema
//! (`store::fuzzing::Rows`), then loads them with the daemon's decoders.
//!
//! Invariants: nothing panics; a sealed column that was not sealed by the
//! device key for *that* row (raw bytes, or a seal moved from another
//! row) never loads — the load fails with a typed error, nothing fails
//! open; a loaded app key has exactly the public key sealed for it; a
//! loaded state and loaded events survive serde (decode(encode(x)) == x).
#![no_main]

use std::collections::BTreeMap;

use latchd::core::event::EventKind;
use latchd::core::types::Persisted;
use latchd::store::fuzzing::Rows;
use latchd::store::DeviceKey;
use libfuzzer_sys::fuzz_target;
use rusqlite::types::Value;

thread_local! {
    static ROWS: Rows = Rows::new(&DeviceKey::from_bytes([7; 32])).expect("an in-memory store");
}

/// The fuzzer's bytes, read front to back; zeros when they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn bytes(&mut self) -> Vec<u8> {
        let n = usize::from(self.byte() % 64).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b.to_vec()
    }
    fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
    /// Mostly small, sometimes any, integers.
    fn int(&mut self) -> i64 {
        match self.byte() % 4 {
            0 => i64::from(self.byte()),
            1 => i64::from(u16::from_be_bytes([self.byte(), self.byte()])),
            2 => -i64::from(self.byte()),
            _ => i64::from_be_bytes(std::array::from_fn(|_| self.byte())),
        }
    }
    /// A value for an integer column: usually an integer, sometimes NULL,
    /// text or a real.
    fn int_value(&mut self) -> Value {
        match self.byte() % 8 {
            0 => Value::Null,
            1 => Value::Text(self.text()),
            2 => Value::Real(f64::from(self.byte()) / 3.0),
            _ => Value::Integer(self.int()),
        }
    }
    /// One of `names`, or any text.
    fn name(&mut self, names: &[&str]) -> String {
        let i = usize::from(self.byte());
        names
            .get(i % (names.len() + 1))
            .map(|s| (*s).to_string())
            .unwrap_or_else(|| self.text())
    }
}

/// What a sealed column holds.
enum Sealed {
    Null,
    /// Raw bytes: not sealed by the device key.
    Raw(Vec<u8>),
    /// Sealed for this row.
    Right(Vec<u8>),
    /// Sealed for another row (its id changed).
    Moved(Vec<u8>),
}

fn sealed(inp: &mut Input<'_>) -> Sealed {
    match inp.byte() % 8 {
        0 => Sealed::Null,
        1 => Sealed::Raw(inp.bytes()),
        2 => Sealed::Moved(inp.bytes()),
        3 => Sealed::Right(std::array::from_fn::<u8, 32, _>(|_| inp.byte()).to_vec()),
        _ => Sealed::Right(inp.bytes()),
    }
}

/// A row being written, and whether a sealed value in it can never open.
struct Writer<'a> {
    rows: &'a Rows,
    forged: bool,
}

impl Writer<'_> {
    /// The column value for `s`, sealed bound to (table, id, kind, owner)
    /// when the row's binding columns are integers.
    fn seal(
        &mut self,
        s: &Sealed,
        table: &str,
        id: &Value,
        kind: &str,
        owner: Option<&Value>,
    ) -> Value {
        let int = |v: &Value| match v {
            Value::Integer(i) => Some(*i),
            _ => None,
        };
        let bind = match (int(id), owner.map(int)) {
            (Some(id), None) => Some((id, None)),
            (Some(id), Some(Some(o))) => Some((id, Some(o))),
            _ => None,
        };
        match (s, bind) {
            (Sealed::Null, _) => Value::Null,
            (Sealed::Right(p), Some((id, owner))) => Value::Blob(
                self.rows
                    .seal(table, id, kind, owner, p)
                    .expect("sealing works"),
            ),
            (Sealed::Moved(p), Some((id, owner))) => {
                self.forged = true;
                Value::Blob(
                    self.rows
                        .seal(table, id ^ 1, kind, owner, p)
                        .expect("sealing works"),
                )
            }
            (Sealed::Raw(p) | Sealed::Right(p) | Sealed::Moved(p), _) => {
                self.forged = true;
                Value::Blob(p.clone())
            }
        }
    }
}

fn insert(rows: &Rows, sql: &str, values: &[Value]) -> bool {
    rows.conn()
        .execute(sql, rusqlite::params_from_iter(values))
        .is_ok()
}

fuzz_target!(|data: &[u8]| {
    ROWS.with(|rows| {
        rows.conn()
            .execute_batch("SAVEPOINT fuzz")
            .expect("savepoint");
        run(rows, data);
        rows.conn()
            .execute_batch("ROLLBACK TO fuzz; RELEASE fuzz")
            .expect("rollback");
    });
});

fn run(rows: &Rows, data: &[u8]) {
    let mut inp = Input(data);
    let mut w = Writer {
        rows,
        forged: false,
    };
    // A forged value in a row that was not stored forges nothing.
    let mut forged = false;
    let mut app_keys: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    let mut password_forged = false;
    let mut password: Option<Vec<u8>> = None;
    for _ in 0..12 {
        if inp.0.is_empty() {
            break;
        }
        w.forged = false;
        match inp.byte() % 9 {
            0 => {
                let v = [
                    inp.int_value(),
                    Value::Text(inp.name(&["admin", "user"])),
                    inp.int_value(),
                    inp.int_value(),
                ];
                insert(rows, "INSERT INTO users VALUES (?1, ?2, ?3, ?4)", &v);
            }
            1 => {
                let (id, user) = (inp.int_value(), inp.int_value());
                let kind =
                    inp.name(&["face", "palm", "fingerprint", "passcode", "duress_passcode"]);
                let secret_kind = inp.name(&["module_slot", "face_template", "passcode"]);
                let slot = inp.int_value();
                let s = sealed(&mut inp);
                let bind = format!("{kind}/{secret_kind}");
                let blob = w.seal(&s, "credentials", &id, &bind, Some(&user));
                let v = [
                    id,
                    user,
                    Value::Text(kind),
                    Value::Text(secret_kind),
                    slot,
                    blob,
                ];
                if insert(
                    rows,
                    "INSERT INTO credentials VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    &v,
                ) {
                    forged |= w.forged;
                }
            }
            2 => {
                let id = inp.int_value();
                let s = sealed(&mut inp);
                let blob = w.seal(&s, "temp_passcodes", &id, "passcode", None);
                let v = [id, blob, inp.int_value(), inp.int_value(), inp.int_value()];
                if insert(
                    rows,
                    "INSERT INTO temp_passcodes VALUES (?1, ?2, ?3, ?4, ?5)",
                    &v,
                ) {
                    forged |= w.forged;
                }
            }
            3 => {
                let id = inp.int_value();
                let role = inp.name(&["owner", "guest"]);
                let admin = inp.int_value();
                let s = sealed(&mut inp);
                let owner = (admin != Value::Null).then_some(&admin);
                let blob = w.seal(&s, "app_keys", &id, &role, owner);
                let plain = match (&s, &id) {
                    (Sealed::Right(p), Value::Integer(i)) if !w.forged => Some((*i, p.clone())),
                    _ => None,
                };
                let v = [
                    id,
                    Value::Text(role),
                    admin,
                    blob,
                    inp.int_value(),
                    inp.int_value(),
                    Value::Text(inp.text()),
                ];
                if insert(
                    rows,
                    "INSERT INTO app_keys VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    &v,
                ) {
                    forged |= w.forged;
                    if let Some((i, p)) = plain {
                        app_keys.insert(i, p);
                    }
                }
            }
            4 => {
                let (slot, code_id) = (inp.int_value(), inp.int_value());
                let s = sealed(&mut inp);
                let blob = w.seal(&s, "guest_invites", &slot, "guest_code", Some(&code_id));
                let v = [
                    slot,
                    code_id,
                    blob,
                    inp.int_value(),
                    inp.int_value(),
                    inp.int_value(),
                    inp.int_value(),
                ];
                if insert(
                    rows,
                    "INSERT INTO guest_invites VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    &v,
                ) {
                    forged |= w.forged;
                }
            }
            5 | 6 => {
                let name = inp.name(&[
                    "handing",
                    "settings",
                    "lockout",
                    "time_floor",
                    "pairing_generation",
                ]);
                let v = [Value::Text(name), Value::Text(inp.text())];
                insert(
                    rows,
                    "INSERT OR REPLACE INTO lock_state VALUES (?1, ?2)",
                    &v,
                );
            }
            7 => {
                let v = [
                    inp.int_value(),
                    inp.int_value(),
                    inp.int_value(),
                    Value::Text(inp.text()),
                    Value::Text(inp.text()),
                ];
                insert(rows, "INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5)", &v);
            }
            _ => {
                let s = sealed(&mut inp);
                let blob = w.seal(
                    &s,
                    "store_meta",
                    &Value::Integer(1),
                    "fingerprint_module_password",
                    None,
                );
                let v = [Value::Text("fingerprint_module_password".into()), blob];
                if insert(
                    rows,
                    "INSERT OR REPLACE INTO store_meta VALUES (?1, ?2)",
                    &v,
                ) {
                    password_forged = w.forged;
                    password = match s {
                        Sealed::Right(p) if !w.forged => Some(p),
                        _ => None,
                    };
                }
            }
        }
    }

    match rows.load() {
        Ok(p) => {
            assert!(!forged, "a value not sealed for its row loaded: {p:?}");
            for k in &p.app_keys {
                assert_eq!(
                    app_keys.get(&i64::from(k.id.0)).map(Vec::as_slice),
                    Some(&k.public_key[..]),
                    "app key {} loaded with a public key nobody sealed for it",
                    k.id.0
                );
            }
            let json = serde_json::to_string(&p).expect("state serialises");
            let again: Persisted = serde_json::from_str(&json).expect("own JSON parses");
            assert_eq!(again, p, "decode(encode(state)) != state");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(events) = rows.recent_events(100) {
        for e in events {
            let json = serde_json::to_string(&e.event.kind).expect("event serialises");
            let again: EventKind = serde_json::from_str(&json).expect("own JSON parses");
            assert_eq!(again, e.event.kind, "decode(encode(event)) != event");
        }
    }
    match rows.module_password() {
        Ok(Some(p)) => {
            assert!(!password_forged, "a forged module password loaded");
            assert_eq!(password.as_deref(), Some(&p.to_be_bytes()[..]));
        }
        Ok(None) | Err(_) => {}
    }
}
