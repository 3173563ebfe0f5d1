//! A line on the control socket (`docs/control-socket.md`): one JSON
//! object, at most `MAX_LINE` bytes, into `control::Request`.
//!
//! Invariants: a request that parses serialises back to JSON that parses
//! to the same request (decode(encode(x)) == x); a line with an unknown
//! field or command never parses.
#![no_main]

use latchd::control::{Request, MAX_LINE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_LINE {
        return; // refused before parsing
    }
    // The server reads UTF-8 lines (`LinesCodec`).
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(r) = serde_json::from_str::<Request>(line) else {
        return;
    };
    let json = serde_json::to_string(&r).expect("a request serialises");
    let again: Request = serde_json::from_str(&json).expect("its own JSON parses");
    assert_eq!(again, r, "decode(encode(x)) != x");
    // Every key of the object the lock accepted is a field it knows:
    // re-serialised, nothing is lost but defaults.
    let theirs: serde_json::Value = serde_json::from_str(line).expect("parsed once");
    let ours: serde_json::Value = serde_json::from_str(&json).expect("own JSON");
    if let (Some(theirs), Some(ours)) = (theirs.as_object(), ours.as_object()) {
        // Found by this target: serde ignored `deny_unknown_fields` for
        // the unit commands of the internally tagged enum; they are empty
        // struct variants now, so every command is checked.
        for k in theirs.keys() {
            assert!(ours.contains_key(k), "accepted an unknown field {k:?}");
        }
    }
});
