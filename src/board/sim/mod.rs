//! The simulated board: a complete lock in memory, the default `board`.
//!
//! ```text
//!   front panel (TUI) ─┐                 ┌─────────────── World (Mutex) ───────────────┐
//!   control socket ────┼─► SimControl ──►│ bolt · door · motor · keypad view · prompts │
//!   tests              ┘   (buttons,     │ alarms · battery · tamper · module slots    │
//!                           people)      └──────┬───────────────────────▲──────────────┘
//!                              │ Input          │ changes (watch)       │ Board::perform
//!                              ▼                ▼                       │ (engine task)
//!                        OrderedSender ──► engine          front panel, status
//! ```
//!
//! * **Motor**: a move takes [`SimConfig::motor_travel`] (600 ms); the bolt
//!   leaves its limit switch at once (`Bolt(Between)`), reaches the target
//!   at the end (`Bolt(target)`, then `Motor(Done(target))`). A scripted jam
//!   ([`SimControl::jam`]) makes the next moves end `Jammed` between the
//!   switches.
//! * **Door**: cannot close while the bolt is thrown, like a real door.
//! * **Mechanical key / inside handle**: retract the bolt by hand; the
//!   engine hears `MechanicalKey`/`InsideHandle` and then the limit switch.
//! * **Keypad**: the first key pressed on a sleeping keypad also sends
//!   `Touch` (the touch that wakes it), as the capacitive panel does.
//! * **Voice**: prompts go to a text log ([`SimControl::prompts`]).
//! * **Fingerprint, palm, face**: modules that enrol and recognise
//!   *simulated people* by number (see [`biometric`]); their template slots
//!   are kept in `<state-dir>/sim-modules.json`, the way a real module keeps
//!   its library in its own flash across daemon restarts. [`build_with`]
//!   takes fingerprint and palm readers from outside instead ([`parts`]).
//!
//! Everything runs on tokio time, so tests that call
//! `tokio::time::pause()` drive motor travel deterministically.
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;

use super::Board;
use crate::core::input::{BoltPosition, DoorPosition, PowerReading, SetPress, TamperState};
use crate::core::types::{Key, Modality};
use crate::core::{AlarmKind, Input, KeypadView, Language};
use crate::link::{InputSender, OrderedSender};

pub mod biometric;
pub mod camera;
mod devices;
mod motor;
pub mod parts;

pub use biometric::{ModuleSlots, SimModules};
pub use parts::{BuildModules, OutsideModules, SimFace, SimHands, SimParts, SimReports};

/// How the simulated lock is built.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Time the motor takes to throw or retract the bolt.
    pub motor_travel: Duration,
    /// Touches a fingerprint enrolment takes.
    pub finger_touches: u8,
    /// Presentations a palm enrolment takes.
    pub palm_touches: u8,
    /// Battery charge at start, 0..=100.
    pub battery_percent: u8,
    /// Where the modules keep their template slots; `None` keeps them in
    /// memory only (tests of the board alone).
    pub modules_file: Option<PathBuf>,
    /// Prompts kept in the log.
    pub prompt_log_len: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            motor_travel: Duration::from_millis(600),
            finger_touches: 3,
            palm_touches: 2,
            battery_percent: 80,
            modules_file: None,
            prompt_log_len: 200,
        }
    }
}

/// Why a simulated input was refused. Nothing changes when one is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    #[error("`{0}` is not a keypad key; use 0-9, ✓ or # (confirm), ↩ or * (back), a (away), d (doorbell)")]
    BadKey(String),
    #[error("no keys given; give at least one key, e.g. \"123456✓\"")]
    NoKeys,
    #[error("person numbers start at 1; got 0")]
    BadPerson,
    #[error(transparent)]
    Camera(#[from] camera::SimCameraError),
    #[error("battery percent {0} is above 100")]
    BadPercent(u8),
    #[error("the door cannot close while the bolt is extended; retract it first (unlock, key or handle)")]
    BoltBlocksDoor,
    #[error("the door is already {0}")]
    DoorAlready(&'static str),
    #[error("the engine has stopped; the daemon is shutting down")]
    EngineStopped,
    #[error(
        "cannot read the sim module file {path}: {detail}; delete it to start with empty modules"
    )]
    ModulesFile { path: String, detail: String },
}

