//! The fingerprint module's password (issue 13 item 7): a random per-lock
//! value, sealed under the device key in `store_meta`, and carried across
//! a factory reset although the reset rotates that key.
//!
//! ```text
//!   first start ─► put (sealed, committed before the module is touched)
//!   factory reset transaction (old key) ─► open it, keep it as the carry row
//!   adoption under the new key ─────────► seal the carry again, drop the carry
//! ```
//!
//! Why it is carried: the module keeps its password in its own flash and
//! accepts a new one only from a session that knows the old one. A reset
//! that lost the password would leave a module no one can use again, and
//! deriving it from the device key would lose it at the rotation. The
//! carry row holds the plain value only between the reset's commit and the
//! adoption at the next start (the daemon restarts for the rotation right
//! away); the adoption's scrub then clears its pages. The value is no
//! stronger than the UART it crosses in the clear (see the README).
use rusqlite::{Connection, OptionalExtension, Transaction};

use super::error::{SqlContext, StoreError};
use super::key::{Binding, Sealer};

const NAME: &str = "fingerprint_module_password";
const CARRY: &str = "fingerprint_module_password_carry";

fn binding() -> Binding<'static> {
    Binding {
        table: "store_meta",
        id: 1,
        kind: NAME,
        owner: None,
    }
}

fn decode(bytes: &[u8]) -> Result<u32, StoreError> {
    <[u8; 4]>::try_from(bytes)
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::Decode {
            what: NAME.into(),
            detail: format!("{} bytes, expected 4", bytes.len()),
        })
}

fn row(conn: &Connection, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
    conn.query_row(
        "SELECT value FROM store_meta WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .optional()
    .ctx("reading the fingerprint module password")
}

/// The stored password, if the lock has one.
pub(crate) fn get(conn: &Connection, sealer: &Sealer) -> Result<Option<u32>, StoreError> {
    match row(conn, NAME)? {
        Some(sealed) => decode(&sealer.open(&binding(), &sealed)?).map(Some),
        None => Ok(None),
    }
}

/// Seals and stores `password` (replacing any).
pub(crate) fn put(conn: &Connection, sealer: &Sealer, password: u32) -> Result<(), StoreError> {
    let sealed = sealer.seal(&binding(), &password.to_be_bytes())?;
    conn.execute(
        "INSERT INTO store_meta (name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        rusqlite::params![NAME, sealed],
    )
    .ctx("storing the fingerprint module password")?;
    Ok(())
}

/// In the factory reset's transaction, still under the old key: keep the
/// password as the carry row for the adoption under the new key.
pub(crate) fn carry_for_reset(tx: &Transaction<'_>, sealer: &Sealer) -> Result<(), StoreError> {
    if let Some(password) = get(tx, sealer)? {
        tx.execute(
            "INSERT INTO store_meta (name, value) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            rusqlite::params![CARRY, password.to_be_bytes().to_vec()],
        )
        .ctx("keeping the fingerprint module password across the reset")?;
    }
    Ok(())
}

/// In the adoption's transaction, under the new key: seal the carried
/// password again. Without a carry the old sealed row (no key opens it any
/// more) is dropped, and the next start makes a new password.
pub(crate) fn adopt_carried(tx: &Transaction<'_>, sealer: &Sealer) -> Result<(), StoreError> {
    match row(tx, CARRY)? {
        Some(plain) => put(tx, sealer, decode(&plain)?)?,
        None => {
            tx.execute("DELETE FROM store_meta WHERE name = ?1", [NAME])
                .ctx("dropping the old fingerprint module password")?;
        }
    }
    tx.execute("DELETE FROM store_meta WHERE name = ?1", [CARRY])
        .ctx("dropping the fingerprint module password carry")?;
    Ok(())
}
