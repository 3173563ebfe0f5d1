//! Simulated fingerprint, palm-vein and face modules that know *people*.
//!
//! A simulated person is a number (1, 2, 3...). Each module has template
//! slots, each holding the person it was enrolled from:
//!
//! ```text
//!   idle:       present(person) ─► slot holding person? ─ yes ─► Recognised{slot}
//!                                                        └ no ──► NotRecognised
//!   Enrol{slot}: present × N ─► EnrolProgress after each but the last ─►
//!                 all the same person? ─ no ─► EnrolFailed(Quality)
//!                 fingerprint already enrolled? ─ yes ─► EnrolFailed(Duplicate{slot}) (B-1.3)
//!                 else store person in slot ─► Enrolled{slot}
//! ```
//!
//! N is [`SimConfig::finger_touches`](super::SimConfig) for fingers,
//! `palm_touches` for palms and the five poses of B-4.5 for faces (each
//! capture answered with the next pose). Face templates come back as bytes
//! for the store to seal, like the real pipeline's embeddings; finger and
//! palm templates stay in the module.
//!
//! The slots are written to the modules file after every change (write to
//! a temporary file, then rename), so they survive a daemon restart as a
//! real module's flash does.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Shared, SimError};
use crate::board::{DeviceError, FaceSource, FingerprintModule, PalmModule};
use crate::core::input::{EnrolFailure, EnrolStep, FacePose, ModuleReport};
use crate::core::types::Modality;
use crate::core::{Input, ModuleCmd};

/// Slot → simulated person.
pub type ModuleSlots = BTreeMap<u16, u32>;

/// The three modules' slots, as stored in the modules file and shown by
/// `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimModules {
    pub fingerprint: ModuleSlots,
    pub palm: ModuleSlots,
    pub face: ModuleSlots,
}

/// Face enrolment poses, in the order of B-4.5.
const FACE_POSES: [FacePose; 5] = [
    FacePose::Straight,
    FacePose::Up,
    FacePose::Down,
    FacePose::Left,
    FacePose::Right,
];

#[derive(Debug)]
struct Enrolling {
    slot: u16,
    /// Who presented so far (all must be the same person).
    captures: Vec<u32>,
}

#[derive(Debug)]
pub(super) struct Modules {
    slots: SimModules,
    enrolling: BTreeMap<Modality, Enrolling>,
    finger_touches: u8,
    palm_touches: u8,
    file: Option<PathBuf>,
}

/// Bytes standing in for a face embedding of `person`.
fn face_template(person: u32) -> Vec<u8> {
    let mut t = b"latchd-sim-face:".to_vec();
    t.extend_from_slice(&person.to_le_bytes());
    t
}

impl Modules {
    pub(super) fn load(
        file: Option<PathBuf>,
        finger_touches: u8,
        palm_touches: u8,
    ) -> Result<Self, SimError> {
        let slots = match &file {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SimError::ModulesFile {
                    path: path.display().to_string(),
                    detail: e.to_string(),
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => SimModules::default(),
                Err(e) => {
                    return Err(SimError::ModulesFile {
                        path: path.display().to_string(),
                        detail: e.to_string(),
                    })
                }
            },
            None => SimModules::default(),
        };
        Ok(Modules {
            slots,
            enrolling: BTreeMap::new(),
            finger_touches: finger_touches.max(1),
            palm_touches: palm_touches.max(1),
            file,
        })
    }

    pub(super) fn slots(&self) -> SimModules {
        self.slots.clone()
    }

    pub(super) fn enrolling(&self) -> Vec<Modality> {
        self.enrolling.keys().copied().collect()
    }

    fn table(&mut self, m: Modality) -> &mut ModuleSlots {
        match m {
            Modality::Fingerprint => &mut self.slots.fingerprint,
            Modality::Palm => &mut self.slots.palm,
            Modality::Face => &mut self.slots.face,
        }
    }

    fn captures_needed(&self, m: Modality) -> usize {
        match m {
            Modality::Fingerprint => usize::from(self.finger_touches),
            Modality::Palm => usize::from(self.palm_touches),
            Modality::Face => FACE_POSES.len(),
        }
    }

