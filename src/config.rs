//! latchd's configuration file (`config/latchd.toml` documents every key).
//!
//! ```text
//!   built-in defaults ◄── TOML file (--config, optional) ◄── command line
//!                          unknown key / bad value → ConfigError naming the key
//! ```
//!
//! Every key is optional; a missing file section means the defaults. An
//! unknown key is an error (`deny_unknown_fields`) rather than silently
//! ignored: a misspelt `lockout_protection` must not leave a lock running
//! on a default the installer did not choose.
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Which board drives the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoardKind {
    /// The simulated board (the default): a complete lock in memory.
    Sim,
    /// Real Linux backends (feature `board-linux`), a Raspberry Pi
    /// included: its board file says `gpio_provider = "rppal"`.
    Linux,
}

impl BoardKind {
    pub fn name(self) -> &'static str {
        match self {
            BoardKind::Sim => "sim",
            BoardKind::Linux => "linux",
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub board: BoardKind,
    /// The board file (`board = "linux"`): how the hardware is wired.
    pub board_file: Option<PathBuf>,
    /// Where the database and device key live; see [`default_state_dir`].
    pub state_dir: Option<PathBuf>,
    pub lock: LockConfig,
    /// `[prompts]`: the voice prompts' language (issue 17 item 4).
    pub prompts: PromptsConfig,
    pub store: StoreConfig,
    /// `[key]`: where the device key rests (see `store::keystore`).
    pub key: crate::store::keystore::KeyConfig,
    pub control: ControlConfig,
    pub dbus: DbusConfig,
    pub sim: SimSection,
    pub log: LogConfig,
    /// `[ble]`: pairing, the app's secure channel and Improv Wi-Fi.
    pub ble: crate::ble::config::BleConfig,
    /// `[wifi]`: which service joins Wi-Fi (see `docs/wifi.md`).
    pub wifi: crate::wifi::WifiConfig,
    /// `[remote]`: MQTT remote access (off by default, see `docs/remote.md`).
    pub remote: crate::remote::RemoteConfig,
    /// `[video]`: the live outdoor stream (off by default, see `docs/video.md`).
    pub video: crate::video::VideoConfig,
    /// `[matter]`: the Matter node (builds with the `matter` feature; see
    /// `docs/matter.md`).
    pub matter: crate::matter::MatterConfig,
    /// `[update]`: software updates through RAUC (off by default, see
    /// `docs/updates.md`).
    pub update: crate::update::UpdateConfig,
    /// `[face]`: face unlock on the outdoor camera ("auto" by default: on
    /// where the board can check liveness, see `src/biometrics/face/config.rs`).
    #[cfg(feature = "face")]
    pub face: crate::biometrics::face::config::FaceConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockConfig {
    /// Spoken by system information (B-4.10). Empty: derived from the
    /// device key, so every lock has its own.
    pub serial: String,
    /// The code a pairing app proves it knows (B-5.1), spoken by system
    /// information: 24 base32 characters (120 bits). Empty: derived from
    /// the device key.
    pub verification_code: String,
    /// B-10.1: the low-battery prompt and LED come on below this.
    pub low_battery_percent: u8,
    /// Trust the system clock for validity windows from the start: only
    /// on a board whose battery-backed RTC nobody outside can reach.
    /// Default `false` (issue 13): the clock is trusted once systemd
    /// reports it NTP-synchronised (`org.freedesktop.timedate1`) or an
    /// owner synced it; until then time-windowed credentials are refused.
    /// Either way no reading behind the trusted-time floor is believed.
    pub trust_system_clock: bool,
    /// The board's battery-backed RTC, by its kernel name (e.g. `rtc0`,
    /// read from `/sys/class/rtc/rtc0`) at start
    /// (issue 17 item 5): an owner's time sync is kept as an offset from
    /// it and so survives reboots and power cuts; with
    /// `trust_system_clock` its reading is the time. Empty (default): none.
    pub rtc: String,
    /// A one-time visitor code made without an end ends this many hours
    /// after it was made (issue 13: every visitor code has an end).
    pub one_time_code_hours: u32,
    /// Where to ask systemd whether the clock is NTP-synchronised
    /// (`org.freedesktop.timedate1`): `system` (default), `off`, or a
    /// D-Bus address.
    pub timedate_bus: String,
    /// The lock's time zone for schedules (issue 17 item 2): an IANA name
    /// from the image's `/usr/share/zoneinfo` (DST handled). Default "UTC".
    pub time_zone: String,
}

impl LockConfig {
    /// The RTC of `rtc`, `None` when the board has none.
    pub fn rtc(&self) -> Option<&str> {
        (!self.rtc.is_empty()).then_some(self.rtc.as_str())
    }

    /// The bus of `timedate_bus`, `None` when off.
    pub fn timedate_bus(&self) -> Option<crate::dbus::BusChoice> {
        match self.timedate_bus.as_str() {
            "off" => None,
            other => other.parse().ok(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The event log keeps this many newest events.
    pub max_events: usize,
    /// Cap on the database size in bytes; 0 = no cap but the filesystem.
    pub max_db_bytes: u64,
    /// SQLite's page cache per connection, KiB (64–65536).
    pub cache_kib: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Serve the control socket (simulated inputs; sim board only).
    pub enabled: bool,
    /// Socket path; empty = `<state_dir>/control.sock`.
    pub socket: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbusConfig {
    /// `off`, `session`, `system`, or a D-Bus address (`unix:path=...`).
    pub bus: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSection {
    /// Time the simulated motor takes to throw or retract the bolt.
    pub motor_travel_ms: u64,
    /// Touches a simulated fingerprint enrolment takes.
    pub finger_touches: u8,
    /// Presentations a simulated palm enrolment takes.
    pub palm_touches: u8,
    /// Battery charge of the simulated lock at start.
    pub battery_percent: u8,
    /// `memory` (default) or `wire`: the real UART drivers against
    /// wire-level module simulators.
    pub modules: SimModuleKind,
}

/// The simulated lock's fingerprint and palm modules (`[sim] modules`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimModuleKind {
    /// In-memory modules that report synchronously and keep their slots
    /// in the modules file (the default; `board::sim::biometric`).
    #[default]
    Memory,
    /// The real UART drivers and adapters talking to the wire-level
    /// simulators over in-process pipes (`biometrics::wire`).
    Wire,
}

/// `[prompts]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptsConfig {
    /// The language prompts are said and shown in until an administrator
    /// (menu "6") or the owner's app chooses one, and again after a
    /// factory reset: `"en"` (the default) or `"zh-TW"`.
    pub language: crate::core::Language,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `latchd=debug`); `RUST_LOG` wins.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            board: BoardKind::Sim,
            board_file: None,
            state_dir: None,
            lock: LockConfig::default(),
            prompts: PromptsConfig::default(),
            store: StoreConfig::default(),
            key: crate::store::keystore::KeyConfig::default(),
            control: ControlConfig::default(),
            dbus: DbusConfig::default(),
            sim: SimSection::default(),
            log: LogConfig::default(),
            ble: crate::ble::config::BleConfig::default(),
            wifi: crate::wifi::WifiConfig::default(),
            remote: crate::remote::RemoteConfig::default(),
            video: crate::video::VideoConfig::default(),
            matter: crate::matter::MatterConfig::default(),
            update: crate::update::UpdateConfig::default(),
            #[cfg(feature = "face")]
            face: crate::biometrics::face::config::FaceConfig::default(),
        }
    }
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            serial: String::new(),
            verification_code: String::new(),
            low_battery_percent: 20,
            trust_system_clock: false,
            rtc: String::new(),
            one_time_code_hours: 24,
            timedate_bus: "system".into(),
            time_zone: "UTC".into(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_events: 10_000,
            max_db_bytes: 0,
            cache_kib: crate::store::DEFAULT_CACHE_KIB,
        }
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            enabled: true,
            socket: String::new(),
        }
    }
}