/// The motor as the panel shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum MotorState {
    Idle,
    Moving { target: BoltPosition },
}

/// One spoken prompt, as the sim's voice logged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptRecord {
    /// Milliseconds since the board started.
    pub at_ms: u64,
    /// The prompt's asset name (`unlocked`, `face_pose_up`...).
    pub asset: String,
    /// The language it was said in (issue 17 item 4).
    pub language: Language,
    /// Its words in that language, as the front panel shows them.
    pub text: String,
}

/// One alarm sounding now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoundingAlarm {
    pub kind: AlarmKind,
    /// Milliseconds left.
    pub remaining_ms: u64,
}

/// Everything the simulated lock shows, for the front panel and `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSnapshot {
    pub bolt: BoltPosition,
    pub door: DoorPosition,
    pub motor: MotorState,
    /// Completed bolt moves (motor wear).
    pub motor_cycles: u64,
    pub jams: u64,
    /// Moves still scripted to jam.
    pub jams_pending: u32,
    pub keypad: KeypadView,
    pub power: PowerReading,
    pub tamper: TamperState,
    pub alarms: Vec<SoundingAlarm>,
    /// Person standing in front of the camera.
    pub face_present: Option<u32>,
    pub snapshots: u64,
    pub modules: SimModules,
    /// Module enrolments in progress.
    pub enrolling: Vec<Modality>,
}

/// The simulated lock's physical state. Guarded by a `std` mutex that is
/// never held across an `.await`.
#[derive(Debug)]
struct World {
    started: TokioInstant,
    bolt: BoltPosition,
    door: DoorPosition,
    motor: MotorState,
    motor_cycles: u64,
    jams: u64,
    jams_pending: u32,
    /// A driver fault scripted by [`SimControl::motor_fault`]: the motor
    /// refuses every command with it.
    motor_fault: Option<String>,
    keypad: KeypadView,
    /// A `Touch` was sent since the keypad last went to sleep, so the next
    /// key does not need another.
    touch_sent: bool,
    prompts: VecDeque<PromptRecord>,
    prompt_log_len: usize,
    /// Sounding alarms and when each stops (few; a Vec keeps them in order).
    alarms: Vec<(AlarmKind, TokioInstant)>,
    power: PowerReading,
    tamper: TamperState,
    face_present: Option<u32>,
    /// The sim camera's scene, when the real face pipeline watches it:
    /// `face(person)` then shows that person's picture instead of asking
    /// the simulated face module.
    camera: Option<camera::SceneControl>,
    snapshots: u64,
    modules: biometric::Modules,
}

/// The board's shared parts: the world, the way inputs leave, and the
/// change counter the front panel watches.
#[derive(Debug, Clone)]
struct Shared {
    world: Arc<Mutex<World>>,
    out: OrderedSender,
    changed: Arc<watch::Sender<u64>>,
    /// The hands of outside fingerprint/palm modules ([`SimParts`]).
    hands: Option<Arc<dyn SimHands>>,
}

impl Shared {
    fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock leaves plain data behind; the sim
        // keeps going with it rather than poisoning every later call.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn push(&self, input: Input) -> Result<(), SimError> {
        if self.out.push(input) {
            Ok(())
        } else {
            Err(SimError::EngineStopped)
        }
    }

    fn push_all(&self, inputs: Vec<Input>) -> Result<(), SimError> {
        for i in inputs {
            self.push(i)?;
        }
        Ok(())
    }
}

fn millivolts(percent: u8) -> u32 {
    // Four AA cells: 4.4 V empty .. 6.4 V full, linear enough for a sim.
    4400 + u32::from(percent) * 20
}

/// Build the simulated board, every device simulated. Returns the
/// [`Board`] the daemon drives and the [`SimControl`] the front panel,
/// control socket and tests press buttons with. Must run inside a tokio
/// runtime.
pub fn build(config: SimConfig, inputs: InputSender) -> Result<(Board, SimControl), SimError> {
    build_with(config, inputs, SimParts::default())
}

