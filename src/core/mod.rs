//! The lock engine: every rule of the lock, and nothing else.
//!
//! # Sans I/O
//!
//! The engine is a deterministic state machine in the style of str0m. It
//! does no IO, spawns no tasks, never sleeps and never reads a clock: time
//! comes in with every call as [`Now`] (a monotonic instant for timers, and
//! the wall clock — possibly unknown — for validity windows and stamps).
//! Hardware and services talk to it only through [`Input`]s and
//! [`Action`]s, so every behaviour in `BEHAVIOUR.md` is a test that feeds
//! inputs with a made-up `now` and asserts the actions, faster than real
//! time.
//!
//! ```text
//!   board tasks ─┐                       ┌─► persist (SQLite, one txn)
//!   BLE / remote ├─► Input ─► Engine ─► Action ─► motor, keypad, voice,
//!   timers ──────┘     ▲     (core/)        │       alarms, modules, app
//!                      └── next_deadline ◄──┘
//! ```
//!
//! # Parts
//!
//! ```text
//!   engine.rs   Engine: state, handle() dispatch, deadlines, status, unlock/lock,
//!               credentials presented, alarms and power
//!   menu.rs     front keypad and voice menu: first start, menu, enrolment,
//!               delete, factory reset, mute, away, doorbell, outside lock
//!   app.rs      app commands: who may do what (pairing/owner/guest), settings
//!   matter.rs   what a Matter fabric's administrator may do (Door Lock cluster)
//!   attempt.rs  verification attempts: stored before they answer, lockout
//!               outcomes, biometrics, manual and automatic face
//!   users.rs    users, credentials, visitor codes, app keys + lookup indexes
//!   passcode.rs B-2.3 rules, HMAC of codes, anti-peep window index
//!   policy.rs   the brute-force budget (B-7): weighted strikes, escalating
//!               lockouts, keypad disable; persisted as remaining durations
//!   auto_face.rs  automatic face recognition's own budget (B-6.2)
//!   trusted_time.rs  the trusted-time floor: no wall time behind it counts
//!   lock.rs     bolt/door/motor state, handing → motor direction
//!   door.rs     door alarms: door left open (DoorAjar), forced entry
//!               (DoorForcedOpen), one alarm per episode
//!   update.rs   software updates: who starts one, when it may install and
//!               restart (the safety rule), which versions it accepts
//!   lang/       the prompt languages: one table of texts per language
//!   input.rs · action.rs · event.rs · types.rs · time.rs   the vocabulary
//! ```
//!
//! # The run loop the daemon uses
//!
//! ```text
//! let mut engine = Engine::new(config, store.load()?, now());
//! apply(engine.handle(now(), Input::PowerUp { set_held }));
//! loop {
//!     let input = select! {
//!         input = inputs.recv() => input,
//!         _ = sleep_until(engine.next_deadline()) => Input::Tick,
//!     };
//!     apply(engine.handle(now(), input)); // persist first, then the rest, in order
//! }
//! // on an orderly shutdown:
//! store.apply(&engine.shutdown_changes(now()));
//! ```
pub mod action;
mod app;
pub mod attempt;
pub mod auto_face;
pub mod door;
mod engine;
pub mod event;
pub mod input;
pub mod lang;
pub mod lock;
mod matter;
mod menu;
mod modes;
pub mod noise;
pub mod passcode;
pub mod policy;
pub mod redacted;
pub mod schedule;
pub mod time;
pub mod trusted_time;
pub mod types;
pub mod update;
pub mod users;
pub mod wifi_signal;

pub use engine::{
    Engine, EngineConfig, PairingCodes, Status, FACTORY_RESET_WINDOW, IDENTIFY_FLASH, IDENTIFY_GAP,
    KEYPAD_SLEEP, PAIRING_WINDOW, TAMPER_ALARM,
};
pub use lock::LockState;
pub use users::{AppAccess, CredentialCounts};

pub use action::{Action, AppError, AppOk, AppResult, KeypadView, ModuleCmd, MotorCmd, Prompt};
pub use event::{AlarmKind, Event, EventKind, LockHow};
pub use input::{AppCommand, AppRequest, Channel, Input, ModuleReport, Principal};
pub use lang::Language;
pub use time::{Instant, Now, Validity, WallTime};
pub use types::{Change, Persisted};