impl Default for DbusConfig {
    fn default() -> Self {
        DbusConfig { bus: "off".into() }
    }
}

impl Default for SimSection {
    fn default() -> Self {
        SimSection {
            motor_travel_ms: 600,
            finger_touches: 3,
            palm_touches: 2,
            battery_percent: 80,
            modules: SimModuleKind::Memory,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// Why the configuration was refused. The daemon exits non-zero with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type; toml's
    /// message names the key and the line.
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: `{key}` = {value}: {why}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        value: String,
        why: &'static str,
    },
    /// Issue 14: a file holding a secret must be readable by its owner only.
    #[error("config file {path} holds the secret `{key}` but its group or others may read it (mode {mode:o}); run chmod 600 on it, or {instead}")]
    SecretExposed {
        path: PathBuf,
        key: &'static str,
        mode: u32,
        instead: &'static str,
    },
}

impl Config {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Config::parse(&text, path)?;
        config.check_secrets_private(path)?;
        Ok(config)
    }

    /// The secrets this file holds inline, with where else they can go.
    fn inline_secrets(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if !self.lock.verification_code.is_empty() {
            out.push((
                "lock.verification_code",
                "leave it empty to derive it from the device key",
            ));
        }
        if !self.remote.password.is_empty() {
            out.push((
                "remote.password",
                "put it in remote.password_file (mode 0600)",
            ));
        }
        out
    }

