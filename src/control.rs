//! The control socket's protocol: one JSON object per line each way
//! (`docs/control-socket.md` is the reference). Shared by the server
//! (`daemon/control.rs`, sim board only) and its client (`latchctl sim`,
//! tests), so neither has to know the other.
use serde::{Deserialize, Serialize};

/// Longest request line accepted; a longer one is refused and the
/// connection closed (a client that sends megabytes is broken).
pub const MAX_LINE: usize = 64 * 1024;
/// Most events one `events` request returns.
pub const MAX_EVENTS: usize = 1000;

/// One request line. `cmd` names the command; other fields are its
/// arguments. Unknown fields are refused. Commands without arguments are
/// empty struct variants (`Touch {}`), not unit variants: serde ignores
/// `deny_unknown_fields` for the unit variants of an internally tagged
/// enum, so `{"cmd":"key","x":1}` parsed (found by the control_json
/// fuzzer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Press keys: `0-9`, `✓`/`#`, `↩`/`*`, `a` away, `d` doorbell.
    Press {
        keys: String,
    },
    /// Touch the keypad (wakes it; manual face recognition).
    Touch {},
    /// Hold one key until the keypad flashes (B-3.4 holds `0`).
    Hold {
        key: String,
    },
    /// The SET button; `long` = held (pairing mode).
    Set {
        #[serde(default)]
        long: bool,
    },
    /// The back panel's electronic lock button.
    LockButton {},
    /// Turn the inside handle (retracts the bolt from inside).
    Handle {},
    /// Turn the mechanical key.
    Key {},
    Door {
        open: bool,
    },
    /// Open (`true`) or close the front panel: the tamper switch.
    Tamper {
        open: bool,
    },
    /// Set the battery charge and/or USB-C emergency power.
    Battery {
        #[serde(default)]
        percent: Option<u8>,
        #[serde(default)]
        external: Option<bool>,
    },
    /// Person N puts a finger on the reader.
    Finger {
        person: u32,
    },
    /// Person N holds a palm over the window.
    Palm {
        person: u32,
    },
    /// Person N steps in front of the camera; `null` = they leave.
    Face {
        person: Option<u32>,
    },
    /// Make the next `moves` motor moves jam.
    Jam {
        moves: u32,
    },
    /// Wait until the motor is idle and the engine has handled everything.
    Settle {},
    /// Engine status, daemon counters and the sim board's state.
    Status {},
    /// The last `n` prompts (default 10).
    Prompts {
        #[serde(default)]
        n: Option<usize>,
    },
    /// The last `n` logged events, oldest first (default 10, at most 1000).
    Events {
        #[serde(default)]
        n: Option<usize>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_unknown_fields_are_refused() {
        let r: Request = serde_json::from_str(r#"{"cmd":"press","keys":"123456✓"}"#).unwrap();
        assert_eq!(
            r,
            Request::Press {
                keys: "123456✓".into()
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"face","person":null}"#).unwrap();
        assert_eq!(r, Request::Face { person: None });
        let r: Request = serde_json::from_str(r#"{"cmd":"set"}"#).unwrap();
        assert_eq!(r, Request::Set { long: false });
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"finger","person":3,"x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"finger","person":-3}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"unlock"}"#).is_err());
        for cmd in ["touch", "lock_button", "handle", "key", "settle", "status"] {
            let line = format!(r#"{{"cmd":"{cmd}"}}"#);
            let r: Request = serde_json::from_str(&line).unwrap();
            assert_eq!(serde_json::to_string(&r).unwrap(), line);
            let extra = format!(r#"{{"cmd":"{cmd}","x":1}}"#);
            assert!(serde_json::from_str::<Request>(&extra).is_err(), "{extra}");
        }
        assert!(serde_json::from_str::<Request>(r#"{"keys":"1"}"#).is_err());
    }
}