    fn save(&self) -> Result<(), std::io::Error> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let json = serde_json::to_vec_pretty(&self.slots).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)
    }

    /// Someone presents a finger/palm/face: a capture for an enrolment in
    /// progress, or else a recognition.
    pub(super) fn present(
        &mut self,
        modality: Modality,
        person: u32,
    ) -> Result<Vec<ModuleReport>, SimError> {
        let needed = self.captures_needed(modality);
        let Some(enrol) = self.enrolling.get_mut(&modality) else {
            return Ok(vec![self.recognise(modality, person)]);
        };
        enrol.captures.push(person);
        let n = enrol.captures.len();
        if n < needed {
            let step = match modality {
                Modality::Face => EnrolStep::FacePose(FACE_POSES[n % FACE_POSES.len()]),
                _ => EnrolStep::PresentAgain {
                    n: (n + 1) as u8,
                    of: needed as u8,
                },
            };
            return Ok(vec![ModuleReport::EnrolProgress { modality, step }]);
        }
        // The last capture: merge, check, store.
        let Some(enrol) = self.enrolling.remove(&modality) else {
            return Ok(Vec::new());
        };
        let first = enrol.captures[0];
        if enrol.captures.iter().any(|p| *p != first) {
            return Ok(vec![ModuleReport::EnrolFailed {
                modality,
                reason: EnrolFailure::Quality,
            }]);
        }
        if modality == Modality::Fingerprint {
            if let Some((slot, _)) = self.slots.fingerprint.iter().find(|(_, p)| **p == first) {
                return Ok(vec![ModuleReport::EnrolFailed {
                    modality,
                    reason: EnrolFailure::Duplicate { slot: *slot },
                }]);
            }
        }
        self.table(modality).insert(enrol.slot, first);
        if let Err(e) = self.save() {
            self.table(modality).remove(&enrol.slot);
            return Ok(vec![ModuleReport::EnrolFailed {
                modality,
                reason: EnrolFailure::Module(format!("module flash write failed: {e}")),
            }]);
        }
        let template = (modality == Modality::Face).then(|| face_template(first));
        Ok(vec![ModuleReport::Enrolled {
            modality,
            slot: enrol.slot,
            template,
        }])
    }

    fn recognise(&mut self, modality: Modality, person: u32) -> ModuleReport {
        match self.table(modality).iter().find(|(_, p)| **p == person) {
            Some((slot, _)) => ModuleReport::Recognised {
                modality,
                slot: *slot,
            },
            None => ModuleReport::NotRecognised { modality },
        }
    }

    fn command(
        &mut self,
        modality: Modality,
        cmd: &ModuleCmd,
        face_present: Option<u32>,
    ) -> Result<Vec<ModuleReport>, DeviceError> {
        let device = match modality {
            Modality::Fingerprint => "fingerprint module",
            Modality::Palm => "palm-vein module",
            Modality::Face => "face camera",
        };
        let io = |source| DeviceError::Io { device, source };
        match *cmd {
            ModuleCmd::Enrol { slot, .. } => {
                if self.table(modality).contains_key(&slot) {
                    // Never overwrite someone else's template.
                    return Ok(vec![ModuleReport::EnrolFailed {
                        modality,
                        reason: EnrolFailure::Module(format!("slot {slot} is occupied")),
                    }]);
                }
                self.enrolling.insert(
                    modality,
                    Enrolling {
                        slot,
                        captures: Vec::new(),
                    },
                );
                Ok(Vec::new())
            }
            ModuleCmd::CancelEnrol { .. } => {
                self.enrolling.remove(&modality);
                Ok(Vec::new())
            }
            ModuleCmd::Delete { slot, .. } => {
                let removed = self.table(modality).remove(&slot);
                if let Err(e) = self.save() {
                    if let Some(p) = removed {
                        self.table(modality).insert(slot, p);
                    }
                    return Err(io(e));
                }
                Ok(Vec::new())
            }
            ModuleCmd::Wipe { .. } => {
                self.enrolling.remove(&modality);
                let old = std::mem::take(self.table(modality));
                if let Err(e) = self.save() {
                    *self.table(modality) = old;
                    return Err(io(e));
                }
                Ok(Vec::new())
            }
            // The in-memory modules have no module password to pair.
            ModuleCmd::Pair { .. } => Ok(Vec::new()),
            ModuleCmd::RecogniseFace => {
                if modality != Modality::Face {
                    return Err(DeviceError::Unsupported {
                        device,
                        what: "face recognition".into(),
                    });
                }
                // Nobody in front of the camera: no attempt, so no failed
                // verification counts towards a lockout.
                Ok(face_present
                    .map(|p| self.recognise(modality, p))
                    .into_iter()
                    .collect())
            }
        }
    }
}

/// One simulated module as the board holds it.
pub(super) struct SimModule {
    shared: Shared,
    modality: Modality,
}

impl SimModule {
    pub(super) fn new(shared: Shared, modality: Modality) -> Self {
        SimModule { shared, modality }
    }

    fn run(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        let reports = {
            let mut w = self.shared.world();
            let face_present = w.face_present;
            w.modules.command(self.modality, cmd, face_present)?
        };
        self.shared.bump();
        for r in reports {
            // Only fails when the engine has stopped (shutdown).
            let _ = self.shared.push(Input::Module(r));
        }
        Ok(())
    }
}

impl FingerprintModule for SimModule {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        self.run(cmd)
    }
}

impl PalmModule for SimModule {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        self.run(cmd)
    }
}

impl FaceSource for SimModule {
    fn command(&mut self, cmd: &ModuleCmd) -> Result<(), DeviceError> {
        self.run(cmd)
    }
}
