//! The touch keypad as a kernel input device (evdev), and its lights.
//!
//! Capacitive keypad controllers (TTP229, MPR121, CY8CMBR, …) have kernel
//! drivers that expose the keys as an `/dev/input/eventN` device; the board
//! file maps kernel key codes (`KEY_1`, `KEY_ENTER`, …) to the lock's keys.
//! Key-downs become `Input::Key` at once; a key still down after
//! `hold_ms` also becomes `Input::KeyHeld` (B-3.4). The first touch of a
//! sleeping keypad is also a `Touch` (B-3.2). Autorepeat events (value 2)
//! are ignored: a held key is reported once, by the hold timer.
//!
//! Lights: the backlight is a GPIO line; per-key LEDs, where the board has
//! them, are kernel LED-class devices (`/sys/class/leds/<name>/brightness`,
//! blinking with the `timer` trigger).
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::core::types::Key;

#[derive(Debug, thiserror::Error)]
pub enum KeypadError {
    #[error("keypad.keymap: `{0}` is not a kernel key code name")]
    UnknownCode(String),
    #[error("keypad.keymap.{code}: `{key}` is not a lock key")]
    UnknownKey { code: String, key: String },
    #[error("cannot open keypad device {path}: {source}; check `keypad.device`")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keypad LED {path}: {source}")]
    Led {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A lock key from its board-file name.
pub fn lock_key(name: &str) -> Option<Key> {
    Some(match name {
        "back" => Key::Back,
        "confirm" => Key::Confirm,
        "away" => Key::Away,
        "doorbell" => Key::Doorbell,
        d if d.len() == 1 => Key::Digit(d.chars().next()?.to_digit(10)? as u8),
        _ => return None,
    })
}

/// Kernel key code → lock key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMap(HashMap<u16, Key>);

impl KeyMap {
    pub fn from_config(keymap: &BTreeMap<String, String>) -> Result<Self, KeypadError> {
        let mut m = HashMap::new();
        for (code, key) in keymap {
            let c =
                evdev::Key::from_str(code).map_err(|_| KeypadError::UnknownCode(code.clone()))?;
            let k = lock_key(key).ok_or_else(|| KeypadError::UnknownKey {
                code: code.clone(),
                key: key.clone(),
            })?;
            m.insert(c.code(), k);
        }
        Ok(KeyMap(m))
    }

    pub fn get(&self, code: u16) -> Option<Key> {
        self.0.get(&code).copied()
    }
}

/// A key transition from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEdge {
    Down(Key),
    Up(Key),
}

/// Turn one evdev event into a key edge (keys only; repeats ignored).
pub fn key_edge(map: &KeyMap, ev: &evdev::InputEvent) -> Option<KeyEdge> {
    if ev.event_type() != evdev::EventType::KEY {
        return None;
    }
    let key = map.get(ev.code())?;
    match ev.value() {
        1 => Some(KeyEdge::Down(key)),
        0 => Some(KeyEdge::Up(key)),
        _ => None,
    }
}

/// Open the keypad device as a tokio event stream.
pub fn open(path: &Path) -> Result<evdev::EventStream, KeypadError> {
    evdev::Device::open(path)
        .and_then(|d| d.into_event_stream())
        .map_err(|source| KeypadError::Open {
            path: path.to_owned(),
            source,
        })
}

/// One kernel LED-class LED.
#[derive(Debug, Clone)]
pub struct ClassLed {
    dir: PathBuf,
}

impl ClassLed {
    pub fn new(dir: PathBuf) -> Self {
        ClassLed { dir }
    }

    fn write(&self, file: &str, value: &str) -> Result<(), KeypadError> {
        let path = self.dir.join(file);
        std::fs::write(&path, value).map_err(|source| KeypadError::Led { path, source })
    }

    pub fn set(&self, on: bool) -> Result<(), KeypadError> {
        self.write("trigger", "none")?;
        self.write("brightness", if on { "1" } else { "0" })
    }

    /// Blink with the kernel's timer trigger (no wake-ups in latchd).
    pub fn blink(&self, on_ms: u32, off_ms: u32) -> Result<(), KeypadError> {
        self.write("trigger", "timer")?;
        self.write("delay_on", &on_ms.to_string())?;
        self.write("delay_off", &off_ms.to_string())
    }

