//! The role check, and the lock side of a request frame that ends in it.
//!
//! ```text
//!  sealed Data frame ─► SecureSession::open ─► Request::decode ─► authorize(principal, now)
//!                                                                     │ Ok
//!                                                                     ▼
//!                              engine (src/core) gets (Principal, Request) as an
//!                              already-authenticated, already-authorised input
//! ```
//!
//! [`authorize`] is a pure function: an owner key may do everything; a
//! guest key may only unlock and lock, and only inside its window
//! `valid_from ≤ now < valid_until`; with the wall clock unknown a guest is
//! refused (ARCHITECTURE.md: never guess time for a time-windowed key).
//! The engine checks again that the key is still registered and allowed.
use thiserror::Error;

use super::codec::CommandError;
use super::protocol::{ChannelError, ErrorCode, SecureSession};
use super::request::Request;
use super::response::Response;
use super::wire::Principal;
use crate::core::time::{Instant, WallTime};

/// The role check refused a request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthzError {
    #[error("a guest key may only unlock and lock; `{0}` needs the owner's app")]
    Forbidden(&'static str),
    #[error("this guest key is not valid yet (from {} s, now {} s since the epoch)", valid_from.0, now.0)]
    NotYetValid { valid_from: WallTime, now: WallTime },
    #[error("this guest key expired at {} s (now {} s since the epoch); ask the owner for a new one", valid_until.0, now.0)]
    Expired {
        valid_until: WallTime,
        now: WallTime,
    },
    #[error("the lock's clock is not set, so time-limited keys are refused; the owner must sync the time")]
    ClockUnknown,
}

impl AuthzError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthzError::Forbidden(_) => ErrorCode::Forbidden,
            AuthzError::NotYetValid { .. } | AuthzError::Expired { .. } => {
                ErrorCode::OutsideValidity
            }
            AuthzError::ClockUnknown => ErrorCode::ClockUnknown,
        }
    }
}

/// Is `principal` allowed to run `request` at wall-clock `now`?
pub fn authorize(
    principal: &Principal,
    request: &Request,
    now: Option<WallTime>,
) -> Result<(), AuthzError> {
    match principal {
        Principal::Owner { .. } => Ok(()),
        Principal::Guest {
            valid_from,
            valid_until,
            ..
        } => {
            if !matches!(request, Request::Unlock | Request::Lock) {
                return Err(AuthzError::Forbidden(request.name()));
            }
            let now = now.ok_or(AuthzError::ClockUnknown)?;
            if now < *valid_from {
                return Err(AuthzError::NotYetValid {
                    valid_from: *valid_from,
                    now,
                });
            }
            if now >= *valid_until {
                return Err(AuthzError::Expired {
                    valid_until: *valid_until,
                    now,
                });
            }
            Ok(())
        }
    }
}

/// A request could not be accepted on the lock.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// The frame did not verify; nothing changed, no response is sent
    /// beyond the error code.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The frame verified but the command is malformed; answer with
    /// [`Response::error`].
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The frame verified but the principal may not do this; answer with
    /// [`Response::error`].
    #[error(transparent)]
    Authz(#[from] AuthzError),
}

impl RequestError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            RequestError::Channel(e) => e.code(),
            RequestError::Command(e) => e.code(),
            RequestError::Authz(e) => e.code(),
        }
    }
}

/// Lock side: open a sealed request frame, decode it and run the role
/// check. The result is what the engine receives.
pub fn open_request(
    session: &mut SecureSession,
    principal: &Principal,
    now: Instant,
    wall_now: Option<WallTime>,
    frame: &[u8],
) -> Result<Request, RequestError> {
    let plaintext = session.open(now, frame)?;
    let request = Request::decode(&plaintext)?;
    authorize(principal, &request, wall_now)?;
    Ok(request)
}

