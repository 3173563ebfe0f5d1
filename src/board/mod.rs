//! The lock's hardware, one small trait per device, and the [`Board`] the
//! daemon holds.
//!
//! # The devices
//!
//! ```text
//!   front panel (outside)                 back panel (inside)
//!   ┌──────────────────────────┐          ┌──────────────────────────┐
//!   │ camera (face, snapshots) │          │ battery + USB-C sense    │
//!   │ keypad 0-9 ↩ ✓ away bell │          │ SET button, lock button  │
//!   │   + backlight/LEDs       │          │ inside handle            │
//!   │ fingerprint reader (UART)│          │ motor ──► bolt           │
//!   │ palm-vein window (UART)  │          │ bolt limit switches      │
//!   │ key cylinder, tamper sw. │          │ door sensor, speaker     │
//!   └──────────────────────────┘          └──────────────────────────┘
//! ```
//!
//! # How a board talks to the engine
//!
//! ```text
//!   device edge / key / module reply ──► backend task ──► InputSender ──► engine task
//!                                                                          │ Vec<Action>
//!   motor, keypad view, prompt, alarm, module cmd, snapshot ◄── Board::perform
//! ```
//!
//! Every device is *event-driven*: a backend turns what it senses (a GPIO
//! edge, an evdev key, a UART frame, the end of a motor move) into a
//! [`core::Input`](crate::core::Input) and sends it on the one
//! [`InputSender`](crate::link::InputSender) the daemon gave it when the
//! board was built. The traits
//! below are only the *commands* the engine's [`Action`]s turn into, plus a
//! `read` of each sensor for start-up. Commands return as soon as the
//! device has accepted them: a motor move takes ~0.6 s and reports its end
//! as `Input::Motor(MotorReport::Done(..))`; a biometric enrolment reports
//! each step as `Input::Module(..)`. Nothing here blocks the engine task.
//!
//! # Rules for backend authors
//!
//! * Methods never block for longer than a register write or a queue push;
//!   long work runs in the backend's own task and reports back as inputs.
//! * An error says which device failed and what to check
//!   ([`DeviceError`]); the daemon logs it and tells the engine where the
//!   engine has an input for it (a motor that cannot move reports
//!   `MotorReport::Fault`).
//! * Backends are constructed with everything they need (pins by line
//!   name, UART path, an `InputSender`); the traits carry no setup.
//!
//! The simulated board ([`sim`]) implements every trait in memory with
//! tokio time, so it is deterministic under `tokio::time::pause()`.
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::core::action::{AlarmCmd, SnapshotReason};
use crate::core::input::{BoltPosition, DoorPosition, PowerReading, TamperState};
use crate::core::types::MotorDirection;
use crate::core::{Action, AlarmKind, Input, KeypadView, Language, ModuleCmd, MotorCmd, Prompt};

pub mod absent;
pub mod coast;
pub mod drivers;
pub mod frames;
#[cfg(feature = "board-linux")]
pub mod linux;
pub mod sim;

/// The board file's parser on its own, for the fuzzer
/// (`fuzz/fuzz_targets/config_files.rs`): it is pure Rust, while the rest
/// of `linux` needs the system's GPIO, ALSA and BlueZ libraries, which the
/// fuzz build leaves out. `cargo fuzz` sets `--cfg fuzzing`.
#[cfg(all(fuzzing, not(feature = "board-linux")))]
#[doc(hidden)]
#[path = "linux/config.rs"]
pub mod board_file;
#[cfg(feature = "board-linux")]
#[doc(hidden)]
pub use linux::config as board_file;