/// [`build`], with the devices `parts` gives taking the place of the
/// simulated ones.
pub fn build_with(
    config: SimConfig,
    inputs: InputSender,
    parts: SimParts,
) -> Result<(Board, SimControl), SimError> {
    if config.battery_percent > 100 {
        return Err(SimError::BadPercent(config.battery_percent));
    }
    let modules = biometric::Modules::load(
        config.modules_file.clone(),
        config.finger_touches,
        config.palm_touches,
    )?;
    let world = World {
        started: TokioInstant::now(),
        bolt: BoltPosition::Extended,
        door: DoorPosition::Closed,
        motor: MotorState::Idle,
        motor_cycles: 0,
        jams: 0,
        jams_pending: 0,
        motor_fault: None,
        keypad: KeypadView::default(),
        touch_sent: false,
        prompts: VecDeque::new(),
        prompt_log_len: config.prompt_log_len.max(1),
        alarms: Vec::new(),
        power: PowerReading {
            percent: config.battery_percent,
            millivolts: millivolts(config.battery_percent),
            external: false,
        },
        tamper: TamperState::Intact,
        face_present: None,
        camera: parts.face.as_ref().map(|f| f.scene.clone()),
        snapshots: 0,
        modules,
    };
    let (changed, _) = watch::channel(0u64);
    let reports = SimReports {
        out: OrderedSender::spawn(inputs),
        changed: Arc::new(changed),
    };
    let outside = parts.modules.map(|build| build(reports.clone()));
    let shared = Shared {
        world: Arc::new(Mutex::new(world)),
        out: reports.out,
        changed: reports.changed,
        hands: outside.as_ref().map(|m| m.hands.clone()),
    };
    let (fingerprint, palm): (
        Box<dyn super::FingerprintModule>,
        Box<dyn super::PalmModule>,
    ) = match outside {
        Some(m) => (m.fingerprint, m.palm),
        None => (
            Box::new(biometric::SimModule::new(
                shared.clone(),
                Modality::Fingerprint,
            )),
            Box::new(biometric::SimModule::new(shared.clone(), Modality::Palm)),
        ),
    };
    let board = Board {
        name: "sim",
        motor: Box::new(motor::SimMotor::new(shared.clone(), config.motor_travel)),
        bolt: Box::new(devices::Sensors(shared.clone())),
        door: Box::new(devices::Sensors(shared.clone())),
        keypad: Box::new(devices::Panel(shared.clone())),
        voice: Box::new(devices::Panel(shared.clone())),
        battery: Box::new(devices::Sensors(shared.clone())),
        tamper: Box::new(devices::Sensors(shared.clone())),
        alarm: Box::new(devices::Panel(shared.clone())),
        fingerprint,
        palm,
        face: match parts.face {
            Some(f) => f.source,
            None => Box::new(biometric::SimModule::new(shared.clone(), Modality::Face)),
        },
        camera: match parts.camera {
            Some(store) => Box::new(devices::StoredSnapshots {
                counter: devices::Panel(shared.clone()),
                store,
            }),
            None => Box::new(devices::Panel(shared.clone())),
        },
    };
    Ok((board, SimControl { shared }))
}

/// Parse a key string: `0`-`9`, `✓`/`#` confirm, `↩`/`*` back, `a` away,
/// `d` doorbell; spaces are ignored. All or nothing.
pub fn parse_keys(s: &str) -> Result<Vec<Key>, SimError> {
    let mut keys = Vec::new();
    for c in s.chars() {
        let key = match c {
            '0'..='9' => Key::Digit(c as u8 - b'0'),
            '✓' | '#' => Key::Confirm,
            '↩' | '*' => Key::Back,
            'a' | 'A' => Key::Away,
            'd' | 'D' | '🔔' => Key::Doorbell,
            c if c.is_whitespace() => continue,
            other => return Err(SimError::BadKey(other.to_string())),
        };
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(SimError::NoKeys);
    }
    Ok(keys)
}

/// The keys' printable names, the inverse of [`parse_keys`].
pub fn key_label(key: Key) -> String {
    match key {
        Key::Digit(d) => d.to_string(),
        Key::Confirm => "✓".into(),
        Key::Back => "↩".into(),
        Key::Away => "away".into(),
        Key::Doorbell => "bell".into(),
    }
}

/// The hands of whoever stands at the simulated lock. Cheap to clone.
///
/// Every method validates first and changes nothing on error; on success
/// the matching inputs are queued for the engine in call order.
#[derive(Debug, Clone)]
pub struct SimControl {
    shared: Shared,
}

