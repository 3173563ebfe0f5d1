//! The two files the daemon reads at start: `latchd.toml` and the board
//! file (TOML written by a product team or an installer), into
//! `Config::parse` and `BoardConfig::parse`.
//!
//! Invariants: parsing is deterministic; a file that loads validates
//! again; and an error message never shows a secret of the file — the
//! value of any `password` or `verification_code` key (errors go to the
//! journal and `latchd --check-config` output).
#![no_main]

use std::path::Path;

use latchd::board::board_file::BoardConfig;
use latchd::config::Config;
use libfuzzer_sys::fuzz_target;

/// What latchd's messages put in place of a secret (src/config.rs).
const MASK: &str = "[secret]";
/// The message latchd gives when masks alone cannot hide the secrets.
const FALLBACK: &str = "the file has an error (not shown: it would show a secret)";

/// The values of `password = "…"` / `verification_code = "…"` lines, found
/// textually so a file that does not parse still has them.
fn secrets(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches(['"', '\'']);
        if !(key.ends_with("password") || key.ends_with("verification_code")) {
            continue;
        }
        let value = value.trim().trim_matches(['"', '\'']);
        // Short values would be found in any message by chance.
        if value.len() >= 8 {
            out.push(value);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return; // read_to_string refuses it first
    };
    let path = Path::new("/etc/latchd/fuzz.toml");
    if which & 1 == 0 {
        let first = Config::parse(text, path);
        let again = Config::parse(text, path);
        match (&first, &again) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "parsing is not deterministic");
                a.validate(path).expect("a loaded file validates again");
            }
            (Err(e), Err(f)) => {
                let msg = e.to_string();
                assert_eq!(msg, f.to_string(), "parsing is not deterministic");
                // The names of the secret keys may be in the message (it
                // says which key is wrong); a value made of part of such a
                // name is not shown by that.
                // Nor is one made of the frame the error puts around
                // the file's words: its path, which the file did not
                // choose (found: `password =config file /etc/latchd/…`).
                // Nor by the daemon's own words for a hidden secret: the
                // mask `[secret]` (a password `secret]` is in every one)
                // and the message that replaces one whose masks spell a
                // secret (found in CI's run: passwords `c[secret]` and
                // `olumn` turned "line 16, column" into "line 16, c[secret]").
                let shown = msg
                    .trim_start_matches(&format!("config file {}: ", path.display()))
                    .replace(FALLBACK, "")
                    .replace("verification_code", "")
                    .replace("password", "");
                for s in secrets(text) {
                    assert!(
                        MASK.contains(s) || !shown.contains(s),
                        "the error shows a secret: {msg}"
                    );
                }
            }
            _ => panic!("parsing is not deterministic"),
        }
    } else {
        match BoardConfig::parse(text, path) {
            Ok(cfg) => {
                assert_eq!(BoardConfig::parse(text, path).ok(), Some(cfg.clone()));
                // Every signal has a line of its own.
                let lines = cfg.lines();
                let mut seen = std::collections::BTreeSet::new();
                for (key, line) in &lines {
                    assert!(
                        !line.name.trim().is_empty(),
                        "`{key}` has an empty line name"
                    );
                    assert!(
                        seen.insert((line.name.clone(), line.chip.clone())),
                        "`{key}` shares its line with another signal"
                    );
                }
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
            }
        }
    }
});
