//! rs-matter's key-value persistence on the lock's store.
//!
//! rs-matter saves its fabrics, ACLs, CASE resumption records and counters
//! through [`KvBlobStore`]; each call becomes one sealed row in the lock's
//! database ([`BlobScope::Node`]), committed before the call returns, so a
//! fabric rs-matter believes stored survives a power cut.
use rs_matter::error::{Error, ErrorCode};
use rs_matter::persist::KvBlobStore;

use super::port::{BlobScope, LockPort};

impl std::fmt::Debug for PortKv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortKv").finish_non_exhaustive()
    }
}

/// [`KvBlobStore`] over a [`LockPort`].
pub struct PortKv<'a> {
    pub port: &'a dyn LockPort,
    /// Woken after a fabric was stored or removed, so the node reports
    /// its fabric count when it changes (not by polling).
    pub changed: &'a tokio::sync::Notify,
}

/// rs-matter keeps fabric N under key N (`FABRIC_KEYS_START` + index,
/// below its singleton keys at 256).
fn is_fabric_key(key: u16) -> bool {
    key < rs_matter::persist::BASIC_INFO_KEY
}

fn io_error(what: &str, e: impl core::fmt::Display) -> Error {
    tracing::error!("Matter: cannot {what}: {e}");
    ErrorCode::StdIoError.into()
}

impl KvBlobStore for PortKv<'_> {
    fn load<'b>(&mut self, key: u16, buf: &'b mut [u8]) -> Result<Option<&'b [u8]>, Error> {
        match self
            .port
            .blob_load(BlobScope::Node, key)
            .map_err(|e| io_error("read its stored state", e))?
        {
            None => Ok(None),
            Some(v) => {
                let dst = buf.get_mut(..v.len()).ok_or_else(|| {
                    tracing::error!(
                        "Matter: stored blob {key} ({} bytes) is larger than the buffer",
                        v.len()
                    );
                    Error::from(ErrorCode::BufferTooSmall)
                })?;
                dst.copy_from_slice(&v);
                Ok(Some(dst))
            }
        }
    }

    fn store(&mut self, key: u16, data: &[u8], _buf: &mut [u8]) -> Result<(), Error> {
        self.port
            .blob_store(BlobScope::Node, key, data)
            .map_err(|e| io_error("store its state", e))?;
        if is_fabric_key(key) {
            self.changed.notify_one();
        }
        Ok(())
    }

    fn remove(&mut self, key: u16, _buf: &mut [u8]) -> Result<(), Error> {
        self.port
            .blob_remove(BlobScope::Node, key)
            .map_err(|e| io_error("remove stored state", e))?;
        if is_fabric_key(key) {
            self.changed.notify_one();
        }
        Ok(())
    }
}
