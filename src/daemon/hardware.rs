//! The board, built complete before the engine sees it: the configured
//! board's own devices, its fingerprint and palm modules, and — when
//! `[video]` or `[face]` asks for the camera — the camera's snapshots,
//! the face worker and its IR liveness source. Nothing is swapped into
//! the board afterwards.
//!
//! ```text
//!  Config, Persisted (loaded once by the caller)
//!    sim:   camera::open_sim ─► SimParts { modules ([sim] modules = "wire": biometrics::wire),
//!                                          face + scene, camera }
//!           └─► board::sim::build_with ─► Board + SimControl
//!    linux: board file (loaded once) ─► board::linux::board::coast_motor (safety first)
//!           ─► camera::open_linux ─► biometrics::uart::open (fingerprint, palm)
//!           └─► board::linux::board::build(Peripherals) ─► Board + SET held at power-up
//!    ▼
//!  BuiltBoard { board, sim, set_held, camera (the rig the video service serves later) }
//! ```
//!
//! [`build_board`] is the one entry: `daemon::start` calls it after opening
//! the store and before it builds the engine.
use std::path::Path;

use super::camera::{self, CameraRig};
use super::DaemonError;
use crate::biometrics::fingerprint::pairing::ModuleLink;
use crate::board::sim::{self, SimConfig, SimControl, SimFace, SimParts};
use crate::board::Board;
use crate::config::{BoardKind, Config, SimModuleKind};
use crate::core::types::Persisted;
use crate::link::InputSender;

/// A board ready for the engine task.
#[derive(Debug)]
pub struct BuiltBoard {
    pub board: Board,
    /// The simulated board's buttons (sim board only).
    pub sim: Option<SimControl>,
    /// B-10.6: SET held on the board for the whole factory-reset window
    /// at power-up (Linux board; the sim's comes from `--set-held`).
    pub set_held: bool,
    /// The running camera, for the engine task's credentials hook and the
    /// video services attached later; `None` without `[video]`/`[face]`.
    pub camera: Option<CameraRig>,
}

/// Build the configured board. `persisted` gives the credentials the
/// modules and the face worker start from. Must run inside the daemon's
/// runtime.
///
/// `finger_link` is the lock's fingerprint module password (issue 13 item
/// 7), for the Linux board's UART module. The sim board's simulated module
/// starts factory-fresh on every run and is not paired.
pub async fn build_board(
    config: &Config,
    state_dir: &Path,
    persisted: &Persisted,
    finger_link: ModuleLink,
    inputs: &InputSender,
) -> Result<BuiltBoard, DaemonError> {
    match config.board {
        BoardKind::Sim => build_sim(config, state_dir, persisted, inputs),
        #[cfg(feature = "board-linux")]
        BoardKind::Linux => build_linux(config, state_dir, persisted, finger_link, inputs).await,
        #[cfg(not(feature = "board-linux"))]
        BoardKind::Linux => {
            let _ = finger_link;
            Err(DaemonError::BoardUnavailable(BoardKind::Linux.name()))
        }
    }
}

fn build_sim(
    config: &Config,
    state_dir: &Path,
    persisted: &Persisted,
    inputs: &InputSender,
) -> Result<BuiltBoard, DaemonError> {
    let s = &config.sim;
    let sim_config = SimConfig {
        motor_travel: std::time::Duration::from_millis(s.motor_travel_ms),
        finger_touches: s.finger_touches,
        palm_touches: s.palm_touches,
        battery_percent: s.battery_percent,
        modules_file: Some(state_dir.join("sim-modules.json")),
        prompt_log_len: 200,
    };
    let camera = camera::open_sim(config, state_dir, persisted, inputs)?;
    let mut parts = SimParts {
        modules: match s.modules {
            SimModuleKind::Memory => None,
            SimModuleKind::Wire => Some(crate::biometrics::wire::sim_modules(&sim_config)),
        },
        ..SimParts::default()
    };
    let rig = camera.map(|c| {
        parts.camera = Some(c.snapshots);
        parts.face = match (c.face, c.scene) {
            (Some(source), Some(scene)) => Some(SimFace { source, scene }),
            _ => None,
        };
        c.rig
    });
    let (board, control) = sim::build_with(sim_config, inputs.clone(), parts)?;
    Ok(BuiltBoard {
        board,
        sim: Some(control),
        set_held: false,
        camera: rig,
    })
}

#[cfg(feature = "board-linux")]
async fn build_linux(
    config: &Config,
    state_dir: &Path,
    persisted: &Persisted,
    finger_link: ModuleLink,
    inputs: &InputSender,
) -> Result<BuiltBoard, DaemonError> {
    use crate::biometrics::{adapter::ReportSink, uart};
    use crate::board::absent::{UnavailableCamera, UnavailableFace};
    use crate::board::linux::{board, config::BoardConfig};
    use crate::link::OrderedSender;
    use std::sync::Arc;
    let path = config.board_file.as_ref().ok_or(DaemonError::NoBoardFile)?;
    let cfg = BoardConfig::load(path)?;
    // Safety first: whatever a previous process left energised stops
    // before the camera and modules are opened.
    let motor = board::coast_motor(&cfg)?;
    let camera = camera::open_linux(config, state_dir, &cfg, persisted, inputs)?;
    let reports = OrderedSender::spawn(inputs.clone());
    let sink: Arc<dyn ReportSink> = Arc::new(reports.clone());
    let modules = uart::open(&cfg, persisted, finger_link, sink);
    let (snapshots, face, rig) = match camera {
        Some(c) => (Some(c.snapshots), c.face, Some(c.rig)),
        None => (None, None, None),
    };
    let peripherals = board::Peripherals {
        fingerprint: Box::new(modules.fingerprint),
        palm: Box::new(modules.palm),
        face: face.unwrap_or_else(|| Box::new(UnavailableFace::new(reports))),
        camera: snapshots.unwrap_or_else(|| Box::new(UnavailableCamera)),
    };
    let (board, set_held) = board::build(&cfg, motor, inputs.clone(), peripherals).await?;
    Ok(BuiltBoard {
        board,
        sim: None,
        set_held,
        camera: rig,
    })
}
