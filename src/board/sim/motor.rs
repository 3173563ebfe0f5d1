//! The simulated motor: drives the bolt between its limit switches.
//!
//! ```text
//!   drive(target) ─► bolt leaves its switch: Bolt(Between)
//!                    ... motor_travel (tokio time) ...
//!                 ├─ jam scripted ─► stays Between: Motor(Jammed{at: Between})
//!                 └─ otherwise ────► Bolt(target), Motor(Done(target))
//! ```
//!
//! A bolt already at the target "moves" in no time and reports `Done`, as
//! a real driver does when the limit switch is already closed.
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

use super::{MotorState, Shared};
use crate::board::{DeviceError, Motor};
use crate::core::input::{BoltPosition, MotorReport};
use crate::core::types::MotorDirection;
use crate::core::Input;

pub(super) struct SimMotor {
    shared: Shared,
    travel: Duration,
    /// The move in progress; a new drive or `stop` aborts it.
    task: Option<JoinHandle<()>>,
}

impl SimMotor {
    pub(super) fn new(shared: Shared, travel: Duration) -> Self {
        SimMotor {
            shared,
            travel,
            task: None,
        }
    }

    /// The scripted driver fault, if any ([`super::SimControl::motor_fault`]).
    fn fault(&self) -> Result<(), DeviceError> {
        match &self.shared.world().motor_fault {
            Some(detail) => Err(DeviceError::Fault {
                device: "motor",
                detail: detail.clone(),
            }),
            None => Ok(()),
        }
    }

    fn abort_move(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.shared.world().motor = MotorState::Idle;
    }
}

impl Motor for SimMotor {
    fn drive(
        &mut self,
        target: BoltPosition,
        _direction: MotorDirection,
    ) -> Result<(), DeviceError> {
        self.fault()?;
        if target == BoltPosition::Between {
            return Err(DeviceError::Unsupported {
                device: "motor",
                what: "a move to no limit switch (target `between`)".into(),
            });
        }
        self.abort_move();
        let shared = self.shared.clone();
        let travel = self.travel;
        let at_target = {
            let mut w = shared.world();
            w.motor = MotorState::Moving { target };
            w.bolt == target
        };
        shared.bump();
        self.task = Some(tokio::spawn(async move {
            if !at_target {
                {
                    shared.world().bolt = BoltPosition::Between;
                }
                shared.bump();
                // The engine has stopped only at shutdown; nothing to report to.
                let _ = shared.push(Input::Bolt(BoltPosition::Between));
                tokio::time::sleep(travel).await;
            }
            let reports = {
                let mut w = shared.world();
                w.motor = MotorState::Idle;
                if !at_target && w.jams_pending > 0 {
                    w.jams_pending -= 1;
                    w.jams += 1;
                    vec![Input::Motor(MotorReport::Jammed {
                        at: BoltPosition::Between,
                    })]
                } else {
                    w.bolt = target;
                    if !at_target {
                        w.motor_cycles += 1;
                    }
                    vec![Input::Bolt(target), Input::Motor(MotorReport::Done(target))]
                }
            };
            shared.bump();
            let _ = shared.push_all(reports);
        }));
        Ok(())
    }

    fn stop(&mut self) -> Result<(), DeviceError> {
        self.fault()?;
        self.abort_move();
        self.shared.bump();
        Ok(())
    }

    fn is_moving(&self) -> bool {
        matches!(self.shared.world().motor, MotorState::Moving { .. })
    }

    fn settle(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(t) = self.task.take() {
                // An aborted move ends with a cancelled join; either way the
                // move is over.
                let _ = t.await;
            }
        })
    }
}
