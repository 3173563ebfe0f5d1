//! Start-up step 2: the board, complete, before the engine task sees it.
//!
//! ```text
//!   [board] "sim" ─► board::sim::build (simulated devices, SimControl for the panel/socket)
//!   [board] "linux" ─► board file (read once) ─► UART module adapters (reconciled with the
//!                      stored credentials) ─► board::linux::board::build (GPIO, SPI, ALSA, …)
//!        then, when [video] or [face] asks: camera ─► FrameRing ─► snapshots (board.camera),
//!             face service with IR liveness (board.face), motion trigger and stream later
//! ```
//!
//! Everything the engine will drive is installed here, in one function, so
//! the engine task never sees a half-built board.
use super::camera::{self, CameraRig};
use super::{DaemonError, Options};
use crate::board::sim::{self, SimConfig, SimControl};
use crate::board::Board;
use crate::config::BoardKind;
use crate::core::types::Persisted;
use crate::link::InputSender;

/// The Linux board file, loaded once for the board and its camera.
#[cfg(feature = "board-linux")]
pub type BoardFile = crate::board::linux::config::BoardConfig;
/// Without the Linux backends there is no board file (uninhabited).
#[cfg(not(feature = "board-linux"))]
pub type BoardFile = std::convert::Infallible;

/// What building the board produced.
#[derive(Debug)]
pub struct BuiltBoard {
    /// Every device of the lock, camera and face source included.
    pub board: Board,
    /// The simulated board's buttons (sim board only): front panel and
    /// control socket.
    pub sim: Option<SimControl>,
    /// B-10.6: SET held while the battery went in (`--set-held`, or read
    /// from the Linux board).
    pub set_held: bool,
    /// The running camera, when `[video]` or `[face]` opened one.
    pub camera: Option<CameraRig>,
}

/// Build the board the config names, then install the camera's consumers.
pub async fn build(
    opts: &Options,
    persisted: &Persisted,
    inputs: &InputSender,
) -> Result<BuiltBoard, DaemonError> {
    let config = &opts.config;
    let (mut board, sim, held, board_file) = match config.board {
        BoardKind::Sim => {
            let (board, control) = sim_board(opts, inputs)?;
            (board, Some(control), false, None::<BoardFile>)
        }
        #[cfg(feature = "board-linux")]
        BoardKind::Linux => {
            let path = config.board_file.as_ref().ok_or(DaemonError::NoBoardFile)?;
            let file = BoardFile::load(path)?;
            let (board, held) = linux_board(&file, persisted, inputs).await?;
            (board, None, held, Some(file))
        }
        other => return Err(DaemonError::BoardUnavailable(other.name())),
    };
    let camera = camera::start(
        config,
        &opts.state_dir,
        persisted,
        &mut board,
        sim.as_ref(),
        board_file.as_ref(),
        inputs,
    )?;
    Ok(BuiltBoard {
        board,
        sim,
        set_held: opts.set_held || held,
        camera,
    })
}

/// The simulated lock, its modules' state kept in the state directory.
fn sim_board(opts: &Options, inputs: &InputSender) -> Result<(Board, SimControl), DaemonError> {
    let s = &opts.config.sim;
    Ok(sim::build(
        SimConfig {
            motor_travel: std::time::Duration::from_millis(s.motor_travel_ms),
            finger_touches: s.finger_touches,
            palm_touches: s.palm_touches,
            battery_percent: s.battery_percent,
            modules_file: Some(opts.state_dir.join("sim-modules.json")),
            prompt_log_len: 200,
            modules: s.modules,
        },
        inputs.clone(),
    )?)
}

/// The Linux board from its board file: UART modules through their
/// adapters (reconciled against the stored credentials), then
/// `board::linux::board::build`. Returns whether SET was held at power-up.
#[cfg(feature = "board-linux")]
async fn linux_board(
    file: &BoardFile,
    persisted: &Persisted,
    inputs: &InputSender,
) -> Result<(Board, bool), DaemonError> {
    use crate::board::linux::board;
    use crate::board::modules;
    let peripherals =
        modules::linux_peripherals(file, persisted, modules::engine_sink(inputs.clone()));
    Ok(board::build(file, inputs.clone(), peripherals).await?)
}
