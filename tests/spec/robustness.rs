//! The engine never panics, whatever arrives in whatever order.
use latchd::core::input::{
    BoltPosition, DoorPosition, EnrolFailure, EnrolStep, ModuleReport, MotorReport, PowerReading,
    SetPress, TamperState,
};
use latchd::core::types::{Key, Modality, Role, SettingChange};
use latchd::core::{AppCommand, AppRequest, Channel, Input, Principal, Validity};

use crate::harness::{n, Sim};

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_input(r: &mut Rng) -> Input {
    let modality = [Modality::Face, Modality::Palm, Modality::Fingerprint][r.pick(3) as usize];
    let slot = r.pick(60) as u16;
    match r.pick(24) {
        0..=7 => Input::Key(Key::ALL[r.pick(14) as usize]),
        8 => Input::Touch,
        9 => Input::Tick,
        10 => Input::Set(if r.pick(2) == 0 {
            SetPress::Short
        } else {
            SetPress::Long
        }),
        11 => Input::Module(ModuleReport::Recognised { modality, slot }),
        12 => Input::Module(ModuleReport::NotRecognised { modality }),
        13 => Input::Module(ModuleReport::Enrolled {
            modality,
            slot,
            template: (r.pick(2) == 0).then(|| vec![1; 8]),
        }),
        14 => Input::Module(ModuleReport::EnrolProgress {
            modality,
            step: EnrolStep::PresentAgain { n: 1, of: 3 },
        }),
        15 => Input::Module(ModuleReport::EnrolFailed {
            modality,
            reason: EnrolFailure::Duplicate { slot },
        }),
        16 => Input::Door(if r.pick(2) == 0 {
            DoorPosition::Open
        } else {
            DoorPosition::Closed
        }),
        17 => Input::Bolt(BoltPosition::Retracted),
        18 => Input::Motor(match r.pick(3) {
            0 => MotorReport::Done(BoltPosition::Extended),
            1 => MotorReport::Done(BoltPosition::Retracted),
            _ => MotorReport::Jammed {
                at: BoltPosition::Between,
            },
        }),
        19 => Input::Tamper(TamperState::Opened),
        20 => Input::Power(PowerReading {
            percent: r.pick(101) as u8,
            millivolts: 7000,
            external: r.pick(2) == 0,
        }),
        21 => Input::KeyHeld(Key::Digit(0)),
        22 => Input::LockButton,
        _ => Input::App(AppRequest {
            id: r.next(),
            via: Channel::Ble,
            principal: Principal::Owner {
                key: latchd::core::types::AppKeyId(r.pick(3) as u32),
                admin: n(1),
            },
            command: match r.pick(5) {
                0 => AppCommand::Unlock,
                1 => AppCommand::AddUser {
                    role: Role::User,
                    validity: Validity::ALWAYS,
                },
                2 => AppCommand::DeleteUser(n(1 + r.pick(5) as u16)),
                3 => AppCommand::Setting(SettingChange::AutoLock(None)),
                _ => AppCommand::ReleaseLockout,
            },
        }),
    }
}

#[test]
fn random_input_sequences_never_panic_and_keep_invariants() {
    for seed in 1..=20u64 {
        let mut s = Sim::installed();
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        for _ in 0..2_000 {
            let input = random_input(&mut r);
            s.input(input);
            if r.pick(10) == 0 {
                s.advance_ms(r.pick(90_000));
            }
            let st = s.engine.status();
            // Never an administrator-less lock once installed (B-4.9).
            assert!(st.counts.admins >= 1, "seed {seed}");
            assert!(st.counts.fingerprints <= 50 && st.counts.palms <= 50 && st.counts.faces <= 50);
        }
        // Restarting from what was persisted gives the same directory.
        let before = s.engine.status().counts;
        s.restart();
        assert_eq!(s.engine.status().counts, before, "seed {seed}");
    }
}
