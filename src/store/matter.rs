//! The Matter node's sealed blobs (`matter_blobs`, schema v4).
//!
//! rs-matter persists its fabrics, access control lists, CASE resumption
//! records and counters as opaque blobs under 16-bit keys; the node's
//! onboarding secret is one more. Each is sealed like every other secret
//! here, bound to its scope and key, so a blob copied to another key does
//! not open. A factory reset erases both scopes with the users, in the
//! same transaction (`state.rs`): it rotates the device key (issue 16), so
//! a kept label secret could not be opened again; the lock gets a new
//! onboarding code with its new serial.
use rusqlite::OptionalExtension;

use super::error::{SqlContext, StoreError};
use super::key::Binding;
use super::Store;

/// Which blobs: see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatterScope {
    Node,
    Label,
}

impl MatterScope {
    fn name(self) -> &'static str {
        match self {
            MatterScope::Node => "node",
            MatterScope::Label => "label",
        }
    }

    fn binding(self, key: u16) -> Binding<'static> {
        Binding {
            table: "matter_blobs",
            id: i64::from(key),
            kind: self.name(),
            owner: None,
        }
    }
}

impl Store {
    /// A Matter blob, opened; `None` if there is none under this key.
    pub fn matter_blob(&self, scope: MatterScope, key: u16) -> Result<Option<Vec<u8>>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT sealed FROM matter_blobs WHERE scope = ?1 AND key = ?2",
                rusqlite::params![scope.name(), key],
                |r| r.get(0),
            )
            .optional()
            .ctx("reading a Matter blob")?;
        match sealed {
            None => Ok(None),
            Some(s) => Ok(Some(self.sealer.open(&scope.binding(key), &s)?.to_vec())),
        }
    }

    /// Seal and store a Matter blob (one synced transaction, like every write).
    pub fn put_matter_blob(
        &mut self,
        scope: MatterScope,
        key: u16,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let sealed = self.sealer.seal(&scope.binding(key), value)?;
        // A fabric removed after an update must not come back with the
        // pre-update copy (store/fallback.rs).
        self.execute_uncarried(
            "INSERT INTO matter_blobs (scope, key, sealed) VALUES (?1, ?2, ?3)
             ON CONFLICT(scope, key) DO UPDATE SET sealed = excluded.sealed",
            rusqlite::params![scope.name(), key, sealed],
            "storing a Matter blob",
        )
    }

    /// Remove a Matter blob; removing one that is not there is not an error.
    pub fn delete_matter_blob(&mut self, scope: MatterScope, key: u16) -> Result<(), StoreError> {
        self.execute_uncarried(
            "DELETE FROM matter_blobs WHERE scope = ?1 AND key = ?2",
            rusqlite::params![scope.name(), key],
            "removing a Matter blob",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::Change;
    use crate::store::StoreOptions;

    #[test]
    fn blobs_are_sealed_survive_reopening_and_a_reset_erases_both_scopes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut s, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
            s.put_matter_blob(MatterScope::Node, 0, b"fabric one")
                .unwrap();
            s.put_matter_blob(MatterScope::Label, 1, b"label").unwrap();
            // Stored sealed: the plaintext is nowhere in the row.
            let raw: Vec<u8> = s
                .conn
                .query_row("SELECT sealed FROM matter_blobs WHERE key = 0", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert!(!raw.windows(10).any(|w| w == b"fabric one"));
        }
        let (mut s, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(
            s.matter_blob(MatterScope::Node, 0).unwrap().as_deref(),
            Some(&b"fabric one"[..])
        );
        assert_eq!(s.matter_blob(MatterScope::Node, 1).unwrap(), None);
        assert_eq!(
            s.matter_blob(MatterScope::Label, 1).unwrap().as_deref(),
            Some(&b"label"[..])
        );
        // Removing twice is not an error.
        s.delete_matter_blob(MatterScope::Node, 0).unwrap();
        s.delete_matter_blob(MatterScope::Node, 0).unwrap();
        assert_eq!(s.matter_blob(MatterScope::Node, 0).unwrap(), None);
        s.put_matter_blob(MatterScope::Node, 0, b"fabric one")
            .unwrap();
        // The reset rotates the device key (issue 16): nothing the old key
        // sealed could open again, so the label goes with the fabrics.
        s.apply(&[Change::FactoryReset]).unwrap();
        assert_eq!(s.matter_blob(MatterScope::Node, 0).unwrap(), None);
        assert_eq!(s.matter_blob(MatterScope::Label, 1).unwrap(), None);
    }

    #[test]
    fn a_blob_moved_to_another_key_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Store::open(dir.path(), StoreOptions::default()).unwrap();
        s.put_matter_blob(MatterScope::Node, 5, b"acl").unwrap();
        s.conn
            .execute("UPDATE matter_blobs SET key = 6 WHERE key = 5", [])
            .unwrap();
        assert!(s.matter_blob(MatterScope::Node, 6).is_err());
    }
}
