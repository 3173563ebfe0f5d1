//! The board file: how one product's hardware is wired, in TOML.
//!
//! A product team ports latchd to their SoC by writing one of these (see
//! `config/board-example.toml`, where every key is documented). Signals are
//! named by GPIO *line name* (the device tree's `gpio-line-names`), never by
//! number, so the same file survives a kernel that renumbers chips; a line
//! may be pinned to one chip by its label when names repeat.
//!
//! Loading is two steps, each with errors that name the key to fix:
//! [`BoardConfig::parse`] checks the file on its own (types, unknown keys,
//! ranges, duplicates), and [`BoardConfig::check_system`] checks it against
//! this machine (every line name found, every device node present).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::board::drivers::battery::DischargeCurve;

#[derive(Debug, thiserror::Error)]
pub enum BoardConfigError {
    #[error("cannot read board file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("board file {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("board file: `{key}` {problem}")]
    Invalid { key: String, problem: String },
    #[error("board file: gpio line `{line}` not found on any chip; check `{key}` (line names come from the device tree's gpio-line-names; `gpioinfo` lists them)")]
    LineNotFound { key: String, line: String },
    #[error(
        "board file: gpio line `{line}` is not on chip `{chip}` (it is on {found}); check `{key}`"
    )]
    LineOnOtherChip {
        key: String,
        line: String,
        chip: String,
        found: String,
    },
    #[error("board file: device {path} for `{key}` does not exist; check the path and that its driver is loaded")]
    DeviceMissing { key: String, path: PathBuf },
}

/// One GPIO line, by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The line's name in `gpio-line-names`.
    pub name: String,
    /// Only look on the chip with this label (`gpiodetect` shows labels).
    #[serde(default)]
    pub chip: Option<String>,
    /// The signal is asserted when the line is low.
    #[serde(default)]
    pub active_low: bool,
    /// Kernel debounce for switches, in milliseconds (0 = none).
    #[serde(default)]
    pub debounce_ms: u32,
}

/// Inputs: switches and sensors. Each raises an input to the engine on
/// its edges.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    pub bolt_extended: Line,
    pub bolt_retracted: Line,
    pub door_closed: Line,
    pub tamper: Line,
    pub set_button: Line,
    pub lock_button: Line,
    pub inside_handle: Line,
    pub mechanical_key: Line,
    pub keypad_wake: Line,
    pub external_power: Line,
}

/// Outputs driven by latchd.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outputs {
    pub motor_in1: Line,
    pub motor_in2: Line,
    pub keypad_backlight: Line,
    pub ir_illuminator: Line,
    pub buzzer: Line,
    pub low_battery_led: Line,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adc {
    /// spidev node of the MCP3008-class converter.
    pub spi_device: PathBuf,
    #[serde(default = "default_spi_hz")]
    pub spi_hz: u32,
    /// Reference voltage of the converter, mV.
    pub vref_mv: u32,
    pub motor_current_channel: u8,
    /// Motor current per millivolt at the ADC pin (shunt × amplifier).
    pub motor_ma_per_mv: f32,
    pub battery_channel: u8,
    /// Pack volts per ADC-pin volt (the resistor divider).
    pub battery_divider: f32,
}

