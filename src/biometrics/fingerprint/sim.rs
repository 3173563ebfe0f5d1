//! A simulated R30x/ZFM module serving the real wire protocol on any byte
//! stream (a `tokio::io::duplex` half, a PTY master, a socket).
//!
//! ```text
//!   test / sim board ──► SimFingerprintControl ──┐  place(person, finger), lift(),
//!                                               │  inject(fault), templates()
//!   driver ◄── bytes ──► SimFingerprint::serve ◄─┘  shared state (Mutex, never
//!                                                   held across an await)
//! ```
//!
//! A "finger" is `(person, finger index)`; a template is the finger it was
//! made from, so recognition returns the slot that holds that finger. The
//! simulator is deterministic: no randomness, no clock. Faults are queued on
//! the control handle and each applies to the next command received:
//!
//! * [`FingerFault::Silence`] — the command is swallowed, no answer;
//! * [`FingerFault::BadChecksum`] — the answer's checksum is corrupted;
//! * [`FingerFault::Busy`] — answered with 0xFE (the ZFM protocol has no
//!   dedicated "busy" code; R503 firmware reports a command it cannot run now
//!   as 0xFE "command execution failure"), nothing executed;
//! * [`FingerFault::Reset`] — the module restarts before executing the
//!   command: image and character buffers are lost and the power-on byte
//!   0x55 precedes the answer, as on a real R503;
//! * [`FingerFault::Truncated`] — the command is executed but only the
//!   first half of the answer arrives (the cable cut or the module browned
//!   out mid-frame), then nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::driver::{Command, Led};
use super::frame::{Decoder, Packet, PacketKind, DEFAULT_ADDRESS, POWER_ON_MARKER};

/// One simulated finger: a person and which of their fingers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimFinger {
    pub person: u32,
    pub finger: u8,
}

/// A one-shot fault applied to the next command the simulator receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FingerFault {
    Silence,
    BadChecksum,
    Busy,
    Reset,
    Truncated,
}

/// Simulated module settings.
#[derive(Clone, Debug)]
pub struct SimFingerprintConfig {
    /// Library size (R503: 200, R307: 1000, AS608: 300).
    pub capacity: u16,
    pub address: u32,
    pub password: u32,
    /// Character buffers (2 on R307/AS608).
    pub char_buffers: u8,
    /// Score reported for every match.
    pub score: u16,
}

impl Default for SimFingerprintConfig {
    fn default() -> Self {
        Self {
            capacity: 200,
            address: DEFAULT_ADDRESS,
            password: 0,
            char_buffers: 2,
            score: 180,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    on_sensor: Option<SimFinger>,
    image: Option<SimFinger>,
    buffers: Vec<Option<SimFinger>>,
    library: BTreeMap<u16, SimFinger>,
    faults: VecDeque<FingerFault>,
    led: Option<Led>,
    commands: u64,
    restarts: u64,
    /// The module password in "flash" (SetPwd changes it).
    password: u32,
    /// VfyPwd succeeded in this session (a restart ends the session).
    verified: bool,
}

/// Cloneable handle a test or the sim board uses to act on the module.
#[derive(Clone, Debug)]
pub struct SimFingerprintControl {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SimFingerprintControl {
    /// Puts `person`'s finger number `finger` on the sensor.
    pub fn place(&self, person: u32, finger: u8) {
        lock(&self.state).on_sensor = Some(SimFinger { person, finger });
    }

    /// Takes the finger off the sensor.
    pub fn lift(&self) {
        lock(&self.state).on_sensor = None;
    }

    /// Queues a fault for the next command.
    pub fn inject(&self, fault: FingerFault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// The library: slot → finger.
    pub fn templates(&self) -> BTreeMap<u16, SimFinger> {
        lock(&self.state).library.clone()
    }

    /// Last LED setting received.
    pub fn led(&self) -> Option<Led> {
        lock(&self.state).led
    }

    /// Commands received so far (including swallowed ones).
    pub fn commands(&self) -> u64 {
        lock(&self.state).commands
    }

    /// Times the module "restarted" (Reset faults applied).
    pub fn restarts(&self) -> u64 {
        lock(&self.state).restarts
    }

    /// Serves another session of the same module (same library, same
    /// password) on `stream`: the lock restarted and opened its UART again.
    /// The new session starts unverified.
    pub fn spawn_session<S>(
        &self,
        stream: S,
        config: SimFingerprintConfig,
    ) -> JoinHandle<std::io::Result<()>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        lock(&self.state).verified = false;
        let sim = SimFingerprint {
            config,
            state: self.state.clone(),
        };
        tokio::spawn(sim.serve(stream))
    }

    /// Puts `other`'s module behind this link, as someone swapping the
    /// module while the lock runs: its password and library from now on,
    /// and it powers up (0x55 before the next answer).
    pub fn swap_in(&self, other: &SimFingerprintControl) {
        let (password, library) = {
            let o = lock(&other.state);
            (o.password, o.library.clone())
        };
        let mut state = lock(&self.state);
        state.password = password;
        state.library = library;
        state.faults.push_back(FingerFault::Reset);
    }

    /// The password the module holds now.
    pub fn password(&self) -> u32 {
        lock(&self.state).password
    }
}

/// The simulated module. Build with [`SimFingerprint::new`], run with
/// [`SimFingerprint::serve`] (or [`spawn`]).
#[derive(Debug)]
pub struct SimFingerprint {
    config: SimFingerprintConfig,
    state: Arc<Mutex<State>>,
}

/// Starts a simulator on `stream` in a tokio task.
pub fn spawn<S>(
    stream: S,
    config: SimFingerprintConfig,
) -> (SimFingerprintControl, JoinHandle<std::io::Result<()>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sim, control) = SimFingerprint::new(config);
    (control, tokio::spawn(sim.serve(stream)))
}

impl SimFingerprint {
    pub fn new(config: SimFingerprintConfig) -> (Self, SimFingerprintControl) {
        let state = Arc::new(Mutex::new(State {
            buffers: vec![None; usize::from(config.char_buffers.max(2))],
            password: config.password,
            ..State::default()
        }));
        let control = SimFingerprintControl {
            state: state.clone(),
        };
        (Self { config, state }, control)
    }

    /// Serves until the stream ends (returns `Ok`) or fails.
    pub async fn serve<S>(self, mut stream: S) -> std::io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut decoder = Decoder::new();
        let mut buf = [0u8; 256];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            decoder.push(&buf[..n]);
            while let Some(packet) = decoder.next_packet() {
                let reply = match packet {
                    Ok(p) => self.handle(&p),
                    // A damaged command: the module answers "packet error".
                    Err(_) => Some(self.ack(vec![0x01]).encode_lossless()),
                };
                if let Some(bytes) = reply {
                    stream.write_all(&bytes).await?;
                    stream.flush().await?;
                }
            }
        }
    }

