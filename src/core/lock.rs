//! The bolt, the door and the motor, as the engine tracks them.
//!
//! ```text
//!            Drive{Retracted}                 Done(Retracted)
//!  Locked ───────────────────► Moving ──────────────────────► Unlocked
//!    ▲         Done(Extended)    │  Jammed{at}                    │
//!    └───────────────────────────┤───────────► Jammed ◄───────────┘
//!                                │   (next lock/unlock retries)
//! ```
//!
//! Which way the shaft turns depends on the door's handing (B-2.1). The
//! mapping chosen here, and tested: on a **right-hand** door the motor
//! retracts the bolt turning **counter-clockwise** and throws it
//! clockwise; a **left-hand** door is the mirror image (retract clockwise).
//! The board wires "clockwise" as seen from the inside, facing the door.
use serde::{Deserialize, Serialize};

use super::input::{BoltPosition, DoorPosition};
use super::types::{Handing, MotorDirection};

/// The shaft direction that drives the bolt to `target` on a door of
/// `handing`. `Between` is not a target; it maps like `Extended` so that no
/// caller can turn it into an unlock by accident.
pub fn direction(handing: Handing, target: BoltPosition) -> MotorDirection {
    let retract = matches!(target, BoltPosition::Retracted);
    match (handing, retract) {
        (Handing::RightHand, true) | (Handing::LeftHand, false) => MotorDirection::CounterClockwise,
        (Handing::RightHand, false) | (Handing::LeftHand, true) => MotorDirection::Clockwise,
    }
}

/// The lock as a whole, for status displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockState {
    Locked,
    Unlocked,
    Moving,
    Jammed,
    /// No limit switch has reported yet.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MotorState {
    Idle,
    Moving {
        target: BoltPosition,
    },
    /// The last move stalled (or the driver failed); the bolt is wherever
    /// the report said. The next command retries.
    Jammed,
}

#[derive(Debug, Clone)]
pub struct LockMech {
    pub bolt: BoltPosition,
    /// `None` until the door sensor reports. An unknown door is treated as
    /// closed for locking: refusing to lock would leave a door open to
    /// anyone, which is the failure a lock must not have.
    pub door: Option<DoorPosition>,
    pub motor: MotorState,
    /// Completed motor moves (wear counter for diagnostics).
    pub cycles: u64,
}

impl Default for LockMech {
    fn default() -> Self {
        LockMech {
            bolt: BoltPosition::Between,
            door: None,
            motor: MotorState::Idle,
            cycles: 0,
        }
    }
}

impl LockMech {
    pub fn door_open(&self) -> bool {
        self.door == Some(DoorPosition::Open)
    }

    pub fn state(&self) -> LockState {
        match self.motor {
            MotorState::Moving { .. } => LockState::Moving,
            MotorState::Jammed => LockState::Jammed,
            MotorState::Idle => match self.bolt {
                BoltPosition::Extended => LockState::Locked,
                BoltPosition::Retracted => LockState::Unlocked,
                BoltPosition::Between => LockState::Unknown,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handing_decides_the_retract_direction() {
        use BoltPosition::*;
        use MotorDirection::*;
        assert_eq!(direction(Handing::RightHand, Retracted), CounterClockwise);
        assert_eq!(direction(Handing::RightHand, Extended), Clockwise);
        assert_eq!(direction(Handing::LeftHand, Retracted), Clockwise);
        assert_eq!(direction(Handing::LeftHand, Extended), CounterClockwise);
    }
}