fn default_spi_hz() -> u32 {
    1_000_000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Motor {
    pub max_travel_ms: u32,
    pub stall_ma: u32,
    pub stall_after_ms: u32,
    pub inrush_ms: u32,
    pub retry_pause_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Battery {
    /// (pack millivolts, percent) points, rising.
    pub curve: DischargeCurve,
    /// How often to sample the pack voltage, seconds.
    #[serde(default = "default_battery_period")]
    pub sample_period_s: u32,
}

fn default_battery_period() -> u32 {
    60
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keypad {
    /// evdev node of the touch keypad (prefer a stable
    /// `/dev/input/by-path/...` link).
    pub device: PathBuf,
    /// Kernel key code name (`KEY_1`, `KEY_ENTER`, …) → lock key
    /// (`"0"`–`"9"`, `"back"`, `"confirm"`, `"away"`, `"doorbell"`).
    pub keymap: BTreeMap<String, String>,
    /// How long a key must be held to count as held (B-3.4), ms.
    #[serde(default = "default_hold_ms")]
    pub hold_ms: u32,
    /// LED class directory per key (`/sys/class/leds/<name>`), optional:
    /// boards without per-key LEDs light the backlight only.
    #[serde(default)]
    pub key_leds: BTreeMap<String, PathBuf>,
}

fn default_hold_ms() -> u32 {
    1500
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Voice {
    /// ALSA PCM name (`default`, `hw:0,0`, `plughw:0,0`, …).
    pub pcm: String,
    /// Directory of `<prompt>.wav` files.
    pub assets: PathBuf,
    /// 0–100.
    #[serde(default = "default_volume")]
    pub volume: u8,
}

fn default_volume() -> u8 {
    80
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uart {
    pub path: PathBuf,
    pub baud: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// `/dev/videoN`, or the card name V4L2 reports (`v4l2-ctl -D`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub card: Option<String>,
    pub width: u32,
    pub height: u32,
}

/// Which GPIO provider drives the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpioProvider {
    /// The Linux GPIO character device (any SoC).
    Cdev,
    /// A Raspberry Pi through rppal (BCM numbers in `name` as `GPIO<n>`).
    Rppal,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardConfig {
    /// A name for diagnostics (`"acme-l1 rev B"`).
    pub model: String,
    #[serde(default = "default_provider")]
    pub gpio_provider: GpioProvider,
    pub inputs: Inputs,
    pub outputs: Outputs,
    pub adc: Adc,
    pub motor: Motor,
    pub battery: Battery,
    pub keypad: Keypad,
    pub voice: Voice,
    pub fingerprint: Uart,
    pub palm: Uart,
    pub camera: Camera,
}

/// The BCM number of a Raspberry Pi line name, `GPIO<n>` (0–53 on the
/// BCM283x/2711), the names the rppal provider takes.
pub fn bcm_number(name: &str) -> Option<u8> {
    let n: u8 = name.strip_prefix("GPIO")?.parse().ok()?;
    (n <= 53).then_some(n)
}

fn default_provider() -> GpioProvider {
    GpioProvider::Cdev
}

const LOCK_KEYS: [&str; 14] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "back", "confirm", "away", "doorbell",
];

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> BoardConfigError {
    BoardConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

impl BoardConfig {
    pub fn load(path: &Path) -> Result<Self, BoardConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| BoardConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and check the file on its own.
    pub fn parse(text: &str, path: &Path) -> Result<Self, BoardConfigError> {
        let cfg: BoardConfig = toml::from_str(text).map_err(|e| BoardConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every line with the key that names it.
    pub fn lines(&self) -> Vec<(String, &Line)> {
        let i = &self.inputs;
        let o = &self.outputs;
        [
            ("inputs.bolt_extended", &i.bolt_extended),
            ("inputs.bolt_retracted", &i.bolt_retracted),
            ("inputs.door_closed", &i.door_closed),
            ("inputs.tamper", &i.tamper),
            ("inputs.set_button", &i.set_button),
            ("inputs.lock_button", &i.lock_button),
            ("inputs.inside_handle", &i.inside_handle),
            ("inputs.mechanical_key", &i.mechanical_key),
            ("inputs.keypad_wake", &i.keypad_wake),
            ("inputs.external_power", &i.external_power),
            ("outputs.motor_in1", &o.motor_in1),
            ("outputs.motor_in2", &o.motor_in2),
            ("outputs.keypad_backlight", &o.keypad_backlight),
            ("outputs.ir_illuminator", &o.ir_illuminator),
            ("outputs.buzzer", &o.buzzer),
            ("outputs.low_battery_led", &o.low_battery_led),
        ]
        .into_iter()
        .map(|(k, l)| (k.to_string(), l))
        .collect()
    }

    fn validate(&self) -> Result<(), BoardConfigError> {
        let mut seen: BTreeMap<(&str, Option<&str>), String> = BTreeMap::new();
        for (key, line) in self.lines() {
            if line.name.trim().is_empty() {
                return Err(invalid(format!("{key}.name"), "is empty"));
            }
            if line.debounce_ms > 1000 {
                return Err(invalid(
                    format!("{key}.debounce_ms"),
                    format!(
                        "is {} ms; a switch needs at most a few tens",
                        line.debounce_ms
                    ),
                ));
            }
            if let Some(other) = seen.insert((&line.name, line.chip.as_deref()), key.clone()) {
                return Err(invalid(
                    key,
                    format!("uses line `{}`, which `{other}` already uses", line.name),
                ));
            }
        }
        if key_outputs_have_debounce(self) {
            return Err(invalid(
                "outputs",
                "debounce_ms applies to inputs only; remove it from outputs",
            ));
        }
        let a = &self.adc;
        for (key, ch) in [
            ("adc.motor_current_channel", a.motor_current_channel),
            ("adc.battery_channel", a.battery_channel),
        ] {
            if ch > 7 {
                return Err(invalid(
                    key,
                    format!("is {ch}; an MCP3008 has channels 0-7"),
                ));
            }
        }
        if a.motor_current_channel == a.battery_channel {
            return Err(invalid(
                "adc.battery_channel",
                "is the same channel as adc.motor_current_channel",
            ));
        }
        if !(1000..=5500).contains(&a.vref_mv) {
            return Err(invalid(
                "adc.vref_mv",
                format!("is {}; expected 1000-5500", a.vref_mv),
            ));
        }
        for (key, v) in [
            ("adc.motor_ma_per_mv", a.motor_ma_per_mv),
            ("adc.battery_divider", a.battery_divider),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(
                    key,
                    format!("is {v}; it must be a positive number"),
                ));
            }
        }
        let m = &self.motor;
        if !(100..=10_000).contains(&m.max_travel_ms) {
            return Err(invalid(
                "motor.max_travel_ms",
                format!("is {}; expected 100-10000", m.max_travel_ms),
            ));
        }
        if m.inrush_ms >= m.max_travel_ms {
            return Err(invalid(
                "motor.inrush_ms",
                "must be shorter than motor.max_travel_ms",
            ));
        }
        if m.stall_ma == 0 {
            return Err(invalid("motor.stall_ma", "must be above 0"));
        }
        for (code, key) in &self.keypad.keymap {
            if !code.starts_with("KEY_") && !code.starts_with("BTN_") {
                return Err(invalid(
                    format!("keypad.keymap.{code}"),
                    "is not a kernel key code name (KEY_… or BTN_…)",
                ));
            }
            if !LOCK_KEYS.contains(&key.as_str()) {
                return Err(invalid(
                    format!("keypad.keymap.{code}"),
                    format!("maps to `{key}`; expected one of {}", LOCK_KEYS.join(", ")),
                ));
            }
        }
        for k in LOCK_KEYS {
            if !self.keypad.keymap.values().any(|v| v == k) {
                return Err(invalid(
                    "keypad.keymap",
                    format!("has no key code for `{k}`"),
                ));
            }
        }
        for k in self.keypad.key_leds.keys() {
            if !LOCK_KEYS.contains(&k.as_str()) {
                return Err(invalid(format!("keypad.key_leds.{k}"), "is not a lock key"));
            }
        }
        if self.voice.volume > 100 {
            return Err(invalid(
                "voice.volume",
                format!("is {}; expected 0-100", self.voice.volume),
            ));
        }
        for (key, u) in [("fingerprint", &self.fingerprint), ("palm", &self.palm)] {
            if !STANDARD_BAUDS.contains(&u.baud) {
                return Err(invalid(
                    format!("{key}.baud"),
                    format!("is {}; expected one of {STANDARD_BAUDS:?}", u.baud),
                ));
            }
        }
        if self.fingerprint.path == self.palm.path {
            return Err(invalid("palm.path", "is the same UART as fingerprint.path"));
        }
        if self.gpio_provider == GpioProvider::Rppal {
            if !cfg!(feature = "board-rpi") {
                return Err(invalid(
                    "gpio_provider",
                    "is \"rppal\", but latchd was built without the `board-rpi` feature; rebuild with --features board-rpi, or use \"cdev\"",
                ));
            }
            for (key, line) in self.lines() {
                if bcm_number(&line.name).is_none() {
                    return Err(invalid(
                        format!("{key}.name"),
                        format!("is `{}`; with gpio_provider = \"rppal\" lines are named GPIO0..GPIO53 (BCM numbers)", line.name),
                    ));
                }
            }
        }
        let c = &self.camera;
        if c.path.is_none() == c.card.is_none() {
            return Err(invalid("camera", "needs exactly one of `path` or `card`"));
        }
        if c.width == 0 || c.height == 0 || c.width > 4096 || c.height > 4096 {
            return Err(invalid("camera.width", "width and height must be 1-4096"));
        }
        Ok(())
    }

    /// Check the file against this machine: every named line on some chip
    /// (or on the chip given), every device node present. Names the key of
    /// the first thing missing.
    #[cfg(feature = "board-linux")]
    pub fn check_system(&self) -> Result<(), BoardConfigError> {
        if self.gpio_provider == GpioProvider::Cdev {
            for (key, line) in self.lines() {
                let found = gpiocdev::find_named_line(&line.name).ok_or_else(|| {
                    BoardConfigError::LineNotFound {
                        key: format!("{key}.name"),
                        line: line.name.clone(),
                    }
                })?;
                if let Some(want) = &line.chip {
                    let label = gpiocdev::chip::Chip::from_path(&found.chip)
                        .and_then(|c| c.info())
                        .map(|i| i.label)
                        .unwrap_or_default();
                    if &label != want {
                        return Err(BoardConfigError::LineOnOtherChip {
                            key: format!("{key}.chip"),
                            line: line.name.clone(),
                            chip: want.clone(),
                            found: if label.is_empty() {
                                found.chip.display().to_string()
                            } else {
                                label
                            },
                        });
                    }
                }
            }
        }
        let mut devices = vec![
            ("adc.spi_device", self.adc.spi_device.clone()),
            ("keypad.device", self.keypad.device.clone()),
            ("fingerprint.path", self.fingerprint.path.clone()),
            ("palm.path", self.palm.path.clone()),
            ("voice.assets", self.voice.assets.clone()),
        ];
        if let Some(p) = &self.camera.path {
            devices.push(("camera.path", p.clone()));
        }
        for (key, path) in devices {
            if !path.exists() {
                return Err(BoardConfigError::DeviceMissing {
                    key: key.into(),
                    path,
                });
            }
        }
        Ok(())
    }

    /// Motor tuning as the driver takes it.
    pub fn motor_params(&self) -> crate::board::drivers::motor::MotorParams {
        use core::time::Duration;
        let m = &self.motor;
        crate::board::drivers::motor::MotorParams {
            max_travel: Duration::from_millis(m.max_travel_ms.into()),
            stall_milliamps: m.stall_ma,
            stall_after: Duration::from_millis(m.stall_after_ms.into()),
            inrush: Duration::from_millis(m.inrush_ms.into()),
            retry_pause: Duration::from_millis(m.retry_pause_ms.into()),
            sample_period: Duration::from_millis(5),
        }
    }
}

fn key_outputs_have_debounce(cfg: &BoardConfig) -> bool {
    let o = &cfg.outputs;
    [
        &o.motor_in1,
        &o.motor_in2,
        &o.keypad_backlight,
        &o.ir_illuminator,
        &o.buzzer,
        &o.low_battery_led,
    ]
    .iter()
    .any(|l| l.debounce_ms != 0)
}

const STANDARD_BAUDS: [u32; 8] = [9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600];

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../config/board-example.toml");

    fn parse(text: &str) -> Result<BoardConfig, BoardConfigError> {
        BoardConfig::parse(text, Path::new("board.toml"))
    }

    #[test]
    fn the_example_board_file_is_valid() {
        let cfg = parse(EXAMPLE).unwrap();
        assert_eq!(cfg.lines().len(), 16);
        assert_eq!(cfg.battery.curve.percent(8400), 100);
    }

    /// Each malformed board file gives the error that names its key.
    #[test]
    fn malformed_board_files_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            // (text to replace, replacement, expected in the error)
            ("model = ", "modle = ", "unknown field `modle`"),
            (
                "name = \"BOLT_EXT\"",
                "name = \"\"",
                "inputs.bolt_extended.name",
            ),
            (
                "name = \"DOOR\"",
                "name = \"BOLT_EXT\"",
                "which `inputs.bolt_extended` already uses",
            ),
            (
                "\"TAMPER\", active_low = true, debounce_ms = 10",
                "\"TAMPER\", active_low = true, debounce_ms = 5000",
                "inputs.tamper.debounce_ms",
            ),
            (
                "motor_current_channel = 0",
                "motor_current_channel = 9",
                "adc.motor_current_channel",
            ),
            (
                "battery_channel = 1",
                "battery_channel = 0",
                "adc.battery_channel",
            ),
            ("vref_mv = 3300", "vref_mv = 33", "adc.vref_mv"),
            (
                "battery_divider = 4.0",
                "battery_divider = -1.0",
                "adc.battery_divider",
            ),
            (
                "max_travel_ms = 1500",
                "max_travel_ms = 50",
                "motor.max_travel_ms",
            ),
            ("stall_ma = 800", "stall_ma = 0", "motor.stall_ma"),
            (
                "KEY_ENTER = \"confirm\"",
                "KEY_ENTER = \"open\"",
                "keypad.keymap.KEY_ENTER",
            ),
            (
                "KEY_ENTER = \"confirm\"",
                "ENTER = \"confirm\"",
                "keypad.keymap.ENTER",
            ),
            (
                "KEY_ENTER = \"confirm\"\n",
                "",
                "has no key code for `confirm`",
            ),
            ("volume = 80", "volume = 180", "voice.volume"),
            ("baud = 57600", "baud = 12345", "fingerprint.baud"),
            (
                "path = \"/dev/ttyS2\"",
                "path = \"/dev/ttyS1\"",
                "palm.path",
            ),
            (
                "card = \"vivid\"",
                "path = \"/dev/video0\"\ncard = \"vivid\"",
                "exactly one of",
            ),
            ("width = 640", "width = 0", "camera.width"),
            ("[6000, 0],", "[9000, 0],", "battery curve"),
            (
                "gpio_provider = \"cdev\"",
                "gpio_provider = \"sysfs\"",
                "unknown variant `sysfs`",
            ),
            (
                "stall_after_ms = 60",
                "stall_after_ms = \"60\"",
                "invalid type",
            ),
        ];
        for (from, to, want) in cases {
            assert!(EXAMPLE.contains(from), "example lacks {from:?}");
            let text = EXAMPLE.replacen(from, to, 1);
            let err = parse(&text).expect_err(&format!("{from:?} -> {to:?} should fail"));
            let msg = err.to_string();
            assert!(
                msg.contains(want),
                "{from:?} -> {to:?}: `{msg}` lacks `{want}`"
            );
        }
    }

    #[test]
    fn line_names_are_bcm_numbers() {
        assert_eq!(bcm_number("GPIO17"), Some(17));
        assert_eq!(bcm_number("GPIO0"), Some(0));
        assert_eq!(bcm_number("GPIO54"), None);
        assert_eq!(bcm_number("MOTOR_IN1"), None);
        assert_eq!(bcm_number("GPIO"), None);
    }

    /// A Raspberry Pi is the Linux board with the rppal provider: its
    /// board file names BCM lines, and a build without `board-rpi` says
    /// so at load, naming the key.
    #[test]
    fn the_rppal_provider_takes_bcm_line_names() {
        let mut pi = EXAMPLE.replacen("gpio_provider = \"cdev\"", "gpio_provider = \"rppal\"", 1);
        for (i, (_, line)) in parse(EXAMPLE).unwrap().lines().into_iter().enumerate() {
            // BCM 2.. upwards: one Pi pin per line.
            let bcm = i + 2;
            pi = pi.replacen(
                &format!("name = \"{}\"", line.name),
                &format!("name = \"GPIO{bcm}\""),
                1,
            );
        }
        let parsed = parse(&pi);
        if cfg!(feature = "board-rpi") {
            let cfg = parsed.expect("a Pi board file");
            assert_eq!(cfg.gpio_provider, GpioProvider::Rppal);
            assert_eq!(cfg.inputs.bolt_extended.name, "GPIO2");
            let bad = pi.replacen("name = \"GPIO2\"", "name = \"BOLT_EXT\"", 1);
            let e = parse(&bad).expect_err("not a BCM name").to_string();
            assert!(
                e.contains("inputs.bolt_extended.name") && e.contains("GPIO0..GPIO53"),
                "{e}"
            );
        } else {
            let e = parsed.expect_err("rppal not built").to_string();
            assert!(
                e.contains("gpio_provider") && e.contains("board-rpi"),
                "{e}"
            );
        }
    }

    #[cfg(feature = "board-linux")]
    #[test]
    fn a_missing_line_is_named_with_its_key() {
        // This machine has no GPIO chip with these names.
        let cfg = parse(EXAMPLE).unwrap();
        match cfg.check_system() {
            Err(BoardConfigError::LineNotFound { key, line }) => {
                assert_eq!(key, "inputs.bolt_extended.name");
                assert_eq!(line, "BOLT_EXT");
            }
            other => panic!("expected LineNotFound, got {other:?}"),
        }
    }
}