impl SimControl {
    /// Press front-panel keys in order.
    pub fn press(&self, keys: &[Key]) -> Result<(), SimError> {
        if keys.is_empty() {
            return Err(SimError::NoKeys);
        }
        let mut inputs = Vec::with_capacity(keys.len() + 1);
        {
            let mut w = self.shared.world();
            if !w.keypad.awake && !w.touch_sent {
                inputs.push(Input::Touch);
                w.touch_sent = true;
            }
        }
        inputs.extend(keys.iter().map(|k| Input::Key(*k)));
        self.shared.push_all(inputs)
    }

    /// Touch the keypad without pressing a key (wakes it; starts a manual
    /// face recognition, B-6.2).
    pub fn touch(&self) -> Result<(), SimError> {
        self.shared.world().touch_sent = true;
        self.shared.push(Input::Touch)
    }

    /// Hold a key until the keypad flashes (B-3.4).
    pub fn hold(&self, key: Key) -> Result<(), SimError> {
        let mut inputs = Vec::new();
        {
            let mut w = self.shared.world();
            if !w.keypad.awake && !w.touch_sent {
                inputs.push(Input::Touch);
                w.touch_sent = true;
            }
        }
        inputs.push(Input::KeyHeld(key));
        self.shared.push_all(inputs)
    }

    /// The SET button on the back panel.
    pub fn set(&self, press: SetPress) -> Result<(), SimError> {
        self.shared.push(Input::Set(press))
    }

    /// The electronic lock button on the back panel (B-8.2).
    pub fn lock_button(&self) -> Result<(), SimError> {
        self.shared.push(Input::LockButton)
    }

    /// Turn the inside handle: retracts the bolt by hand (an inside unlock).
    pub fn inside_handle(&self) -> Result<(), SimError> {
        self.retract_by_hand(Input::InsideHandle)
    }

    /// Turn the mechanical key in the cylinder (B-6.5).
    pub fn mechanical_key(&self) -> Result<(), SimError> {
        self.retract_by_hand(Input::MechanicalKey)
    }

    fn retract_by_hand(&self, why: Input) -> Result<(), SimError> {
        let mut inputs = vec![why];
        {
            let mut w = self.shared.world();
            if w.bolt != BoltPosition::Retracted {
                w.bolt = BoltPosition::Retracted;
                inputs.push(Input::Bolt(BoltPosition::Retracted));
            }
        }
        self.shared.bump();
        self.shared.push_all(inputs)
    }

    /// Open or close the door.
    pub fn door(&self, open: bool) -> Result<(), SimError> {
        let input = {
            let mut w = self.shared.world();
            let want = if open {
                DoorPosition::Open
            } else {
                DoorPosition::Closed
            };
            if w.door == want {
                return Err(SimError::DoorAlready(if open { "open" } else { "closed" }));
            }
            // A thrown bolt holds a closed door shut and stops an open door
            // from closing.
            if w.bolt != BoltPosition::Retracted {
                return Err(SimError::BoltBlocksDoor);
            }
            w.door = want;
            Input::Door(want)
        };
        self.shared.bump();
        self.shared.push(input)
    }

    /// Open or close the front panel (tamper switch, B-10.4).
    pub fn tamper(&self, opened: bool) -> Result<(), SimError> {
        let state = if opened {
            TamperState::Opened
        } else {
            TamperState::Intact
        };
        self.shared.world().tamper = state;
        self.shared.bump();
        self.shared.push(Input::Tamper(state))
    }

    /// Set the battery charge and/or USB-C emergency power (B-10.1, B-10.3).
    pub fn power(&self, percent: Option<u8>, external: Option<bool>) -> Result<(), SimError> {
        if let Some(p) = percent {
            if p > 100 {
                return Err(SimError::BadPercent(p));
            }
        }
        let reading = {
            let mut w = self.shared.world();
            if let Some(p) = percent {
                w.power.percent = p;
                w.power.millivolts = millivolts(p);
            }
            if let Some(e) = external {
                w.power.external = e;
            }
            w.power
        };
        self.shared.bump();
        self.shared.push(Input::Power(reading))
    }

