//! The names and unique ids Matter controllers give users (`SetUser`).
//!
//! They are labels for the controllers, not lock rules, so the engine's
//! user table does not carry them: the node keeps them in one sealed blob
//! of its own ([`BlobScope::Node`], erased by a factory reset) and drops a
//! user's label when the engine deletes the user, whoever deleted it.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::port::{BlobError, BlobScope, LockPort};
use crate::core::types::UserNumber;

/// The blob's key: the first of rs-matter's vendor keys.
pub const LABELS_KEY: u16 = rs_matter::persist::VENDOR_KEYS_START;

/// Matter's limit on `UserName` (characters).
pub const MAX_NAME: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    pub unique_id: Option<u32>,
}

/// Every user's label, by user number.
#[derive(Debug, Default)]
pub struct Labels {
    map: BTreeMap<u16, Label>,
}

impl Labels {
    /// Load from the store; an unreadable blob is logged and starts empty
    /// (labels are cosmetic, the lock must still run).
    pub fn load(port: &dyn LockPort) -> Labels {
        let map = match port.blob_load(BlobScope::Node, LABELS_KEY) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("Matter: user labels unreadable ({e}); starting without them");
                BTreeMap::new()
            }),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                tracing::warn!("Matter: cannot read user labels ({e}); starting without them");
                BTreeMap::new()
            }
        };
        Labels { map }
    }

    pub fn get(&self, user: UserNumber) -> Option<&Label> {
        self.map.get(&user.get())
    }

    /// Set (or with `None`, remove) a user's label and store the table.
    pub fn set(
        &mut self,
        port: &dyn LockPort,
        user: UserNumber,
        label: Option<Label>,
    ) -> Result<(), BlobError> {
        let changed = match label {
            Some(l) => self.map.insert(user.get(), l.clone()).as_ref() != Some(&l),
            None => self.map.remove(&user.get()).is_some(),
        };
        if !changed {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&self.map).map_err(|e| BlobError(e.to_string()))?;
        port.blob_store(BlobScope::Node, LABELS_KEY, &bytes)
    }
}