/// Why a device command or read failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device answered, but refused or reported a fault.
    #[error("{device}: {detail}")]
    Fault {
        device: &'static str,
        detail: String,
    },
    /// The device is not there or not answering (unplugged, wrong line
    /// name, bus error).
    #[error("{device} is not answering: {detail}; check its wiring, power and the board file")]
    Unavailable {
        device: &'static str,
        detail: String,
    },
    /// An OS-level error talking to the device.
    #[error("{device}: {source}")]
    Io {
        device: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The command makes no sense for this device (e.g. a face command to
    /// the fingerprint reader): a bug in the caller, reported not panicked.
    #[error("{device} cannot do {what}")]
    Unsupported { device: &'static str, what: String },
}

/// The motor that drives the bolt (H-bridge; two GPIO lines and a current
/// sense on a real board).
pub trait Motor: Send {
    /// Start driving the bolt towards `target`. Returns at once; the end of
    /// the move arrives as `Input::Motor(MotorReport::..)` and the limit
    /// switches as `Input::Bolt(..)`. A new drive replaces a move in
    /// progress.
    fn drive(&mut self, target: BoltPosition, direction: MotorDirection)
        -> Result<(), DeviceError>;
    /// De-energise now; the bolt stays where it is.
    fn stop(&mut self) -> Result<(), DeviceError>;
    /// Whether a move is in progress.
    fn is_moving(&self) -> bool;
    /// Wait until the move in progress (if any) has ended and reported.
    /// Used at shutdown: a bolt is never left half-thrown.
    fn settle(&mut self) -> BoxFuture<'_, ()>;
}

/// The bolt's two limit switches.
pub trait BoltSensor: Send {
    fn read(&self) -> Result<BoltPosition, DeviceError>;
}

/// The door (reed) sensor.
pub trait DoorSensor: Send {
    fn read(&self) -> Result<DoorPosition, DeviceError>;
}

/// The front keypad's lights: backlight, lit and flashing keys, the digits
/// shown one by one, the low-battery LED. Key presses arrive as
/// `Input::Touch`, `Input::Key` and `Input::KeyHeld`.
pub trait Keypad: Send {
    fn show(&mut self, view: &KeypadView) -> Result<(), DeviceError>;
}

/// The speaker: plays a recorded prompt in `lang`
/// (`assets/prompts/<lang>/<asset>.wav`), or on the sim board writes its
/// text in `lang` to the prompt log the front panel shows.
pub trait Voice: Send {
    fn say(&mut self, prompt: &Prompt, lang: Language) -> Result<(), DeviceError>;
}

/// Battery gauge and USB-C emergency power sense. Changes arrive as
/// `Input::Power(..)`.
pub trait Battery: Send {
    fn read(&self) -> Result<PowerReading, DeviceError>;
}

/// The front panel's tamper switch. Changes arrive as `Input::Tamper(..)`.
pub trait Tamper: Send {
    fn read(&self) -> Result<TamperState, DeviceError>;
}

/// The buzzer/siren.
pub trait Alarm: Send {
    fn sound(&mut self, kind: AlarmKind, duration: Duration) -> Result<(), DeviceError>;
    fn silence(&mut self, kind: AlarmKind) -> Result<(), DeviceError>;
}

/// The fingerprint reader (R30x family on a UART). Takes the module
/// commands of [`ModuleCmd`] for `Modality::Fingerprint`; matches and
/// enrolment steps arrive as `Input::Module(..)`.
pub trait FingerprintModule: Send {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError>;

    /// How the module answered last, for the self-test (issue 22 item 3).
    fn health(&self) -> ModuleHealth {
        ModuleHealth::Answering
    }
}

/// The palm-vein module (UART). Same contract as [`FingerprintModule`].
pub trait PalmModule: Send {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError>;

    /// How the module answered last, for the self-test.
    fn health(&self) -> ModuleHealth {
        ModuleHealth::Answering
    }
}

/// What the self-test reports for a UART biometric module: what its
/// adapter saw last, never a guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleHealth {
    /// Connected, no answer yet (start-up, or the UART is being opened).
    Starting,
    /// The last exchange was answered.
    Answering,
    /// Not answering since `detail` (timeout, bad frame, closed link).
    Failing(String),
    /// Answers, but is not the lock's own module (swapped: issue 13 item 7).
    Untrusted(String),
    /// The adapter task has stopped: why, as far as it said.
    Stopped(String),
}

/// The board's light for the camera (an IR illuminator): lit for as long
/// as the returned value lives. A light that cannot be lit is the
/// implementation's to log; the face attempt goes on in the dark.
pub trait CameraLight: Send + Sync + 'static {
    fn light(&self) -> Box<dyn Send>;
}

/// Face recognition: camera frames through the detector/embedder/matcher
/// (real board) or simulated people (sim board). Takes face enrolment and
/// `ModuleCmd::RecogniseFace`; results arrive as `Input::Module(..)`.
pub trait FaceSource: Send {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError>;

    /// Why this board has no face recognition, for the self-test; `None`
    /// for a real one (the stand-in in `absent.rs` says why).
    fn absent(&self) -> Option<&'static str> {
        None
    }
}

/// The outdoor camera's still pictures (B-3.5).
pub trait Camera: Send {
    fn snapshot(&mut self, reason: SnapshotReason) -> Result<(), DeviceError>;