    fn ack(&self, payload: Vec<u8>) -> Packet {
        Packet::ack(self.config.address, payload)
    }

    /// Executes one command; the bytes to send back, if any.
    fn handle(&self, packet: &Packet) -> Option<Vec<u8>> {
        // Packets for another address are for another module, and a module
        // only ever receives commands: stay silent for anything else.
        if packet.address != self.config.address || packet.kind != PacketKind::Command {
            return None;
        }
        let mut state = lock(&self.state);
        state.commands += 1;
        let fault = state.faults.pop_front();
        let mut prefix = Vec::new();
        match fault {
            Some(FingerFault::Silence) => return None,
            Some(FingerFault::Busy) => return Some(self.ack(vec![0xFE]).encode_lossless()),
            Some(FingerFault::Reset) => {
                state.image = None;
                state.buffers.iter_mut().for_each(|b| *b = None);
                state.led = None;
                state.verified = false;
                state.restarts += 1;
                prefix.push(POWER_ON_MARKER);
            }
            Some(FingerFault::BadChecksum | FingerFault::Truncated) | None => {}
        }
        let payload = self.execute(&mut state, &packet.payload);
        let mut bytes = self.ack(payload).encode_lossless();
        if fault == Some(FingerFault::BadChecksum) {
            if let Some(last) = bytes.last_mut() {
                *last ^= 0xA5;
            }
        }
        if fault == Some(FingerFault::Truncated) {
            bytes.truncate(bytes.len() / 2);
        }
        prefix.extend(bytes);
        Some(prefix)
    }

    fn buffer_index(&self, id: u8) -> Option<usize> {
        (1..=self.config.char_buffers.max(2))
            .contains(&id)
            .then(|| usize::from(id - 1))
    }

    fn slot_ok(&self, slot: u16) -> bool {
        slot < self.config.capacity
    }

