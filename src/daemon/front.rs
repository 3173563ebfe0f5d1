//! Start-up step 4: the front-ends of the simulated lock — the terminal
//! front panel and the control socket. A real lock has neither: its front
//! panel is the hardware.
//!
//! ```text
//!   SimControl ─┬─► panel::run (the terminal: keys in, keypad/LEDs/prompts out)
//!               └─► control::serve (<state-dir>/control.sock, one JSON line each way)
//!   both read the published status and logged events through the Link
//! ```
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{control, panel, DaemonError, Options};
use crate::board::sim::SimControl;
use crate::link::Link;

/// The running front-ends; each ends when the shutdown token is cancelled.
#[derive(Debug, Default)]
pub struct FrontEnds {
    /// The control socket's accept loop (removes the socket file on exit).
    pub control: Option<JoinHandle<()>>,
    /// The terminal front panel (restores the terminal on exit).
    pub panel: Option<JoinHandle<()>>,
}

/// Serve the control socket and draw the front panel, as asked (sim only).
pub fn attach(
    opts: &Options,
    sim: Option<&SimControl>,
    link: &Link,
    shutdown: &CancellationToken,
) -> Result<FrontEnds, DaemonError> {
    let Some(sim) = sim else {
        return Ok(FrontEnds::default());
    };
    let control = match &opts.control_socket {
        Some(path) => {
            let listener = control::bind(path)?;
            tracing::info!("control socket at {}", path.display());
            let ctx = control::ControlContext {
                sim: sim.clone(),
                link: link.clone(),
            };
            Some(tokio::spawn(control::serve(
                listener,
                path.clone(),
                ctx,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let panel = opts.front_panel.then(|| {
        tokio::spawn(panel::run(
            sim.clone(),
            link.published(),
            Some(link.events()),
            shutdown.clone(),
        ))
    });
    Ok(FrontEnds { control, panel })
}