    /// Change the charge by `delta` percentage points, clamped to 0..=100.
    pub fn battery_step(&self, delta: i16) -> Result<(), SimError> {
        let now = i16::from(self.shared.world().power.percent);
        let next = (now + delta).clamp(0, 100) as u8;
        self.power(Some(next), None)
    }

    /// Person `person` puts a finger on the reader.
    pub fn finger(&self, person: u32) -> Result<(), SimError> {
        self.present(Modality::Fingerprint, person)
    }

    /// Person `person` holds a palm over the palm-vein window.
    pub fn palm(&self, person: u32) -> Result<(), SimError> {
        self.present(Modality::Palm, person)
    }

    /// Person `person` steps in front of the camera (automatic face
    /// recognition, B-6.2); `None` = they walk away.
    pub fn face(&self, person: Option<u32>) -> Result<(), SimError> {
        if person == Some(0) {
            return Err(SimError::BadPerson);
        }
        let camera = self.shared.world().camera.clone();
        if let Some(camera) = camera {
            // The real pipeline sees the picture; recognition starts from
            // the camera's motion trigger or a keypad touch, as on a lock.
            camera.show_person(person)?;
            self.shared.world().face_present = person;
            self.shared.bump();
            return Ok(());
        }
        match person {
            None => {
                self.shared.world().face_present = None;
                self.shared.bump();
                Ok(())
            }
            Some(p) => {
                if p == 0 {
                    return Err(SimError::BadPerson);
                }
                self.shared.world().face_present = Some(p);
                self.present(Modality::Face, p)
            }
        }
    }

    fn present(&self, modality: Modality, person: u32) -> Result<(), SimError> {
        if person == 0 {
            return Err(SimError::BadPerson);
        }
        if let Some(hands) = &self.shared.hands {
            // The module reads the finger/palm and reports by itself.
            if hands.present(modality, person) {
                self.shared.bump();
                return Ok(());
            }
        }
        let reports = self.shared.world().modules.present(modality, person)?;
        self.shared.bump();
        self.shared
            .push_all(reports.into_iter().map(Input::Module).collect())
    }

    /// Make the next `moves` motor moves jam between the limit switches.
    pub fn jam(&self, moves: u32) {
        self.shared.world().jams_pending = moves;
        self.shared.bump();
    }

    /// Make the motor driver refuse every command with `fault` (a burnt
    /// H-bridge, a driver that lost power), or heal it with `None`.
    pub fn motor_fault(&self, fault: Option<String>) {
        self.shared.world().motor_fault = fault;
        self.shared.bump();
    }

    /// Everything the lock shows now.
    pub fn snapshot(&self) -> SimSnapshot {
        let outside_slots = self.shared.hands.as_ref().map(|h| h.slots());
        let w = self.shared.world();
        let now = TokioInstant::now();
        SimSnapshot {
            bolt: w.bolt,
            door: w.door,
            motor: w.motor,
            motor_cycles: w.motor_cycles,
            jams: w.jams,
            jams_pending: w.jams_pending,
            keypad: w.keypad.clone(),
            power: w.power,
            tamper: w.tamper,
            alarms: w
                .alarms
                .iter()
                .filter(|(_, until)| *until > now)
                .map(|(kind, until)| SoundingAlarm {
                    kind: *kind,
                    remaining_ms: until.duration_since(now).as_millis() as u64,
                })
                .collect(),
            face_present: w.face_present,
            snapshots: w.snapshots,
            modules: {
                let mut m = w.modules.slots();
                if let Some((finger, palm)) = outside_slots {
                    m.fingerprint = finger;
                    m.palm = palm;
                }
                m
            },
            enrolling: w.modules.enrolling(),
        }
    }

    /// The last `n` prompts, oldest first.
    pub fn prompts(&self, n: usize) -> Vec<PromptRecord> {
        let w = self.shared.world();
        let skip = w.prompts.len().saturating_sub(n);
        w.prompts.iter().skip(skip).cloned().collect()
    }

    /// Notified on every change of the simulated lock (front panel redraw).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }

    /// Wait until no motor move is in progress.
    pub async fn motor_idle(&self) {
        let mut rx = self.subscribe();
        loop {
            if self.shared.world().motor == MotorState::Idle {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