    /// Returns the acknowledgement payload: confirmation code + results.
    fn execute(&self, state: &mut State, payload: &[u8]) -> Vec<u8> {
        const OK: u8 = 0x00;
        const PACKET_ERROR: u8 = 0x01;
        let Some((&code, args)) = payload.split_first() else {
            return vec![PACKET_ERROR];
        };
        let Some(command) = Command::from_byte(code) else {
            return vec![0xFC];
        };
        let u16_at = |i: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*args.get(i)?, *args.get(i + 1)?]))
        };
        // As on a ZFM module: with a password other than the factory 0,
        // nothing but VfyPwd runs until it was verified in this session.
        if command != Command::VfyPwd && state.password != 0 && !state.verified {
            return vec![0x21];
        }
        match command {
            Command::VfyPwd => match args.get(..4) {
                Some(p) if p == state.password.to_be_bytes() => {
                    state.verified = true;
                    vec![OK]
                }
                Some(_) => {
                    state.verified = false;
                    vec![0x13]
                }
                None => vec![PACKET_ERROR],
            },
            Command::SetPwd => match args.get(..4) {
                // With the factory 0 the session needs no VfyPwd, so a
                // fresh module takes a password from whoever talks first.
                Some(p) => {
                    state.password = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                    vec![OK]
                }
                None => vec![PACKET_ERROR],
            },
            Command::ReadSysPara => {
                let mut r = vec![OK, 0x00, 0x00, 0x00, 0x00];
                r.extend_from_slice(&self.config.capacity.to_be_bytes());
                r.extend_from_slice(&3u16.to_be_bytes()); // security level
                r.extend_from_slice(&self.config.address.to_be_bytes());
                r.extend_from_slice(&2u16.to_be_bytes()); // 128-byte data packets
                r.extend_from_slice(&6u16.to_be_bytes()); // 6 × 9600 = 57600 baud
                r
            }
            Command::GenImg => match state.on_sensor {
                Some(f) => {
                    state.image = Some(f);
                    vec![OK]
                }
                None => vec![0x02],
            },
            Command::Img2Tz => {
                let Some(i) = args.first().and_then(|&b| self.buffer_index(b)) else {
                    return vec![PACKET_ERROR];
                };
                match state.image {
                    Some(f) => {
                        state.buffers[i] = Some(f);
                        vec![OK]
                    }
                    None => vec![0x15],
                }
            }
            Command::RegModel => {
                let (first, second) = (state.buffers[0], state.buffers[1]);
                let merged = match (first, second) {
                    (Some(a), Some(b)) if a == b => a,
                    _ => return vec![0x0A],
                };
                if state.buffers.iter().flatten().any(|&f| f != merged) {
                    return vec![0x0A];
                }
                state.buffers[1] = Some(merged);
                vec![OK]
            }
            Command::Search => {
                let (Some(i), Some(start), Some(count)) = (
                    args.first().and_then(|&b| self.buffer_index(b)),
                    u16_at(1),
                    u16_at(3),
                ) else {
                    return vec![PACKET_ERROR];
                };
                let Some(wanted) = state.buffers[i] else {
                    return vec![0x09];
                };
                let end = u32::from(start) + u32::from(count);
                let hit = state
                    .library
                    .iter()
                    .find(|(&slot, &f)| u32::from(slot) < end && slot >= start && f == wanted);
                match hit {
                    Some((&slot, _)) => {
                        let mut r = vec![OK];
                        r.extend_from_slice(&slot.to_be_bytes());
                        r.extend_from_slice(&self.config.score.to_be_bytes());
                        r
                    }
                    None => vec![0x09],
                }
            }
            Command::Store => {
                let (Some(i), Some(slot)) =
                    (args.first().and_then(|&b| self.buffer_index(b)), u16_at(1))
                else {
                    return vec![PACKET_ERROR];
                };
                if !self.slot_ok(slot) {
                    return vec![0x0B];
                }
                match state.buffers[i] {
                    Some(f) => {
                        state.library.insert(slot, f);
                        vec![OK]
                    }
                    None => vec![0x22],
                }
            }
            Command::LoadChar => {
                let (Some(i), Some(slot)) =
                    (args.first().and_then(|&b| self.buffer_index(b)), u16_at(1))
                else {
                    return vec![PACKET_ERROR];
                };
                if !self.slot_ok(slot) {
                    return vec![0x0B];
                }
                match state.library.get(&slot).copied() {
                    Some(f) => {
                        state.buffers[i] = Some(f);
                        vec![OK]
                    }
                    None => vec![0x0C],
                }
            }
            Command::DeleteChar => {
                let (Some(start), Some(count)) = (u16_at(0), u16_at(2)) else {
                    return vec![PACKET_ERROR];
                };
                let end = u32::from(start) + u32::from(count);
                if count == 0 || end > u32::from(self.config.capacity) {
                    return vec![0x10];
                }
                state
                    .library
                    .retain(|&slot, _| !(slot >= start && u32::from(slot) < end));
                vec![OK]
            }
            Command::Empty => {
                state.library.clear();
                vec![OK]
            }
            Command::TemplateNum => {
                // Cannot truncate: the library never exceeds `capacity` (u16).
                let n = state.library.len() as u16;
                let mut r = vec![OK];
                r.extend_from_slice(&n.to_be_bytes());
                r
            }
            Command::ReadIndexTable => {
                let Some(&page) = args.first().filter(|&&p| p <= 3) else {
                    return vec![PACKET_ERROR];
                };
                let mut r = vec![OK];
                let mut table = [0u8; 32];
                let base = u16::from(page) * 256;
                for &slot in state.library.keys() {
                    if (base..base + 256).contains(&slot) {
                        let bit = usize::from(slot - base);
                        table[bit / 8] |= 1 << (bit % 8);
                    }
                }
                r.extend_from_slice(&table);
                r
            }
            Command::AuraLedConfig => {
                let led = args
                    .get(..4)
                    .and_then(|b| Led::from_bytes([b[0], b[1], b[2], b[3]]));
                match led {
                    Some(led) => {
                        state.led = Some(led);
                        vec![OK]
                    }
                    None => vec![PACKET_ERROR],
                }
            }
        }
    }
}