    /// Play `pattern` (the kernel's pattern trigger: `brightness duration`
    /// pairs, repeated until the trigger changes; no wake-ups in latchd).
    pub fn pattern(&self, pattern: &str) -> Result<(), KeypadError> {
        self.write("trigger", "pattern")?;
        self.write("repeat", "-1")?;
        self.write("pattern", pattern)
    }
}

/// B-1.4: a user number is shown by lighting its digits' keys one after
/// the other, then a pause, over and over while the number is shown.
/// One slot per digit: its key on for [`DIGIT_ON_MS`], then all off for
/// [`DIGIT_GAP_MS`] (so "0 0 3" lights 0 twice, visibly), then
/// [`NUMBER_PAUSE_MS`] dark. Each key gets the whole cycle, so the keys
/// started together stay in step. A step needs a zero-length pair after
/// each level (the kernel fades between consecutive pairs otherwise).
pub fn digit_patterns(digits: &[u8]) -> BTreeMap<u8, String> {
    let mut patterns = BTreeMap::new();
    for &d in digits {
        patterns.entry(d).or_insert_with(|| {
            let mut p = Vec::new();
            for &shown in digits {
                let level = u8::from(shown == d);
                p.push(format!("{level} {DIGIT_ON_MS} {level} 0"));
                p.push(format!("0 {DIGIT_GAP_MS} 0 0"));
            }
            p.push(format!("0 {NUMBER_PAUSE_MS} 0 0"));
            p.join(" ")
        });
    }
    patterns
}

/// How long each digit of a shown number stays lit.
pub const DIGIT_ON_MS: u32 = 600;
/// Dark between two digits.
pub const DIGIT_GAP_MS: u32 = 300;
/// Dark after the last digit, before the number starts again.
pub const NUMBER_PAUSE_MS: u32 = 1500;

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> KeyMap {
        let mut m = BTreeMap::new();
        m.insert("KEY_1".to_string(), "1".to_string());
        m.insert("KEY_ENTER".to_string(), "confirm".to_string());
        KeyMap::from_config(&m).unwrap()
    }

    #[test]
    fn maps_codes_and_ignores_repeats_and_other_events() {
        let m = map();
        let down = evdev::InputEvent::new(evdev::EventType::KEY, evdev::Key::KEY_1.code(), 1);
        let rep = evdev::InputEvent::new(evdev::EventType::KEY, evdev::Key::KEY_1.code(), 2);
        let up = evdev::InputEvent::new(evdev::EventType::KEY, evdev::Key::KEY_ENTER.code(), 0);
        let other = evdev::InputEvent::new(evdev::EventType::KEY, evdev::Key::KEY_Z.code(), 1);
        let syn = evdev::InputEvent::new(evdev::EventType::SYNCHRONIZATION, 0, 0);
        assert_eq!(key_edge(&m, &down), Some(KeyEdge::Down(Key::Digit(1))));
        assert_eq!(key_edge(&m, &rep), None);
        assert_eq!(key_edge(&m, &up), Some(KeyEdge::Up(Key::Confirm)));
        assert_eq!(key_edge(&m, &other), None);
        assert_eq!(key_edge(&m, &syn), None);
    }

    #[test]
    fn bad_keymaps_are_named() {
        let mut m = BTreeMap::new();
        m.insert("KEY_NOPE".to_string(), "1".to_string());
        assert!(
            matches!(KeyMap::from_config(&m), Err(KeypadError::UnknownCode(c)) if c == "KEY_NOPE")
        );
        let mut m = BTreeMap::new();
        m.insert("KEY_1".to_string(), "11".to_string());
        assert!(matches!(
            KeyMap::from_config(&m),
            Err(KeypadError::UnknownKey { .. })
        ));
    }

    #[test]
    fn class_leds_write_sysfs_files() {
        let dir = tempfile::tempdir().unwrap();
        let led = ClassLed::new(dir.path().to_owned());
        led.set(true).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("brightness")).unwrap(),
            "1"
        );
        led.blink(100, 200).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("trigger")).unwrap(),
            "timer"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("delay_off")).unwrap(),
            "200"
        );
        led.pattern("1 600 1 0").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("trigger")).unwrap(),
            "pattern"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pattern")).unwrap(),
            "1 600 1 0"
        );
    }

    #[test]
    fn a_user_number_lights_its_digits_one_after_the_other() {
        // User 003: key 0 in the first two slots, key 3 in the third.
        let p = digit_patterns(&[0, 0, 3]);
        assert_eq!(p.len(), 2);
        let on = format!("1 {DIGIT_ON_MS} 1 0");
        let off = format!("0 {DIGIT_ON_MS} 0 0");
        let gap = format!("0 {DIGIT_GAP_MS} 0 0");
        let pause = format!("0 {NUMBER_PAUSE_MS} 0 0");
        assert_eq!(p[&0], [&*on, &gap, &on, &gap, &off, &gap, &pause].join(" "));
        assert_eq!(
            p[&3],
            [&*off, &gap, &off, &gap, &on, &gap, &pause].join(" ")
        );
        // Every key's cycle is as long as the others', so they stay in step.
        let total = |s: &str| -> u32 {
            s.split(' ')
                .collect::<Vec<_>>()
                .chunks(2)
                .map(|c| c[1].parse::<u32>().unwrap())
                .sum()
        };
        assert_eq!(total(&p[&0]), total(&p[&3]));
        assert!(digit_patterns(&[]).is_empty());
    }
}
