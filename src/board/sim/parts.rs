//! Devices the simulated lock takes from outside `board::sim` instead of
//! simulating them itself, handed to [`build_with`](super::build_with) by
//! whoever builds the board (the daemon's board builder, tests).
//!
//! ```text
//!  SimParts.modules: FnOnce(SimReports) -> OutsideModules
//!     │   called once while the board is built, inside tokio
//!     ▼
//!  OutsideModules { fingerprint, palm }  ──► Board.fingerprint / Board.palm
//!                 { hands }              ◄── SimControl::finger / palm, snapshot().modules
//!  their reports ──► SimReports::report ──► panel redraw + OrderedSender ──► engine
//!
//!  SimParts.face:   SimFace { source ──► Board.face,
//!                             scene  ◄── SimControl::face(person) shows their picture }
//!  SimParts.camera: ──► Board.camera, after the sim's own snapshot counter
//! ```
//!
//! The board itself knows nothing of what is behind them: with
//! `[sim] modules = "wire"` the modules are the real UART drivers against
//! the wire-level simulators (`biometrics::wire`); with `[face]` the face
//! source is the real pipeline on the sim camera's frames
//! (`biometrics::face::worker`); with `[video]` or `[face]` the camera
//! stores JPEGs from the frame ring (`video::RingCamera`).
use std::sync::Arc;

use tokio::sync::watch;

use super::camera::SceneControl;
use super::ModuleSlots;
use crate::board::{Camera, FaceSource, FingerprintModule, PalmModule};
use crate::core::input::ModuleReport;
use crate::core::types::Modality;
use crate::core::Input;
use crate::link::OrderedSender;

/// What the sim board takes from outside; `Default` simulates everything.
#[derive(Default)]
pub struct SimParts {
    /// Fingerprint and palm readers, built once the board can take their
    /// reports.
    pub modules: Option<BuildModules>,
    /// Face recognition on a camera instead of the simulated face module.
    pub face: Option<SimFace>,
    /// Where snapshots go besides the sim's own counter (which the front
    /// panel and tests read); a failure here is the snapshot's failure.
    pub camera: Option<Box<dyn Camera>>,
}

impl std::fmt::Debug for SimParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimParts")
            .field("modules", &self.modules.is_some())
            .field("face", &self.face.is_some())
            .field("camera", &self.camera.is_some())
            .finish()
    }
}

/// A face source that looks at the sim camera: "person N at the door" is
/// then person N's picture in front of the camera, and recognition starts
/// as on a lock (keypad touch or motion), not from the simulated module.
pub struct SimFace {
    pub source: Box<dyn FaceSource>,
    /// The scene the camera shows.
    pub scene: SceneControl,
}

impl std::fmt::Debug for SimFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFace").finish_non_exhaustive()
    }
}

/// Builds the outside modules, given where their reports go.
pub type BuildModules = Box<dyn FnOnce(SimReports) -> OutsideModules + Send>;

/// Fingerprint and palm readers from outside, and the hands that present
/// fingers and palms to them.
pub struct OutsideModules {
    pub fingerprint: Box<dyn FingerprintModule>,
    pub palm: Box<dyn PalmModule>,
    pub hands: Arc<dyn SimHands>,
}

impl std::fmt::Debug for OutsideModules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutsideModules").finish_non_exhaustive()
    }
}

/// The person at the simulated lock, as outside modules see them.
pub trait SimHands: Send + Sync + std::fmt::Debug {
    /// `person` presents a finger or palm; `false` when these modules do
    /// not read `modality` (the sim board then simulates it itself).
    /// The module reports what it read through [`SimReports`], later.
    fn present(&self, modality: Modality, person: u32) -> bool;
    /// The modules' libraries as slot → person (fingerprint, palm), for
    /// the front panel and `status`.
    fn slots(&self) -> (ModuleSlots, ModuleSlots);
}

/// Where outside modules' reports enter the simulated lock: each one
/// redraws the front panel and goes to the engine, in order.
#[derive(Debug, Clone)]
pub struct SimReports {
    pub(super) out: OrderedSender,
    pub(super) changed: Arc<watch::Sender<u64>>,
}

impl SimReports {
    /// Hand one report to the engine; `false` when the engine has stopped.
    pub fn report(&self, report: ModuleReport) -> bool {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        self.out.push(Input::Module(report))
    }
}