trait EncodeLossless {
    fn encode_lossless(&self) -> Vec<u8>;
}

impl EncodeLossless for Packet {
    /// The simulator only builds short acknowledgements (≤ 33 bytes), far
    /// below the packet limit.
    fn encode_lossless(&self) -> Vec<u8> {
        self.encode()
            .expect("an acknowledgement of at most 33 bytes is below the packet limit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim() -> (SimFingerprint, SimFingerprintControl) {
        SimFingerprint::new(SimFingerprintConfig::default())
    }

    fn run(sim: &SimFingerprint, payload: &[u8]) -> Vec<u8> {
        let mut state = lock(&sim.state);
        sim.execute(&mut state, payload)
    }

    #[test]
    fn a_finger_goes_through_image_buffer_template_and_search() {
        let (sim, ctl) = sim();
        assert_eq!(run(&sim, &[0x01]), vec![0x02], "no finger yet");
        ctl.place(7, 1);
        assert_eq!(run(&sim, &[0x01]), vec![0x00]);
        assert_eq!(run(&sim, &[0x02, 1]), vec![0x00]);
        assert_eq!(run(&sim, &[0x02, 2]), vec![0x00]);
        assert_eq!(run(&sim, &[0x05]), vec![0x00]);
        assert_eq!(run(&sim, &[0x06, 1, 0, 5]), vec![0x00]);
        assert_eq!(
            run(&sim, &[0x04, 1, 0, 0, 0, 200]),
            vec![0x00, 0, 5, 0, 180]
        );
        assert_eq!(run(&sim, &[0x1D]), vec![0x00, 0, 1]);
        let table = run(&sim, &[0x1F, 0]);
        assert_eq!(table[1], 0b0010_0000, "slot 5 is bit 5 of byte 0");
    }

    #[test]
    fn different_fingers_do_not_merge_and_bad_arguments_are_refused() {
        let (sim, ctl) = sim();
        ctl.place(1, 1);
        run(&sim, &[0x01]);
        run(&sim, &[0x02, 1]);
        ctl.place(1, 2);
        run(&sim, &[0x01]);
        run(&sim, &[0x02, 2]);
        assert_eq!(run(&sim, &[0x05]), vec![0x0A]);
        assert_eq!(
            run(&sim, &[0x06, 1, 0x00, 200]),
            vec![0x0B],
            "slot 200 of 200"
        );
        assert_eq!(run(&sim, &[0x02, 9]), vec![0x01], "no buffer 9");
        assert_eq!(run(&sim, &[0x99]), vec![0xFC]);
        assert_eq!(run(&sim, &[]), vec![0x01]);
    }

    #[test]
    fn a_set_password_locks_every_instruction_until_verified() {
        let (sim, ctl) = sim();
        assert_eq!(run(&sim, &[0x12, 0xDE, 0xAD, 0xBE, 0xEF]), vec![0x00]);
        assert_eq!(ctl.password(), 0xDEAD_BEEF);
        assert_eq!(
            run(&sim, &[0x13, 0, 0, 0, 0]),
            vec![0x13],
            "factory 0 no longer"
        );
        assert_eq!(run(&sim, &[0x1D]), vec![0x21], "not verified");
        assert_eq!(
            run(&sim, &[0x12, 0, 0, 0, 0]),
            vec![0x21],
            "no SetPwd either"
        );
        assert_eq!(run(&sim, &[0x13, 0xDE, 0xAD, 0xBE, 0xEF]), vec![0x00]);
        assert_eq!(run(&sim, &[0x1D]), vec![0x00, 0, 0]);
    }
}