    /// Why this board has no camera, for the self-test; `None` for a real
    /// one (the stand-in in `absent.rs` says why).
    fn absent(&self) -> Option<&'static str> {
        None
    }

    /// A snapshot that belongs to the logged event `event` (its id in the
    /// store's event log), so the picture can be found from the event.
    /// The daemon calls this; a camera that keeps no files (a counter, an
    /// absent camera) has nothing to name and takes a plain snapshot.
    fn snapshot_for_event(
        &mut self,
        reason: SnapshotReason,
        event: Option<u64>,
    ) -> Result<(), DeviceError> {
        let _ = event;
        self.snapshot(reason)
    }
}

/// Every device of one lock, as the daemon holds it.
pub struct Board {
    /// Backend name for diagnostics: `"sim"` or `"linux"`.
    pub name: &'static str,
    pub motor: Box<dyn Motor>,
    pub bolt: Box<dyn BoltSensor>,
    pub door: Box<dyn DoorSensor>,
    pub keypad: Box<dyn Keypad>,
    pub voice: Box<dyn Voice>,
    pub battery: Box<dyn Battery>,
    pub tamper: Box<dyn Tamper>,
    pub alarm: Box<dyn Alarm>,
    pub fingerprint: Box<dyn FingerprintModule>,
    pub palm: Box<dyn PalmModule>,
    pub face: Box<dyn FaceSource>,
    pub camera: Box<dyn Camera>,
}

/// What [`Board::perform`] did with an action.
#[derive(Debug, PartialEq, Eq)]
pub enum Performed {
    /// A hardware action, done (or started).
    Done,
    /// Not a hardware action (`Persist`, `Log`, `Trace`, `Notify`, `Reply`): the
    /// daemon handles it.
    NotHardware,
}

impl Board {
    /// The sensors as they are now, as the inputs the engine expects at
    /// power-up. A sensor that cannot be read is left out (and returned as
    /// an error next to the readings) so one dead sensor does not stop the
    /// lock from starting.
    pub fn initial_inputs(&self) -> (Vec<Input>, Vec<DeviceError>) {
        let mut inputs = Vec::new();
        let mut errors = Vec::new();
        match self.bolt.read() {
            Ok(b) => inputs.push(Input::Bolt(b)),
            Err(e) => errors.push(e),
        }
        match self.door.read() {
            Ok(d) => inputs.push(Input::Door(d)),
            Err(e) => errors.push(e),
        }
        match self.battery.read() {
            Ok(p) => inputs.push(Input::Power(p)),
            Err(e) => errors.push(e),
        }
        match self.tamper.read() {
            Ok(t) => inputs.push(Input::Tamper(t)),
            Err(e) => errors.push(e),
        }
        (inputs, errors)
    }

    /// Perform one hardware action.
    pub fn perform(&mut self, action: &Action) -> Result<Performed, DeviceError> {
        match action {
            Action::Prompt(p, lang) => self.voice.say(p, *lang)?,
            Action::Keypad(view) => self.keypad.show(view)?,
            Action::Motor(MotorCmd::Drive { target, direction }) => {
                self.motor.drive(*target, *direction)?
            }
            Action::Motor(MotorCmd::Stop) => self.motor.stop()?,
            Action::Module(cmd) => self.module(cmd)?,
            Action::Alarm(AlarmCmd::Sound { kind, duration }) => {
                self.alarm.sound(*kind, *duration)?
            }
            Action::Alarm(AlarmCmd::Silence { kind }) => self.alarm.silence(*kind)?,
            Action::Snapshot(reason) => self.camera.snapshot(*reason)?,
            Action::Persist(_)
            | Action::Log(_)
            | Action::Trace(_)
            | Action::Notify(_)
            | Action::Reply { .. }
            | Action::SetClock(_)
            | Action::Update(_) => return Ok(Performed::NotHardware),
        }
        Ok(Performed::Done)
    }

    fn module(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        use crate::core::types::Modality;
        let modality = match cmd {
            ModuleCmd::Enrol { modality, .. }
            | ModuleCmd::CancelEnrol { modality }
            | ModuleCmd::Delete { modality, .. }
            | ModuleCmd::Wipe { modality }
            | ModuleCmd::Pair { modality } => *modality,
            ModuleCmd::RecogniseFace => Modality::Face,
        };
        match modality {
            Modality::Fingerprint => self.fingerprint.command(cmd),
            Modality::Palm => self.palm.command(cmd),
            Modality::Face => self.face.command(cmd),
        }
    }

    /// Wait for a motor move in progress to end (shutdown).
    pub async fn settle(&mut self) {
        self.motor.settle().await
    }
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
