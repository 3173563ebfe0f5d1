//! Values that must never reach a log line, a `Debug` dump or a panic
//! message: passcode digits typed at the keypad or sent by an app, duress
//! codes among them (issue 14 item 5). A derived `Debug` on any type that
//! holds one — an `AppCommand`, the engine's keypad — prints `‹redacted›`
//! in its place, so a `?cmd` added to a trace line some day cannot put a
//! code in the journal technicians read. The value is wiped from memory
//! when dropped, as `Zeroizing` does.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, Zeroizing};

/// A secret `T`: derefs to it, wiped on drop, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Redacted<T: Zeroize>(Zeroizing<T>);

impl<T: Zeroize> Redacted<T> {
    pub fn new(value: T) -> Redacted<T> {
        Redacted(Zeroizing::new(value))
    }

    /// The value, still wiped on drop.
    pub fn into_inner(self) -> Zeroizing<T> {
        self.0
    }
}

impl<T: Zeroize> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("‹redacted›")
    }
}

impl<T: Zeroize> Deref for Redacted<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> DerefMut for Redacted<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl From<&str> for Redacted<String> {
    fn from(s: &str) -> Self {
        Redacted::new(s.to_owned())
    }
}

impl From<String> for Redacted<String> {
    fn from(s: String) -> Self {
        Redacted::new(s)
    }
}

impl<T: Zeroize + Serialize> Serialize for Redacted<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de, T: Zeroize + Deserialize<'de>> Deserialize<'de> for Redacted<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Redacted::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let code: Redacted<String> = "975318".into();
        assert_eq!(format!("{code:?}"), "‹redacted›");
        assert_eq!(
            format!("{:#?}", Some(code.clone())),
            "Some(\n    ‹redacted›,\n)"
        );
        assert_eq!(code.as_str(), "975318");
    }

    /// The types that carry typed or sent digits print none of them, so a
    /// `?cmd` or `{keypad:?}` in a trace line stays harmless.
    #[test]
    fn commands_and_the_keypad_print_no_digits() {
        use crate::core::types::UserNumber;
        use crate::core::AppCommand;
        let user = UserNumber::new(1).unwrap();
        for cmd in [
            AppCommand::SetDuressPasscode {
                user,
                digits: "975318".into(),
            },
            AppCommand::SetPasscode {
                user,
                digits: "975318".into(),
            },
            AppCommand::UnlockWithCode {
                code: Some("975318".into()),
                relock_after: None,
            },
        ] {
            let shown = format!("{cmd:?}");
            assert!(!shown.contains("975318"), "{shown}");
            assert!(shown.contains("‹redacted›"), "{shown}");
        }
        let mut keypad = crate::core::engine::Keypad::default();
        keypad.buffer.extend_from_slice(&[9, 7, 5, 3, 1, 8]);
        let shown = format!("{keypad:?}");
        assert!(!shown.contains("9, 7, 5"), "{shown}");
    }

    #[test]
    fn serde_is_transparent() {
        let code: Redacted<String> = "975318".into();
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, "\"975318\"");
        let back: Redacted<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, code);
    }
}