    /// A file that holds a secret inline is refused unless only its owner
    /// may read it (like the video token file).
    fn check_secrets_private(&self, path: &Path) -> Result<(), ConfigError> {
        use std::os::unix::fs::MetadataExt;
        let Some(&(key, instead)) = self.inline_secrets().first() else {
            return Ok(());
        };
        let mode = std::fs::metadata(path)
            .map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?
            .mode();
        if mode & 0o077 != 0 {
            return Err(ConfigError::SecretExposed {
                path: path.to_owned(),
                key,
                mode: mode & 0o777,
                instead,
            });
        }
        Ok(())
    }

    /// Parse and validate TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: describe_toml_error(text, &e),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Check every value's range; the first bad key is reported.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key, value: String, why| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                key,
                value,
                why,
            })
        };
        let l = &self.lock;
        if l.serial.len() > 32
            || !l
                .serial
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return bad(
                "lock.serial",
                format!("{:?}", l.serial),
                "use up to 32 letters, digits and dashes (or leave it empty to derive one)",
            );
        }
        if let Err(why) = self.ble.validate() {
            return bad("ble.adapter", format!("{:?}", self.ble.adapter), why);
        }
        if let Err(why) = self.matter.validate() {
            return bad("matter", format!("{:?}", self.matter.interface), why);
        }
        if !l.verification_code.is_empty()
            && crate::app::pairing::VerificationCode::parse(&l.verification_code).is_err()
        {
            return bad(
                "lock.verification_code",
                "(not shown: it is a secret)".into(),
                "use the 24-character base32 code (A-Z, 2-7) printed on the lock's label, \
                 or leave it empty to derive one from the device key",
            );
        }
        if l.timedate_bus != "off" && l.timedate_bus.parse::<crate::dbus::BusChoice>().is_err() {
            return bad(
                "lock.timedate_bus",
                format!("{:?}", l.timedate_bus),
                "use \"system\", \"off\" or a D-Bus address such as \"unix:path=/run/dbus/system_bus_socket\"",
            );
        }
        if !l.rtc.is_empty() && !crate::link::rtc::valid_name(&l.rtc) {
            return bad(
                "lock.rtc",
                format!("{:?}", l.rtc),
                "name the RTC as the kernel does, such as \"rtc0\" (for /dev/rtc0), or leave it empty when the board has none",
            );
        }
        if crate::zone::load(&l.time_zone).is_err() {
            return bad(
                "lock.time_zone",
                format!("{:?}", l.time_zone),
                "name an IANA time zone that /usr/share/zoneinfo holds, such as \"Europe/Berlin\" or \"Asia/Taipei\" (default \"UTC\")",
            );
        }
        if !(1..=24 * 30).contains(&l.one_time_code_hours) {
            return bad(
                "lock.one_time_code_hours",
                l.one_time_code_hours.to_string(),
                "must be between 1 and 720 (30 days): every visitor code has an end",
            );
        }
        if !(-100..=-30).contains(&self.wifi.weak_signal_dbm) {
            return bad(
                "wifi.weak_signal_dbm",
                self.wifi.weak_signal_dbm.to_string(),
                "must be between -100 and -30 (dBm)",
            );
        }
        let wpa_config = &self.wifi.wpa_supplicant_config;
        if !wpa_config.is_empty() && !Path::new(wpa_config).is_absolute() {
            return bad(
                "wifi.wpa_supplicant_config",
                wpa_config.clone(),
                "must be an absolute path (wpa_supplicant opens it, from its own directory)",
            );
        }
        if !(1..=99).contains(&l.low_battery_percent) {
            return bad(
                "lock.low_battery_percent",
                l.low_battery_percent.to_string(),
                "must be between 1 and 99",
            );
        }
        if self.store.max_events < 100 {
            return bad(
                "store.max_events",
                self.store.max_events.to_string(),
                "keep at least 100 events",
            );
        }
        if !(64..=65_536).contains(&self.store.cache_kib) {
            return bad(
                "store.cache_kib",
                self.store.cache_kib.to_string(),
                "must be between 64 and 65536 KiB",
            );
        }
        if self.store.max_db_bytes != 0 && self.store.max_db_bytes < 1 << 20 {
            return bad(
                "store.max_db_bytes",
                self.store.max_db_bytes.to_string(),
                "use 0 (no cap) or at least 1048576 (1 MiB)",
            );
        }
        if let Err((key, value, why)) = self.update.validate() {
            return bad(key, value, why);
        }
        if let Err((key, why)) = self.video.validate() {
            return bad(key, self.video.bind.to_string(), why);
        }
        if let Err(why) = self.key.validate() {
            return bad("key.tpm2_pcrs", format!("{:?}", self.key.tpm2_pcrs), why);
        }
        if self.dbus.bus != "off" && self.dbus.bus.parse::<crate::dbus::BusChoice>().is_err() {
            return bad(
                "dbus.bus",
                format!("{:?}", self.dbus.bus),
                "use \"off\", \"session\", \"system\" or a D-Bus address like \"unix:path=/run/bus\"",
            );
        }
        let s = &self.sim;
        if !(1..=10_000).contains(&s.motor_travel_ms) {
            return bad(
                "sim.motor_travel_ms",
                s.motor_travel_ms.to_string(),
                "must be between 1 and 10000 milliseconds",
            );
        }
        if !(1..=10).contains(&s.finger_touches) {
            return bad(
                "sim.finger_touches",
                s.finger_touches.to_string(),
                "must be between 1 and 10",
            );
        }
        if !(1..=10).contains(&s.palm_touches) {
            return bad(
                "sim.palm_touches",
                s.palm_touches.to_string(),
                "must be between 1 and 10",
            );
        }
        if s.battery_percent > 100 {
            return bad(
                "sim.battery_percent",
                s.battery_percent.to_string(),
                "must be between 0 and 100",
            );
        }
        #[cfg(feature = "face")]
        if let Err(e) = self
            .face
            .validate()
            .and_then(|()| self.face.check_board(self.board == BoardKind::Sim))
        {
            return bad(e.key, e.value, e.why);
        }
        if self.log.level.trim().is_empty() {
            return bad(
                "log.level",
                "\"\"".into(),
                "give a tracing filter such as \"info\" or \"latchd=debug\"",
            );
        }
        Ok(())
    }
}

