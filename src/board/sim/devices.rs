//! The simple simulated devices: sensors read the world; the keypad,
//! speaker, buzzer and camera write to it for the front panel to show.
use std::time::Duration;

use tokio::time::Instant as TokioInstant;

use super::{PromptRecord, Shared};
use crate::board::{
    Alarm, Battery, BoltSensor, Camera, DeviceError, DoorSensor, Keypad, Tamper, Voice,
};
use crate::core::action::SnapshotReason;
use crate::core::input::{BoltPosition, DoorPosition, PowerReading, TamperState};
use crate::core::{AlarmKind, KeypadView, Language, Prompt};

/// Bolt limit switches, door sensor, battery gauge and tamper switch.
pub(super) struct Sensors(pub(super) Shared);

impl BoltSensor for Sensors {
    fn read(&self) -> Result<BoltPosition, DeviceError> {
        Ok(self.0.world().bolt)
    }
}

impl DoorSensor for Sensors {
    fn read(&self) -> Result<DoorPosition, DeviceError> {
        Ok(self.0.world().door)
    }
}

impl Battery for Sensors {
    fn read(&self) -> Result<PowerReading, DeviceError> {
        Ok(self.0.world().power)
    }
}

impl Tamper for Sensors {
    fn read(&self) -> Result<TamperState, DeviceError> {
        Ok(self.0.world().tamper)
    }
}

/// Keypad lights, speaker, buzzer and camera.
pub(super) struct Panel(pub(super) Shared);

impl Keypad for Panel {
    fn show(&mut self, view: &KeypadView) -> Result<(), DeviceError> {
        {
            let mut w = self.0.world();
            if !view.awake {
                // Asleep again: the next key press needs its waking touch.
                w.touch_sent = false;
            }
            w.keypad = view.clone();
        }
        self.0.bump();
        Ok(())
    }
}

impl Voice for Panel {
    fn say(&mut self, prompt: &Prompt, lang: Language) -> Result<(), DeviceError> {
        {
            let mut w = self.0.world();
            let at_ms = TokioInstant::now().duration_since(w.started).as_millis() as u64;
            let record = PromptRecord {
                at_ms,
                asset: prompt.asset(),
                language: lang,
                text: prompt.text(lang),
            };
            tracing::info!(target: "latchd::voice", prompt = %record.text);
            if w.prompts.len() >= w.prompt_log_len {
                w.prompts.pop_front();
            }
            w.prompts.push_back(record);
        }
        self.0.bump();
        Ok(())
    }
}

impl Alarm for Panel {
    fn sound(&mut self, kind: AlarmKind, duration: Duration) -> Result<(), DeviceError> {
        tracing::warn!(target: "latchd::alarm", ?kind, ?duration, "alarm sounding");
        let until = TokioInstant::now() + duration;
        let mut w = self.0.world();
        w.alarms.retain(|(k, _)| *k != kind);
        w.alarms.push((kind, until));
        drop(w);
        self.0.bump();
        Ok(())
    }

    fn silence(&mut self, kind: AlarmKind) -> Result<(), DeviceError> {
        self.0.world().alarms.retain(|(k, _)| *k != kind);
        self.0.bump();
        Ok(())
    }
}

impl Camera for Panel {
    fn snapshot(&mut self, reason: SnapshotReason) -> Result<(), DeviceError> {
        tracing::info!(target: "latchd::camera", ?reason, "snapshot taken");
        self.0.world().snapshots += 1;
        self.0.bump();
        Ok(())
    }
}

/// The sim's snapshot counter, then a camera that stores the picture
/// (`SimParts::camera`). Both are asked; the store's failure is the
/// snapshot's failure (the counter cannot fail).
pub(super) struct StoredSnapshots {
    pub(super) counter: Panel,
    pub(super) store: Box<dyn Camera>,
}

impl Camera for StoredSnapshots {
    fn snapshot(&mut self, reason: SnapshotReason) -> Result<(), DeviceError> {
        self.snapshot_for_event(reason, None)
    }

    fn snapshot_for_event(
        &mut self,
        reason: SnapshotReason,
        event: Option<u64>,
    ) -> Result<(), DeviceError> {
        let counted = self.counter.snapshot(reason);
        let stored = self.store.snapshot_for_event(reason, event);
        counted.and(stored)
    }
}
