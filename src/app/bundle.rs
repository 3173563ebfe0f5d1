//! A RAUC bundle streamed over the app protocol in chunks (issue 20 item
//! 1), as the dispatcher sees it: a store of one partial file, reached
//! through [`BundleStore`] (the file side is `update::stream`).
//!
//! ```text
//!  UpdateBegin{size, sha256} ─► offset the lock has (0, or where a dropped
//!                               connection left the same bundle)
//!  UpdateChunk{offset, bytes}* ─► next offset   (only at the offset asked for)
//!  UpdateCommit{allow_older} ─► sha256 checked ─► StartUpdate("stream:<sha256>")
//!                               (the engine's safe-moment flow; RAUC installs
//!                               the file and checks its signature)
//!  UpdateAbort ─► the partial file is removed
//! ```
//!
//! Every chunk arrives in the BLE session (sealed, counted, owner key):
//! the session authenticates it; the sha256 at commit says the pieces make
//! the bundle the owner meant; RAUC's signature check says the bundle is
//! one the image trusts. latchd never reads the bundle's contents.

/// The engine's source for a committed streamed bundle: `stream:` and the
/// sha256 in lowercase hex. The update task resolves it to the file.
pub use crate::core::update::STREAM_SOURCE_PREFIX;

/// The source string for a committed bundle of this digest.
pub fn stream_source(sha256: &[u8; 32]) -> String {
    format!("{STREAM_SOURCE_PREFIX}{}", hex::encode(sha256))
}

/// Why a stream request was refused. Nothing is left half-done: a refused
/// chunk writes nothing; a refused commit removes the partial file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("the bundle is {size} bytes; this lock takes at most {max}")]
    TooBig { size: u64, max: u64 },
    #[error("a bundle of 0 bytes")]
    Empty,
    #[error(
        "the partition has {free} bytes free; {size} bytes and the store's reserve of {reserve} do not fit"
    )]
    NoRoom { size: u64, free: u64, reserve: u64 },
    #[error("another bundle is being streamed (abort it first)")]
    Busy,
    #[error("no bundle is being streamed (send UpdateBegin)")]
    NotStarted,
    #[error("chunk at offset {got}; the lock expects offset {expected}")]
    WrongOffset { expected: u64, got: u64 },
    #[error("the chunk runs past the announced size of {size} bytes")]
    PastEnd { size: u64 },
    #[error("the bundle is incomplete: {have} of {size} bytes")]
    Incomplete { have: u64, size: u64 },
    #[error("the bundle's sha256 is not the one announced; it was removed")]
    BadHash,
    #[error("cannot write the bundle: {0}")]
    Io(String),
}

/// Where streamed bundles go. One stream at a time; the implementation
/// keeps the rules (cap, room, offsets, hash) so every channel gets the
/// same ones.
pub trait BundleStore: std::fmt::Debug + Send + Sync + 'static {
    /// Start (or resume) a bundle of `size` bytes and this sha256; the
    /// offset the next chunk must carry.
    fn begin(&self, size: u64, sha256: [u8; 32]) -> Result<u64, StreamError>;
    /// Append `bytes` at `offset`; the next offset.
    fn chunk(&self, offset: u64, bytes: &[u8]) -> Result<u64, StreamError>;
    /// Check the whole file's sha256 and keep it for RAUC; the engine's
    /// source for it ([`stream_source`]).
    fn commit(&self) -> Result<String, StreamError>;
    /// Drop the partial file, if any.
    fn abort(&self);
    /// Remove a committed bundle the engine did not take (an update
    /// already under way, updates off).
    fn forget(&self, source: &str);
}