/// Keys whose values are secrets: never shown in a message.
const SECRET_KEYS: [&str; 2] = ["password", "verification_code"];

/// A TOML error as "line L, column C: what", without the source line that
/// `toml` quotes: that line may hold a secret (`[remote] password`,
/// `[lock] verification_code`), and the message goes to the journal. An
/// error *on* a line that sets a secret says only which key is wrong
/// (serde's "invalid type: integer `…`" would show the value). Found by
/// the config_files fuzzer.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    without_secrets(text, locate_toml_error(text, e))
}

/// What a secret value becomes in a message.
const SECRET_MASK: &str = "[secret]";

/// The whole message when masking cannot keep the secrets out of it.
const SECRET_FALLBACK: &str = "the file has an error (not shown: it would show a secret)";

/// The secret values of `text` taken out of `message`, whatever put them
/// there. The rules of [`locate_toml_error`] keep secrets out by shape;
/// this is the backstop for what the shape rules cannot see: a key name
/// or an unknown field (which serde names) that contains a secret of the
/// same file, typed or pasted in the wrong place (the config_files fuzzer
/// found `verification_c…<password>… = …` named as the key).
fn without_secrets(text: &str, message: String) -> String {
    let mut secrets = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches(['"', '\'']);
        if !SECRET_KEYS.iter().any(|s| key.ends_with(s)) {
            continue;
        }
        // Textually, so that a line TOML cannot parse still counts; the
        // shortest values are left: they would match ordinary words.
        let value = value.trim().trim_matches(['"', '\'']).trim();
        if value.chars().count() >= 4 {
            secrets.push(value);
        }
    }
    // Every byte of the message inside an occurrence of a secret, masked
    // in one pass so that a mask is never searched again.
    let mut hidden = vec![false; message.len()];
    for s in &secrets {
        for (at, _) in message.match_indices(s) {
            hidden[at..at + s.len()].fill(true);
        }
    }
    let mut out = String::with_capacity(message.len());
    let mut in_mask = false;
    for (i, c) in message.char_indices() {
        match (hidden[i], in_mask) {
            (true, false) => out.push_str(SECRET_MASK),
            (false, _) => out.push(c),
            (true, true) => {}
        }
        in_mask = hidden[i];
    }
    // A mask and its neighbours can spell another secret of the file (the
    // config_files fuzzer found `olumn` and `c[secret]` as two passwords:
    // "line 16, column" became "line 16, c[secret]"). A part of the mask
    // itself can only appear inside a mask (the brackets start and end
    // it), which shows nothing; anything else means the message goes.
    if secrets
        .iter()
        .any(|s| !SECRET_MASK.contains(s) && out.contains(s))
    {
        return SECRET_FALLBACK.to_owned();
    }
    out
}

