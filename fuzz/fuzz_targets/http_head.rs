//! What any TCP client can send the video server before it is
//! authenticated: the request head (up to `MAX_HEAD` bytes, ended by a
//! blank line) and its parser.
//!
//! Invariants: every part of a parsed request is a slice of the head
//! (nothing decoded, copied or echoed); the method, path and tokens hold
//! no CR, LF or space (so none can smuggle a header or a second request);
//! tokens carry no surrounding whitespace; only HTTP/1.0 and 1.1 parse.
#![no_main]

use latchd::video::http::{find_blank_line, parse_head, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

fn inside(part: &str, head: &[u8]) -> bool {
    let (p, h) = (part.as_ptr() as usize, head.as_ptr() as usize);
    p >= h && p + part.len() <= h + head.len()
}

fn check(head: &[u8]) {
    let Ok(r) = parse_head(head) else {
        return;
    };
    let text = std::str::from_utf8(head).expect("parsed, so UTF-8");
    let line = text.split("\r\n").next().expect("a request line");
    assert!(
        line.ends_with(" HTTP/1.1") || line.ends_with(" HTTP/1.0"),
        "{line:?}"
    );
    for part in [Some(r.method), Some(r.path), r.query_token, r.bearer]
        .into_iter()
        .flatten()
    {
        assert!(inside(part, head), "{part:?} is not a slice of the head");
        assert!(!part.contains(['\r', '\n']), "{part:?} holds a line break");
    }
    for part in [r.method, r.path] {
        assert!(!part.contains(' '), "{part:?} holds a space");
    }
    if let Some(b) = r.bearer {
        assert_eq!(b, b.trim(), "bearer token keeps whitespace");
    }
    if let Some(t) = r.query_token {
        assert!(!t.contains('&'), "query token runs into the next parameter");
    }
}

fuzz_target!(|data: &[u8]| {
    // As the server reads it: the head ends at the first blank line
    // within MAX_HEAD bytes, or the request is refused.
    let window = &data[..data.len().min(MAX_HEAD)];
    if let Some(end) = find_blank_line(window) {
        assert!(end + 4 <= MAX_HEAD);
        check(&window[..end]);
    }
    // And the parser on its own, on any bytes.
    check(data);
});
