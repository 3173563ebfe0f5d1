//! What the lock answers (B-9): the [`Response`] enum and the listing
//! entries it carries. Entries never carry a secret: a user lists the
//! kinds of credential it holds, a temporary passcode its id and window,
//! never digits, MACs or keys.
use super::pairing::GuestPairingCode;
use super::protocol::ErrorCode;
use super::request::TempPasscodeKind;
use super::wire::{EventEntry, Role, Settings, StatusReport};
use crate::core::time::{Validity, WallTime};

/// Longest detail string in an error response.
pub const MAX_DETAIL: usize = 120;
/// Longest key label in a listing (longer ones are cut).
pub const MAX_LABEL: usize = 64;

/// Enrolled credential kinds of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Credentials {
    /// Face.
    pub face: bool,
    /// Palm vein.
    pub palm: bool,
    /// Fingerprint.
    pub fingerprint: bool,
    /// Passcode.
    pub passcode: bool,
    /// Duress passcode.
    pub duress_passcode: bool,
}

/// A user in a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserEntry {
    /// Number (B-1.4).
    pub user: u16,
    /// Role.
    pub role: Role,
    /// Validity.
    pub validity: Validity,
    /// Enrolled credentials.
    pub credentials: Credentials,
}

/// A temporary passcode in a listing (never the digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasscodeEntry {
    /// Id.
    pub id: u16,
    /// Kind.
    pub kind: TempPasscodeKind,
    /// A one-time code already used.
    pub used: bool,
}

/// An owner key in a listing (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerKeyEntry {
    /// Slot.
    pub slot: u16,
    /// The administrator it speaks for.
    pub admin: u16,
    /// Its label.
    pub label: String,
}

/// A guest key or invite in a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestKeyEntry {
    /// Slot.
    pub slot: u16,
    /// Inclusive start.
    pub valid_from: WallTime,
    /// Exclusive end.
    pub valid_until: WallTime,
    /// The guest redeemed the code (a key exists) or not (invite pending).
    pub redeemed: bool,
}

/// One owner notice kept for the apps that were not connected when it
/// happened (issue 17 item 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingNotice {
    /// The notice's id (grows; acknowledge with `AckNotices { up_to }`).
    pub id: u64,
    /// What happened; `cursor` is the newest logged event at the time (a
    /// doorbell's snapshot is stored under it).
    pub entry: EventEntry,
}

/// A response from the lock.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Done, nothing to return.
    Ok,
    /// Status.
    Status(StatusReport),
    /// Users.
    Users(Vec<UserEntry>),
    /// A user was added with this number.
    UserAdded {
        /// Number.
        user: u16,
    },
    /// A temporary passcode was created.
    PasscodeCreated {
        /// Its id.
        id: u16,
    },
    /// Temporary passcodes.
    Passcodes(Vec<PasscodeEntry>),
    /// A guest invite was created: hand `code` to the guest.
    GuestKeyCreated {
        /// Slot.
        slot: u16,
        /// The one-time guest pairing code.
        code: GuestPairingCode,
        /// The code cannot be redeemed from this time on.
        code_expires_at: WallTime,
    },
    /// Guest keys.
    GuestKeys(Vec<GuestKeyEntry>),
    /// Owner keys.
    OwnerKeys(Vec<OwnerKeyEntry>),
    /// Schedules (issue 17 item 2).
    Schedules(Vec<crate::core::schedule::Schedule>),
    /// A page of events, newest first.
    Events {
        /// Events.
        events: Vec<EventEntry>,
        /// Pass as `before` for the next page; `None` = no older events.
        next_cursor: Option<u64>,
    },
    /// Settings.
    Settings(Settings),
    /// Unsolicited, owner keys only, sealed over the broker: something the
    /// app must be told of at once (B-6.9 duress, B-3.6 an unlock while
    /// away). `cursor` is the newest logged event when it was sent (0:
    /// none); the log around it has the details.
    Notice(EventEntry),
    /// Issue 17 item 8: the owner notices this key has not acknowledged,
    /// oldest first, and how many more wait behind them.
    Notices {
        /// At most [`super::request::MAX_NOTICES_PER_REPLY`].
        notices: Vec<PendingNotice>,
        /// Notices newer than the last listed, not in this reply.
        more: u16,
    },
    /// The offset of the streamed bundle's next chunk (`UpdateBegin`,
    /// `UpdateChunk`).
    UpdateOffset { offset: u64 },
    /// The request was refused.
    Error {
        /// Code.
        code: ErrorCode,
        /// Human-readable reason (≤ [`MAX_DETAIL`] bytes).
        detail: String,
    },
}

impl Response {
    /// An error response; the detail is cut to [`MAX_DETAIL`] bytes on a
    /// character boundary.
    pub fn error(code: ErrorCode, detail: &str) -> Self {
        let mut end = detail.len().min(MAX_DETAIL);
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        Response::Error {
            code,
            detail: detail[..end].to_owned(),
        }
    }
}