fn locate_toml_error(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().trim_end().replace('\n', " | ");
    let Some(start) = e.span().map(|s| s.start) else {
        return what;
    };
    // Spans are byte offsets on character boundaries; clamp in any case.
    let before = text.get(..start).unwrap_or(text);
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches(['"', '\'']))
        .unwrap_or("");
    match SECRET_KEYS.iter().find(|s| key.ends_with(*s)) {
        Some(secret) => format!(
            "line {line_no}: the value of `{secret}` is not valid TOML or not a string \
             (not shown: it is a secret)"
        ),
        // The line itself is not quoted, so name its key (with its table)
        // for the reader to find it — only when it is a plain key name: on
        // a broken line the text before `=` may be a value, a secret among
        // them (the config_files fuzzer found one).
        None if is_plain_key(key) => {
            let table = before[..line_start]
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('['))
                .map(|l| l.trim_matches(['[', ']', ' ']))
                .filter(|t| is_plain_key(t));
            let key = match table {
                Some(t) => format!("{t}.{key}"),
                None => key.to_owned(),
            };
            format!("line {line_no}, column {column}, `{key}`: {what}")
        }
        None => format!("line {line_no}, column {column}: {what}"),
    }
}

/// A dotted key of the names latchd.toml uses (`[a-z0-9_-]`, at most 64
/// characters): safe to show, since it cannot be a value.
fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

