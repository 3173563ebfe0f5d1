//! Stand-ins for devices a board does not have, so the engine is told
//! rather than left waiting: a board without a face service answers every
//! face command with a `Fault` report; a board without a snapshot camera
//! refuses each snapshot with a clear error (logged by the daemon).
//!
//! Driven like any device, by `Board::perform`; they own nothing but the
//! way a report reaches the engine.
use super::{Camera, DeviceError, FaceSource};
use crate::core::action::SnapshotReason;
use crate::core::input::ModuleReport;
use crate::core::types::Modality;
use crate::core::{Input, ModuleCmd};
use crate::link::OrderedSender;

/// A board with no face service: every face command is answered with a
/// `Fault` report, so the engine tells the person and carries on (face
/// recognition simply never succeeds).
#[derive(Debug)]
pub struct UnavailableFace {
    reports: OrderedSender,
}

impl UnavailableFace {
    pub fn new(reports: OrderedSender) -> Self {
        UnavailableFace { reports }
    }
}

impl FaceSource for UnavailableFace {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        tracing::warn!(?cmd, "face command on a board without a face service");
        // `false` only when the engine has stopped (shutdown): nothing to do.
        let _ = self.reports.push(Input::Module(ModuleReport::Fault {
            modality: Modality::Face,
            detail: NO_FACE.into(),
        }));
        Ok(())
    }

    fn absent(&self) -> Option<&'static str> {
        Some(NO_FACE)
    }
}

const NO_CAMERA: &str = "this board has no camera ([video] and [face] are off)";
const NO_FACE: &str = "this board has no face service; face recognition is not available";

/// A board without a snapshot camera: each snapshot is refused with a
/// clear error; nothing else changes.
#[derive(Debug)]
pub struct UnavailableCamera;

impl Camera for UnavailableCamera {
    fn snapshot(&mut self, _reason: SnapshotReason) -> Result<(), DeviceError> {
        Err(DeviceError::Unavailable {
            device: "camera",
            detail: NO_CAMERA.into(),
        })
    }

    fn absent(&self) -> Option<&'static str> {
        Some(NO_CAMERA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::InputSender;

    #[tokio::test]
    async fn without_a_face_service_face_commands_report_a_fault() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let mut face = UnavailableFace::new(OrderedSender::spawn(InputSender::new(tx)));
        face.command(&ModuleCmd::RecogniseFace).expect("answered");
        assert!(matches!(
            rx.recv().await,
            Some(Input::Module(ModuleReport::Fault {
                modality: Modality::Face,
                ..
            }))
        ));
        let e = UnavailableCamera
            .snapshot(SnapshotReason::Doorbell)
            .expect_err("no camera");
        assert!(matches!(e, DeviceError::Unavailable { .. }), "{e}");
    }
}