/// Lock side: seal a response.
pub fn seal_response(
    session: &mut SecureSession,
    now: Instant,
    response: &Response,
) -> Result<Vec<u8>, ChannelError> {
    session.seal(now, &response.encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::client::{open_response, seal_request};
    use crate::app::crypto::KeyId;
    use crate::app::protocol::tests::sessions;

    fn guest(from: i64, until: i64) -> Principal {
        Principal::Guest {
            key_id: KeyId([1; 8]),
            valid_from: WallTime(from),
            valid_until: WallTime(until),
        }
    }

    #[test]
    fn b_6_6_guest_window_edges() {
        let g = guest(100, 200);
        assert!(matches!(
            authorize(&g, &Request::Unlock, Some(WallTime(99))),
            Err(AuthzError::NotYetValid { .. })
        ));
        assert_eq!(authorize(&g, &Request::Unlock, Some(WallTime(100))), Ok(()));
        assert_eq!(authorize(&g, &Request::Lock, Some(WallTime(199))), Ok(()));
        assert!(matches!(
            authorize(&g, &Request::Unlock, Some(WallTime(200))),
            Err(AuthzError::Expired { .. })
        ));
        assert_eq!(
            authorize(&g, &Request::Unlock, None),
            Err(AuthzError::ClockUnknown)
        );
    }

    #[test]
    fn guest_may_only_unlock_and_lock() {
        let g = guest(0, i64::MAX);
        for req in [
            Request::Status,
            Request::ListUsers,
            Request::TimeSync { now: WallTime(5) },
            Request::ReleaseLockout,
            Request::CreateGuestKey {
                valid_from: WallTime(0),
                valid_until: WallTime(1),
            },
            Request::StartUpdate {
                url: "https://x/b.raucb".into(),
                allow_older: false,
            },
            Request::UpdateBegin {
                size: 4,
                sha256: [0; 32],
            },
            Request::UpdateChunk {
                offset: 0,
                bytes: vec![1],
            },
            Request::UpdateCommit { allow_older: true },
            Request::UpdateAbort,
        ] {
            assert_eq!(
                authorize(&g, &req, Some(WallTime(1))).map_err(|e| e.code()),
                Err(ErrorCode::Forbidden)
            );
        }
    }

    #[test]
    fn owner_may_do_everything_even_with_unknown_clock() {
        let o = Principal::Owner {
            key_id: KeyId([2; 8]),
            admin_user: 1,
        };
        assert_eq!(
            authorize(&o, &Request::TimeSync { now: WallTime(9) }, None),
            Ok(())
        );
        assert_eq!(authorize(&o, &Request::Unlock, None), Ok(()));
    }

    /// The lock's side of a request over a sealed session: a verified
    /// frame reaches the engine only through the role check, and the
    /// sealed answer opens on the app as that answer (an empty or junk
    /// frame would leave the app without the result of its command).
    #[test]
    fn a_request_is_role_checked_and_its_answer_opens_on_the_app() {
        let now = Instant::from_millis(1_000);
        let (mut lock_s, mut app_s) = sessions(now);
        let owner = Principal::Owner {
            key_id: KeyId([2; 8]),
            admin_user: 1,
        };
        let f = seal_request(&mut app_s, now, &Request::ListUsers).expect("seal");
        assert_eq!(
            open_request(&mut lock_s, &owner, now, None, &f),
            Ok(Request::ListUsers)
        );
        let r = seal_response(&mut lock_s, now, &Response::Ok).expect("seal");
        assert_eq!(open_response(&mut app_s, now, &r), Ok(Response::Ok));
        let f = seal_request(&mut app_s, now, &Request::ListUsers).expect("seal");
        assert_eq!(
            open_request(&mut lock_s, &guest(0, i64::MAX), now, Some(WallTime(1)), &f),
            Err(RequestError::Authz(AuthzError::Forbidden(
                Request::ListUsers.name()
            )))
        );
        let r = seal_response(&mut lock_s, now, &Response::Ok).expect("seal");
        assert_eq!(open_response(&mut app_s, now, &r), Ok(Response::Ok));
    }
}