/// The state directory when neither `--state-dir` nor `state_dir` says:
/// `$XDG_STATE_HOME/latchd` when that variable is set (a developer's
/// session; systemd's `StateDirectory=` sets `STATE_DIRECTORY`, which wins),
/// else `./.latchd-state` next to where latchd was started.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may pass several, colon-separated; the first is ours.
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        if !first.is_empty() {
            return PathBuf::from(first);
        }
    }
    match std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("latchd"),
        None => PathBuf::from(".latchd-state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn the_prompt_language_is_a_known_tag() {
        assert_eq!(
            parse("").unwrap().prompts.language,
            crate::core::Language::En
        );
        let c = parse("[prompts]\nlanguage = \"zh-TW\"\n").unwrap();
        assert_eq!(c.prompts.language, crate::core::Language::ZhTw);
        let e = parse("[prompts]\nlanguage = \"fr\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fr") && e.contains("zh-TW"), "{e}");
    }

    #[test]
    fn shipped_file_parses_to_the_defaults() {
        let text = include_str!("../config/latchd.toml");
        assert_eq!(parse(text).unwrap(), Config::default());
    }

    #[test]
    fn update_values_out_of_range_name_their_key() {
        for (text, key) in [
            (
                "[update]\nmin_battery_percent = 5\n",
                "update.min_battery_percent",
            ),
            (
                "[update]\nmax_wait_minutes = 0\n",
                "update.max_wait_minutes",
            ),
            ("[update]\nhealth_checks = []\n", "update.health_checks"),
            ("[update]\nbus = \"nowhere\"\n", "update.bus"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let on = parse("[update]\nbus = \"system\"\n").unwrap();
        assert!(on.update.policy().enabled);
        assert!(!Config::default().update.policy().enabled);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[sim]\nmotr_travel_ms = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("motr_travel_ms"), "{e}");
    }

    #[test]
    fn a_weak_signal_line_out_of_range_is_named() {
        let e = parse("[wifi]\nweak_signal_dbm = -20\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wifi.weak_signal_dbm"), "{e}");
        assert!(parse("[wifi]\nweak_signal_dbm = -70\n").is_ok());
    }

    #[test]
    fn a_relative_wpa_supplicant_config_is_named() {
        let e = parse("[wifi]\nwpa_supplicant_config = \"latchd.conf\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wifi.wpa_supplicant_config"), "{e}");
        let ok = parse("[wifi]\nwpa_supplicant_config = \"/etc/latchd/wpa_supplicant.conf\"\n");
        assert!(ok.is_ok());
    }

    #[test]
    fn out_of_range_value_names_its_key() {
        let e = parse("[lock]\nlow_battery_percent = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lock.low_battery_percent"), "{e}");
        let e = parse("[dbus]\nbus = \"sytem\"\n").unwrap_err().to_string();
        assert!(e.contains("dbus.bus"), "{e}");
        let e = parse("board = \"arduino\"\n").unwrap_err().to_string();
        assert!(e.contains("arduino"), "{e}");
    }

    /// Found by fuzz/fuzz_targets/config_files.rs: a syntax error on the
    /// line of a secret quoted that line, secret and all, into the error
    /// (and so the journal). Errors name the line and the key only.
    #[test]
    fn a_parse_error_never_shows_a_secret() {
        for (text, secret) in [
            (
                "[lock]\nverification_code = \x01 \"ABCDEFGHIJKLMNOPQRSTUVWX\"\n",
                "ABCDEFGHIJKLMNOPQRSTUVWX",
            ),
            ("[remote]\npassword = \"hunter2hunter2\n", "hunter2hunter2"),
            ("[remote]\npassword = 31415926535\n", "31415926535"),
            // Found by the fuzzer after keys were named: a broken line
            // whose "key" is a value.
            (
                "\"ABCDEFGHIJKLMNOPQRSTUVWX\u{1}\u{1} enabled = true\n",
                "ABCDEFGHIJKLMNOPQRSTUVWX",
            ),
            (
                "[remote]\npassword = \"hunter2hunter2\"\npassword = \"hunter2hunter2\"\n",
                "hunter2hunter2",
            ),
            // Found by the fuzzer in CI's run: a plain key name that holds
            // the password of another line.
            (
                "[lock]\nverification_cwocorrect-horse-battrd = \"x\n[remote]\npassword = \"correct-\n",
                "correct-",
            ),
            // serde names an unknown field: not when it is the password.
            (
                "[remote]\npassword = \"correct-horse\"\ncorrect-horse = 1\n",
                "correct-horse",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(!e.contains(secret), "{e}");
            assert!(e.contains("line "), "{e}");
        }
        // Found by the fuzzer in CI's run: masking one password made the
        // other out of the mask and the words around it.
        let text = "[lock]\nverification_code = \"c[secret]\"\n[remote]\npassword = \"olumn\"\n!\n";
        let e = parse(text).unwrap_err().to_string();
        assert!(!e.contains("olumn") && !e.contains("c[secret]"), "{e}");
        assert!(e.ends_with(SECRET_FALLBACK), "{e}");
        // Masked once, never again; a secret the masks spell anyway takes
        // the whole message.
        let two = "password = \"t][s\"\nverification_code = \"olumn\"\n";
        assert_eq!(
            without_secrets(two, "column, column".to_owned()),
            "c[secret], c[secret]"
        );
        assert_eq!(
            without_secrets(two, "line 1, columnt][s column".to_owned()),
            "line 1, c[secret] c[secret]"
        );
        let spelled = "password = \"t][se\"\nverification_code = \"column\"\n";
        assert_eq!(
            without_secrets(spelled, "column column".to_owned()),
            "[secret] [secret]"
        );
        let spelled = "password = \"t][se\"\nverification_code = \"olumn\"\n";
        assert_eq!(
            without_secrets(spelled, "coolumn[secret]".to_owned()),
            SECRET_FALLBACK
        );
        // Other errors still say what and where.
        let e = parse("[sim]\nmotor_travel_ms = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("invalid type"), "{e}");
        assert!(e.contains("`sim.motor_travel_ms`"), "{e}");
    }

    /// A Raspberry Pi is `board = "linux"` with `gpio_provider = "rppal"`
    /// in its board file; there is no separate `rpi` board to half-work.
    #[test]
    fn there_is_no_rpi_board_kind() {
        let e = parse("board = \"rpi\"\n").unwrap_err().to_string();
        assert!(e.contains("rpi") && e.contains("`linux`"), "{e}");
        assert_eq!(
            parse("board = \"linux\"\n").unwrap().board,
            BoardKind::Linux
        );
    }

    /// Issue 14 item 2: a latchd.toml holding `remote.password` or
    /// `lock.verification_code` inline is refused unless it is 0600; one
    /// without secrets loads whatever its mode.
    #[test]
    fn a_file_with_inline_secrets_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("latchd.toml");
        let chmod =
            |m| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).expect("chmod");
        std::fs::write(&path, "[remote]\nusername = \"lock\"\n").expect("write");
        chmod(0o644);
        Config::load(&path).expect("no secret: any mode");
        for (text, key) in [
            (
                "[remote]\nusername = \"lock\"\npassword = \"pw-123\"\n",
                "remote.password",
            ),
            (
                "[lock]\nverification_code = \"ABCDEFGHIJKLMNOPQRSTUVWX\"\n",
                "lock.verification_code",
            ),
        ] {
            std::fs::write(&path, text).expect("write");
            chmod(0o644);
            let e = Config::load(&path)
                .expect_err("0644 with a secret")
                .to_string();
            assert!(e.contains(key) && e.contains("chmod 600"), "{e}");
            assert!(!e.contains("pw-123") && !e.contains("ABCDEFGH"), "{e}");
            chmod(0o600);
            Config::load(&path).expect("0600");
        }
    }
}
