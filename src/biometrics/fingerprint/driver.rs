//! The R30x/ZFM driver: one request, one acknowledgement, over any byte
//! stream. See the module documentation in `fingerprint/mod.rs` for the
//! hardware and the enrolment flow.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::FutureExt;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use super::frame::{Decoder, FrameError, Packet, PacketKind, DEFAULT_ADDRESS};

/// Instruction codes used by this driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    GenImg = 0x01,
    Img2Tz = 0x02,
    Search = 0x04,
    RegModel = 0x05,
    Store = 0x06,
    LoadChar = 0x07,
    DeleteChar = 0x0C,
    Empty = 0x0D,
    ReadSysPara = 0x0F,
    SetPwd = 0x12,
    VfyPwd = 0x13,
    TemplateNum = 0x1D,
    ReadIndexTable = 0x1F,
    AuraLedConfig = 0x35,
}

impl Command {
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => Self::GenImg,
            0x02 => Self::Img2Tz,
            0x04 => Self::Search,
            0x05 => Self::RegModel,
            0x06 => Self::Store,
            0x07 => Self::LoadChar,
            0x0C => Self::DeleteChar,
            0x0D => Self::Empty,
            0x0F => Self::ReadSysPara,
            0x12 => Self::SetPwd,
            0x13 => Self::VfyPwd,
            0x1D => Self::TemplateNum,
            0x1F => Self::ReadIndexTable,
            0x35 => Self::AuraLedConfig,
            _ => return None,
        })
    }
}

impl Command {
    /// Whether the instruction works on what the module holds in RAM (the
    /// image buffer, the feature buffers), which a restart empties.
    pub fn reads_module_buffers(self) -> bool {
        matches!(
            self,
            Self::Img2Tz | Self::RegModel | Self::Store | Self::Search
        )
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?} ({:#04x})", *self as u8)
    }
}

/// A non-zero confirmation code, as documented for the R30x/R503 family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ModuleCode {
    #[error("the module could not receive the packet (0x01)")]
    PacketError,
    #[error("no finger on the sensor (0x02)")]
    NoFinger,
    #[error("the finger image could not be taken (0x03)")]
    ImageFailed,
    #[error("the image is too disordered to extract features (0x06); clean the sensor and retry")]
    ImageMessy,
    #[error("the image has too few feature points (0x07); press the whole finger flat and retry")]
    TooFewFeatures,
    #[error("the finger does not match (0x08)")]
    NoMatch,
    #[error("no matching template in the library (0x09)")]
    NotFound,
    #[error("the touches could not be merged into one template (0x0A); they were probably different fingers")]
    MergeFailed,
    #[error("the slot is beyond the module's library (0x0B)")]
    BadSlot,
    #[error("the template could not be read or is invalid (0x0C)")]
    TemplateReadFailed,
    #[error("template upload failed (0x0D)")]
    TemplateUploadFailed,
    #[error("the module could not receive the following data packets (0x0E)")]
    DataReceiveFailed,
    #[error("image upload failed (0x0F)")]
    ImageUploadFailed,
    #[error("the template could not be deleted (0x10)")]
    DeleteFailed,
    #[error("the library could not be cleared (0x11)")]
    ClearFailed,
    #[error("wrong module password (0x13); check `password` in the fingerprint configuration")]
    WrongPassword,
    #[error("no valid primary image to extract features from (0x15)")]
    InvalidImage,
    #[error("flash write failed (0x18)")]
    FlashWriteFailed,
    #[error("undefined module error (0x19)")]
    Undefined,
    #[error("invalid register number (0x1A)")]
    InvalidRegister,
    #[error("incorrect register configuration (0x1B)")]
    BadRegisterConfig,
    #[error("wrong notepad page (0x1C)")]
    BadNotepadPage,
    #[error("the module could not operate its communication port (0x1D)")]
    PortFailed,
    #[error("the fingerprint library is full (0x1F)")]
    LibraryFull,
    #[error("wrong module address (0x20); check `address` in the fingerprint configuration")]
    BadAddress,
    #[error("the module requires its password to be verified first (0x21)")]
    PasswordRequired,
    #[error("the template is empty (0x22)")]
    TemplateEmpty,
    #[error("the fingerprint library is empty (0x24)")]
    LibraryEmpty,
    #[error("the module timed out (0x26)")]
    ModuleTimeout,
    #[error("the fingerprint already exists (0x27)")]
    AlreadyExists,
    #[error("sensor hardware error (0x29); the module needs service")]
    SensorHardware,
    #[error("the module does not support this command (0xFC)")]
    Unsupported,
    #[error("module hardware error (0xFD)")]
    HardwareError,
    #[error("the module could not execute the command now (0xFE: busy or internal failure); retry shortly")]
    Busy,
    #[error("undocumented confirmation code {0:#04x}")]
    Other(u8),
}

impl ModuleCode {
    /// `None` for 0x00 (success).
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x00 => return None,
            0x01 => Self::PacketError,
            0x02 => Self::NoFinger,
            0x03 => Self::ImageFailed,
            0x06 => Self::ImageMessy,
            0x07 => Self::TooFewFeatures,
            0x08 => Self::NoMatch,
            0x09 => Self::NotFound,
            0x0A => Self::MergeFailed,
            0x0B => Self::BadSlot,
            0x0C => Self::TemplateReadFailed,
            0x0D => Self::TemplateUploadFailed,
            0x0E => Self::DataReceiveFailed,
            0x0F => Self::ImageUploadFailed,
            0x10 => Self::DeleteFailed,
            0x11 => Self::ClearFailed,
            0x13 => Self::WrongPassword,
            0x15 => Self::InvalidImage,
            0x18 => Self::FlashWriteFailed,
            0x19 => Self::Undefined,
            0x1A => Self::InvalidRegister,
            0x1B => Self::BadRegisterConfig,
            0x1C => Self::BadNotepadPage,
            0x1D => Self::PortFailed,
            0x1F => Self::LibraryFull,
            0x20 => Self::BadAddress,
            0x21 => Self::PasswordRequired,
            0x22 => Self::TemplateEmpty,
            0x24 => Self::LibraryEmpty,
            0x26 => Self::ModuleTimeout,
            0x27 => Self::AlreadyExists,
            0x29 => Self::SensorHardware,
            0xFC => Self::Unsupported,
            0xFD => Self::HardwareError,
            0xFE => Self::Busy,
            other => Self::Other(other),
        })
    }

    /// The byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::PacketError => 0x01,
            Self::NoFinger => 0x02,
            Self::ImageFailed => 0x03,
            Self::ImageMessy => 0x06,
            Self::TooFewFeatures => 0x07,
            Self::NoMatch => 0x08,
            Self::NotFound => 0x09,
            Self::MergeFailed => 0x0A,
            Self::BadSlot => 0x0B,
            Self::TemplateReadFailed => 0x0C,
            Self::TemplateUploadFailed => 0x0D,
            Self::DataReceiveFailed => 0x0E,
            Self::ImageUploadFailed => 0x0F,
            Self::DeleteFailed => 0x10,
            Self::ClearFailed => 0x11,
            Self::WrongPassword => 0x13,
            Self::InvalidImage => 0x15,
            Self::FlashWriteFailed => 0x18,
            Self::Undefined => 0x19,
            Self::InvalidRegister => 0x1A,
            Self::BadRegisterConfig => 0x1B,
            Self::BadNotepadPage => 0x1C,
            Self::PortFailed => 0x1D,
            Self::LibraryFull => 0x1F,
            Self::BadAddress => 0x20,
            Self::PasswordRequired => 0x21,
            Self::TemplateEmpty => 0x22,
            Self::LibraryEmpty => 0x24,
            Self::ModuleTimeout => 0x26,
            Self::AlreadyExists => 0x27,
            Self::SensorHardware => 0x29,
            Self::Unsupported => 0xFC,
            Self::HardwareError => 0xFD,
            Self::Busy => 0xFE,
            Self::Other(c) => c,
        }
    }
}

/// Everything the fingerprint driver can report.
#[derive(Debug, Error)]
pub enum FingerprintError {
    #[error(
        "fingerprint module did not answer {command} within {timeout:?}; check power, wiring \
         (module TX → SoC RX), baud rate and address"
    )]
    Timeout { command: Command, timeout: Duration },
    #[error("UART I/O error talking to the fingerprint module: {0}")]
    Io(#[from] std::io::Error),
    #[error("the fingerprint module's serial link closed (end of stream)")]
    Closed,
    #[error("could not open the fingerprint UART `{path}`: {source}")]
    Open {
        path: String,
        source: tokio_serial::Error,
    },
    #[error("bad packet from the fingerprint module during {command}: {source}")]
    Frame {
        command: Command,
        source: FrameError,
    },
    #[error("fingerprint module refused {command}: {code}")]
    Module { command: Command, code: ModuleCode },
    #[error("unexpected answer to {command}: {detail}")]
    Protocol { command: Command, detail: String },
    #[error(
        "this finger is already enrolled in slot {slot}; nothing was stored (a finger may be \
         enrolled only once, B-1.3)"
    )]
    Duplicate { slot: u16 },
    #[error("slot {slot} is outside the module's library of {capacity} templates")]
    InvalidSlot { slot: u16, capacity: u16 },
    #[error("slot {slot} already holds a template; delete it before enrolling into it")]
    SlotOccupied { slot: u16 },
    #[error("enrolment needs 2..={max} touches (the module's character buffers), not {touches}")]
    InvalidTouches { touches: u8, max: u8 },
    #[error("no finger was placed within {0:?}")]
    FingerTimeout(Duration),
    #[error("the finger was not lifted within {0:?}")]
    LiftTimeout(Duration),
    #[error(
        "the fingerprint module does not know this lock's module password: it was replaced \
         or swapped and is not used; an administrator can pair a factory-fresh module from the \
         menu (fingerprint module re-pair)"
    )]
    ForeignModule,
    #[error("the lock's fingerprint module password must not be the factory password 0")]
    FactoryPassword,
    #[error(
        "the fingerprint module restarted during enrolment and lost the touches taken so far; \
         nothing was stored — start the enrolment again"
    )]
    ModuleReset,
}

impl FingerprintError {
    /// True when the module answered "no finger on the sensor".
    pub fn is_no_finger(&self) -> bool {
        matches!(
            self,
            Self::Module {
                code: ModuleCode::NoFinger,
                ..
            }
        )
    }
}

/// Driver settings. Defaults match a factory-fresh module at 57600 8N1.
#[derive(Clone, Debug)]
pub struct FingerprintConfig {
    /// Module address (SetAdder); factory default 0xFFFFFFFF.
    pub address: u32,
    /// Module password (SetPwd); factory default 0.
    pub password: u32,
    /// Longest wait for one acknowledgement. GenImg takes up to ~1 s on
    /// optical modules, Search over 1000 templates about 0.3 s.
    pub request_timeout: Duration,
    /// Pause between GenImg polls while waiting for a finger to arrive or leave.
    pub poll_interval: Duration,
    /// How long enrolment waits for a finger on each touch (and for the lift).
    pub finger_timeout: Duration,
    /// Character buffers the module has: 2 on R307/AS608; R503-class
    /// firmware accepts more. Enrolment uses one buffer per touch.
    pub char_buffers: u8,
}

impl Default for FingerprintConfig {
    fn default() -> Self {
        Self {
            address: DEFAULT_ADDRESS,
            password: 0,
            request_timeout: Duration::from_millis(1500),
            poll_interval: Duration::from_millis(50),
            finger_timeout: Duration::from_secs(10),
            char_buffers: 2,
        }
    }
}

/// The 16 bytes ReadSysPara returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemParameters {
    pub status: u16,
    pub system_id: u16,
    /// Library size: valid slots are `0..capacity`.
    pub capacity: u16,
    pub security_level: u16,
    pub address: u32,
    pub packet_size_code: u16,
    /// Baud rate is `baud_multiplier × 9600`.
    pub baud_multiplier: u16,
}

/// A library hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    pub slot: u16,
    /// Matching score; higher is more certain.
    pub score: u16,
}

/// Aura LED ring effect (R503 AuraLedConfig control byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedMode {
    Breathing = 1,
    Flashing = 2,
    On = 3,
    Off = 4,
    FadeIn = 5,
    FadeOut = 6,
}

/// Aura LED colour index. R503 v1.2+ has all seven; older rings only 1–3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedColor {
    Red = 1,
    Blue = 2,
    Purple = 3,
    Green = 4,
    Yellow = 5,
    Cyan = 6,
    White = 7,
}

/// One AuraLedConfig setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Led {
    pub mode: LedMode,
    pub color: LedColor,
    /// Effect speed, 0 (fastest) to 255; used by breathing and flashing.
    pub speed: u8,
    /// Number of breaths/flashes, 0 = forever.
    pub cycles: u8,
}

impl Led {
    pub fn from_bytes(b: [u8; 4]) -> Option<Self> {
        let mode = match b[0] {
            1 => LedMode::Breathing,
            2 => LedMode::Flashing,
            3 => LedMode::On,
            4 => LedMode::Off,
            5 => LedMode::FadeIn,
            6 => LedMode::FadeOut,
            _ => return None,
        };
        let color = match b[2] {
            1 => LedColor::Red,
            2 => LedColor::Blue,
            3 => LedColor::Purple,
            4 => LedColor::Green,
            5 => LedColor::Yellow,
            6 => LedColor::Cyan,
            7 => LedColor::White,
            _ => return None,
        };
        Some(Self {
            mode,
            color,
            speed: b[1],
            cycles: b[3],
        })
    }
}

/// Progress of an enrolment, reported as it happens so the lock can play
/// the matching prompt ("place your finger", "lift", "again"…).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrollStep {
    /// Waiting for touch `touch` of `of`.
    PlaceFinger { touch: u8, of: u8 },
    /// Touch `touch` was imaged and its features extracted.
    Captured { touch: u8, of: u8 },
    /// Waiting for the finger to leave the sensor before the next touch.
    LiftFinger { touch: u8 },
    /// The touches were merged into one template.
    Merged,
    /// The template was checked against the library and stored.
    Stored { slot: u16 },
}

/// Driver for one R30x/ZFM-family module on a byte stream.
pub struct Fingerprint<S> {
    stream: S,
    decoder: Decoder,
    config: FingerprintConfig,
    /// Library size from ReadSysPara; bounds every slot argument.
    capacity: u16,
    /// Set when a power-on marker was seen since the enrolment began.
    reset_seen: bool,
    /// A power-on marker was seen and the password is not verified since:
    /// the next instruction verifies first (the module may be another one,
    /// plugged in while the lock ran).
    session_lost: bool,
}

impl<S> std::fmt::Debug for Fingerprint<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fingerprint")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

const READ_CHUNK: usize = 64;

impl<S> Fingerprint<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Takes over the stream, verifies the password and reads the library
    /// size. Fails if the module does not answer as a ZFM module should.
    pub async fn connect(stream: S, config: FingerprintConfig) -> Result<Self, FingerprintError> {
        let mut me = Self::attach(stream, config);
        me.verify_password().await?;
        me.read_capacity().await?;
        Ok(me)
    }

    /// Takes over the stream without a word on it: the caller runs the
    /// handshake (see `pairing.rs`), then [`Fingerprint::read_capacity`].
    pub(crate) fn attach(stream: S, config: FingerprintConfig) -> Self {
        Self {
            stream,
            decoder: Decoder::new(),
            config,
            capacity: 0,
            reset_seen: false,
            session_lost: false,
        }
    }

    /// ReadSysPara once, keeping the library size every slot is checked against.
    pub(crate) async fn read_capacity(&mut self) -> Result<(), FingerprintError> {
        let params = self.read_system_parameters().await?;
        self.capacity = params.capacity;
        debug!(capacity = params.capacity, "fingerprint module ready");
        Ok(())
    }

    pub fn config(&self) -> &FingerprintConfig {
        &self.config
    }

    /// Library size reported by the module at connect time.
    pub fn capacity(&self) -> u16 {
        self.capacity
    }

    /// Gives the stream back (e.g. to reopen it at another baud rate).
    pub fn into_inner(self) -> S {
        self.stream
    }

    // ---- single instructions -------------------------------------------------

    /// VfyPwd: proves we know the module password; doubles as the handshake.
    pub async fn verify_password(&mut self) -> Result<(), FingerprintError> {
        self.verify(self.config.password).await
    }

    /// VfyPwd with `password` rather than the configured one (the factory
    /// 0 while pairing a new module).
    pub(crate) async fn verify(&mut self, password: u32) -> Result<(), FingerprintError> {
        self.transact(Command::VfyPwd, vfy_pwd(password), 0)
            .await
            .map(drop)
    }

    /// SetPwd: the module stores `password` in its flash; from its next
    /// session on it answers nothing but VfyPwd until that password is
    /// verified. The session must already be verified. The driver uses
    /// the new password from now on.
    pub async fn set_password(&mut self, password: u32) -> Result<(), FingerprintError> {
        let mut cmd = vec![Command::SetPwd as u8];
        cmd.extend_from_slice(&password.to_be_bytes());
        self.transact(Command::SetPwd, cmd, 0).await?;
        self.config.password = password;
        Ok(())
    }

    pub async fn read_system_parameters(&mut self) -> Result<SystemParameters, FingerprintError> {
        let r = self
            .transact(Command::ReadSysPara, vec![Command::ReadSysPara as u8], 16)
            .await?;
        let u16_at = |i: usize| u16::from_be_bytes([r[i], r[i + 1]]);
        Ok(SystemParameters {
            status: u16_at(0),
            system_id: u16_at(2),
            capacity: u16_at(4),
            security_level: u16_at(6),
            address: u32::from_be_bytes([r[8], r[9], r[10], r[11]]),
            packet_size_code: u16_at(12),
            baud_multiplier: u16_at(14),
        })
    }

    /// GenImg: images the finger into the image buffer.
    pub async fn capture_image(&mut self) -> Result<(), FingerprintError> {
        self.transact(Command::GenImg, vec![Command::GenImg as u8], 0)
            .await
            .map(drop)
    }

    /// Img2Tz: extracts features from the image into character buffer `buffer`.
    pub async fn image_to_features(&mut self, buffer: u8) -> Result<(), FingerprintError> {
        self.transact(Command::Img2Tz, vec![Command::Img2Tz as u8, buffer], 0)
            .await
            .map(drop)
    }

    /// RegModel: merges the character buffers into one template (left in buffer 1).
    pub async fn create_model(&mut self) -> Result<(), FingerprintError> {
        self.transact(Command::RegModel, vec![Command::RegModel as u8], 0)
            .await
            .map(drop)
    }

    /// Store: writes character buffer `buffer` into library slot `slot`.
    pub async fn store(&mut self, buffer: u8, slot: u16) -> Result<(), FingerprintError> {
        self.check_slot(slot)?;
        let [hi, lo] = slot.to_be_bytes();
        self.transact(
            Command::Store,
            vec![Command::Store as u8, buffer, hi, lo],
            0,
        )
        .await
        .map(drop)
    }

    /// LoadChar: reads library slot `slot` into character buffer `buffer`.
    pub async fn load(&mut self, buffer: u8, slot: u16) -> Result<(), FingerprintError> {
        self.check_slot(slot)?;
        let [hi, lo] = slot.to_be_bytes();
        self.transact(
            Command::LoadChar,
            vec![Command::LoadChar as u8, buffer, hi, lo],
            0,
        )
        .await
        .map(drop)
    }

    /// Search: 1:N match of character buffer `buffer` against slots
    /// `start..start+count`. `Ok(None)` when nothing matches.
    pub async fn search(
        &mut self,
        buffer: u8,
        start: u16,
        count: u16,
    ) -> Result<Option<Match>, FingerprintError> {
        let [sh, sl] = start.to_be_bytes();
        let [ch, cl] = count.to_be_bytes();
        let cmd = vec![Command::Search as u8, buffer, sh, sl, ch, cl];
        match self.transact(Command::Search, cmd, 4).await {
            Ok(r) => Ok(Some(Match {
                slot: u16::from_be_bytes([r[0], r[1]]),
                score: u16::from_be_bytes([r[2], r[3]]),
            })),
            Err(FingerprintError::Module {
                code: ModuleCode::NotFound,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// DeleteChar: removes `count` templates starting at `start`.
    pub async fn delete_range(&mut self, start: u16, count: u16) -> Result<(), FingerprintError> {
        self.check_slot(start)?;
        let last = u32::from(start) + u32::from(count);
        if count == 0 || last > u32::from(self.capacity) {
            return Err(FingerprintError::InvalidSlot {
                slot: start.saturating_add(count.saturating_sub(1)),
                capacity: self.capacity,
            });
        }
        let [sh, sl] = start.to_be_bytes();
        let [ch, cl] = count.to_be_bytes();
        self.transact(
            Command::DeleteChar,
            vec![Command::DeleteChar as u8, sh, sl, ch, cl],
            0,
        )
        .await
        .map(drop)
    }

    /// Removes one template.
    pub async fn delete(&mut self, slot: u16) -> Result<(), FingerprintError> {
        self.delete_range(slot, 1).await
    }

    /// Empty: erases the whole library.
    pub async fn empty(&mut self) -> Result<(), FingerprintError> {
        self.transact(Command::Empty, vec![Command::Empty as u8], 0)
            .await
            .map(drop)
    }

    /// TemplateNum: how many slots hold a template.
    pub async fn template_count(&mut self) -> Result<u16, FingerprintError> {
        let r = self
            .transact(Command::TemplateNum, vec![Command::TemplateNum as u8], 2)
            .await?;
        Ok(u16::from_be_bytes([r[0], r[1]]))
    }

    /// ReadIndexTable: occupancy bitmap of slots `page*256 .. page*256+255`
    /// (byte i, bit j ⇒ slot page*256 + 8i + j).
    pub async fn read_index_table(&mut self, page: u8) -> Result<[u8; 32], FingerprintError> {
        let r = self
            .transact(
                Command::ReadIndexTable,
                vec![Command::ReadIndexTable as u8, page],
                32,
            )
            .await?;
        let mut table = [0u8; 32];
        table.copy_from_slice(&r[..32]);
        Ok(table)
    }

    /// Every occupied slot, from the index table.
    pub async fn occupied_slots(&mut self) -> Result<BTreeSet<u16>, FingerprintError> {
        let mut slots = BTreeSet::new();
        let pages = self.capacity.div_ceil(256);
        for page in 0..pages {
            // Cannot truncate: capacity is a u16, so at most 256 pages.
            let table = self.read_index_table(page as u8).await?;
            for (i, byte) in table.iter().enumerate() {
                for bit in 0..8 {
                    if byte & (1 << bit) != 0 {
                        let slot = u32::from(page) * 256 + (i as u32) * 8 + bit;
                        // A bit beyond the library is firmware noise; ignore it.
                        if slot < u32::from(self.capacity) {
                            slots.insert(slot as u16);
                        }
                    }
                }
            }
        }
        Ok(slots)
    }

    /// AuraLedConfig: sets the LED ring.
    pub async fn set_led(&mut self, led: Led) -> Result<(), FingerprintError> {
        let cmd = vec![
            Command::AuraLedConfig as u8,
            led.mode as u8,
            led.speed,
            led.color as u8,
            led.cycles,
        ];
        self.transact(Command::AuraLedConfig, cmd, 0)
            .await
            .map(drop)
    }

    // ---- flows -----------------------------------------------------------------

    /// Enrols the finger on the sensor into `slot` with `touches` touches.
    ///
    /// Nothing is written to the library unless every step succeeded and
    /// the merged template matches no stored template (B-1.3). The slot must
    /// be empty: overwriting would silently drop someone else's finger.
    pub async fn enroll(
        &mut self,
        slot: u16,
        touches: u8,
        progress: &mut (dyn FnMut(EnrollStep) + Send),
    ) -> Result<(), FingerprintError> {
        self.check_slot(slot)?;
        if touches < 2 || touches > self.config.char_buffers {
            return Err(FingerprintError::InvalidTouches {
                touches,
                max: self.config.char_buffers,
            });
        }
        if self.occupied_slots().await?.contains(&slot) {
            return Err(FingerprintError::SlotOccupied { slot });
        }
        self.reset_seen = false;
        for touch in 1..=touches {
            progress(EnrollStep::PlaceFinger { touch, of: touches });
            self.wait_for_finger().await?;
            self.image_to_features(touch).await?;
            self.check_reset()?;
            progress(EnrollStep::Captured { touch, of: touches });
            if touch < touches {
                progress(EnrollStep::LiftFinger { touch });
                self.wait_for_lift().await?;
            }
        }
        self.create_model().await?;
        self.check_reset()?;
        progress(EnrollStep::Merged);
        let capacity = self.capacity;
        if let Some(hit) = self.search(1, 0, capacity).await? {
            return Err(FingerprintError::Duplicate { slot: hit.slot });
        }
        self.check_reset()?;
        self.store(1, slot).await?;
        // A restart reported with the Store acknowledgement means the stored
        // template may be garbage: remove it rather than trust it.
        if self.check_reset().is_err() {
            warn!(
                slot,
                "fingerprint module restarted during Store; removing the slot"
            );
            self.delete(slot).await?;
            return Err(FingerprintError::ModuleReset);
        }
        progress(EnrollStep::Stored { slot });
        Ok(())
    }

    /// One 1:N identification of the finger on the sensor now.
    /// `Ok(None)`: a finger was read and matches no template.
    /// No finger at all is an error ([`FingerprintError::is_no_finger`]).
    pub async fn identify(&mut self) -> Result<Option<Match>, FingerprintError> {
        self.capture_image().await?;
        self.image_to_features(1).await?;
        let capacity = self.capacity;
        self.search(1, 0, capacity).await
    }

    // ---- plumbing -----------------------------------------------------------------

    fn check_slot(&self, slot: u16) -> Result<(), FingerprintError> {
        if slot >= self.capacity {
            return Err(FingerprintError::InvalidSlot {
                slot,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    fn check_reset(&mut self) -> Result<(), FingerprintError> {
        if std::mem::take(&mut self.reset_seen) {
            return Err(FingerprintError::ModuleReset);
        }
        Ok(())
    }

    async fn wait_for_finger(&mut self) -> Result<(), FingerprintError> {
        let deadline = tokio::time::Instant::now() + self.config.finger_timeout;
        loop {
            match self.capture_image().await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_no_finger() => {}
                Err(e) => return Err(e),
            }
            self.check_reset()?;
            if tokio::time::Instant::now() >= deadline {
                return Err(FingerprintError::FingerTimeout(self.config.finger_timeout));
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    async fn wait_for_lift(&mut self) -> Result<(), FingerprintError> {
        let deadline = tokio::time::Instant::now() + self.config.finger_timeout;
        loop {
            match self.capture_image().await {
                Err(e) if e.is_no_finger() => {
                    self.check_reset()?;
                    return Ok(());
                }
                Ok(()) => {}
                Err(e) => return Err(e),
            }
            self.check_reset()?;
            if tokio::time::Instant::now() >= deadline {
                return Err(FingerprintError::LiftTimeout(self.config.finger_timeout));
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// Drops whatever arrived while nobody was asking: a late answer to a
    /// request that already timed out must never be read as the answer to
    /// the next one (the protocol has no sequence numbers).
    fn drain_stale(&mut self) -> Result<(), FingerprintError> {
        let mut buf = [0u8; READ_CHUNK];
        loop {
            // Reads on tokio streams are cancel-safe: a pending read that is
            // dropped here loses no bytes.
            match self.stream.read(&mut buf).now_or_never() {
                Some(Ok(0)) => return Err(FingerprintError::Closed),
                Some(Ok(n)) => self.decoder.push(&buf[..n]),
                Some(Err(e)) => return Err(e.into()),
                None => break,
            }
        }
        while let Some(stale) = self.decoder.next_packet() {
            debug!(?stale, "dropping stale fingerprint packet");
        }
        self.decoder.clear();
        if self.decoder.take_power_on() {
            self.note_reset();
        }
        Ok(())
    }

    fn note_reset(&mut self) {
        warn!("fingerprint module sent its power-on byte: it restarted");
        self.reset_seen = true;
        self.session_lost = true;
    }

    /// Sends one instruction and waits for its acknowledgement. Returns the
    /// bytes after the confirmation code (at least `min_len` of them) when
    /// the code is 0x00, a typed error otherwise.
    ///
    /// A module with a password that restarted (power dip, 0x55) begins a
    /// new session and answers 0x21 until the password is verified again:
    /// the driver verifies once more and repeats the instruction once.
    async fn transact(
        &mut self,
        command: Command,
        payload: Vec<u8>,
        min_len: usize,
    ) -> Result<Vec<u8>, FingerprintError> {
        if self.session_lost && self.config.password != 0 && command != Command::VfyPwd {
            // A module that restarted, or one plugged in while the lock ran
            // (its power-on byte): it must know the lock's password before
            // anything else is asked of it. Until it does, every
            // instruction fails this way.
            match self
                .transact_once(Command::VfyPwd, vfy_pwd(self.config.password), 0)
                .await
            {
                Ok(_) => self.session_lost = false,
                Err(FingerprintError::Module {
                    code: ModuleCode::WrongPassword,
                    ..
                }) => return Err(FingerprintError::ForeignModule),
                Err(e) => return Err(e),
            }
        }
        match self.transact_once(command, payload.clone(), min_len).await {
            Err(FingerprintError::Module {
                code: ModuleCode::PasswordRequired,
                ..
            }) if command != Command::VfyPwd && self.config.password != 0 => {
                // A new session means the module restarted without its
                // power-on byte reaching us: its image and feature buffers
                // are gone. Verify again so the next operation can run, but
                // repeat only an instruction that does not read them: a
                // Store repeated now would write an empty buffer into the
                // library (found by the zfm_driver fuzz target).
                warn!(%command, "fingerprint module asks for its password again (new session)");
                self.reset_seen = true;
                self.session_lost = true;
                self.transact_once(Command::VfyPwd, vfy_pwd(self.config.password), 0)
                    .await?;
                self.session_lost = false;
                if command.reads_module_buffers() {
                    return Err(FingerprintError::ModuleReset);
                }
                self.transact_once(command, payload, min_len).await
            }
            other => other,
        }
    }

    async fn transact_once(
        &mut self,
        command: Command,
        payload: Vec<u8>,
        min_len: usize,
    ) -> Result<Vec<u8>, FingerprintError> {
        self.drain_stale()?;
        let bytes = Packet::command(self.config.address, payload)
            .encode()
            .map_err(|source| FingerprintError::Frame { command, source })?;
        let timeout = self.config.request_timeout;
        let reply = match tokio::time::timeout(timeout, self.exchange(command, &bytes)).await {
            Ok(reply) => reply?,
            Err(_) => {
                // A half-received packet after a timeout is useless.
                self.decoder.clear();
                return Err(FingerprintError::Timeout { command, timeout });
            }
        };
        if self.decoder.take_power_on() {
            self.note_reset();
        }
        if reply.kind != PacketKind::Ack {
            return Err(FingerprintError::Protocol {
                command,
                detail: format!("expected an acknowledgement, got a {:?} packet", reply.kind),
            });
        }
        if reply.address != self.config.address {
            return Err(FingerprintError::Protocol {
                command,
                detail: format!(
                    "reply from address {:#010x}, expected {:#010x}",
                    reply.address, self.config.address
                ),
            });
        }
        let Some((&code, rest)) = reply.payload.split_first() else {
            return Err(FingerprintError::Protocol {
                command,
                detail: "acknowledgement without a confirmation code".into(),
            });
        };
        if let Some(code) = ModuleCode::from_code(code) {
            return Err(FingerprintError::Module { command, code });
        }
        if rest.len() < min_len {
            return Err(FingerprintError::Protocol {
                command,
                detail: format!(
                    "acknowledgement carries {} result bytes, expected {min_len}",
                    rest.len()
                ),
            });
        }
        Ok(rest.to_vec())
    }

    async fn exchange(
        &mut self,
        command: Command,
        bytes: &[u8],
    ) -> Result<Packet, FingerprintError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        let mut buf = [0u8; READ_CHUNK];
        loop {
            if let Some(result) = self.decoder.next_packet() {
                return result.map_err(|source| FingerprintError::Frame { command, source });
            }
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(FingerprintError::Closed);
            }
            self.decoder.push(&buf[..n]);
        }
    }
}

/// The VfyPwd instruction for `password`.
fn vfy_pwd(password: u32) -> Vec<u8> {
    let mut cmd = vec![Command::VfyPwd as u8];
    cmd.extend_from_slice(&password.to_be_bytes());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    fn driver(stream: DuplexStream) -> Fingerprint<DuplexStream> {
        Fingerprint {
            stream,
            decoder: Decoder::new(),
            config: FingerprintConfig::default(),
            capacity: 200,
            reset_seen: false,
            session_lost: false,
        }
    }

    /// Reads one command packet on the module side.
    async fn read_command(module: &mut DuplexStream) -> Packet {
        let mut d = Decoder::new();
        let mut buf = [0u8; 64];
        loop {
            if let Some(p) = d.next_packet() {
                return p.expect("driver sent a valid packet");
            }
            let n = module.read(&mut buf).await.expect("read");
            assert!(n > 0, "driver closed the link");
            d.push(&buf[..n]);
        }
    }

    fn ack(address: u32, payload: &[u8]) -> Vec<u8> {
        Packet::ack(address, payload.to_vec())
            .encode()
            .expect("encode")
    }

    #[tokio::test]
    async fn a_new_session_repeats_only_what_does_not_need_the_lost_buffers() {
        let (drv, mut module) = tokio::io::duplex(1024);
        let mut fp = driver(drv);
        fp.config.password = 0x1234_5678;
        let server = tokio::spawn(async move {
            // Store answered "password first": the module restarted and its
            // feature buffers are empty.
            let cmd = read_command(&mut module).await;
            assert_eq!(cmd.payload[0], Command::Store as u8);
            module
                .write_all(&ack(DEFAULT_ADDRESS, &[0x21]))
                .await
                .expect("write");
            let cmd = read_command(&mut module).await;
            assert_eq!(cmd.payload, vfy_pwd(0x1234_5678));
            module
                .write_all(&ack(DEFAULT_ADDRESS, &[0x00]))
                .await
                .expect("write");
            // The next instruction is the count, not a second Store.
            let cmd = read_command(&mut module).await;
            assert_eq!(cmd.payload, vec![Command::TemplateNum as u8]);
            module
                .write_all(&ack(DEFAULT_ADDRESS, &[0x21]))
                .await
                .expect("write");
            let cmd = read_command(&mut module).await;
            assert_eq!(cmd.payload, vfy_pwd(0x1234_5678));
            module
                .write_all(&ack(DEFAULT_ADDRESS, &[0x00]))
                .await
                .expect("write");
            // A count needs no buffer: repeated once.
            let cmd = read_command(&mut module).await;
            assert_eq!(cmd.payload, vec![Command::TemplateNum as u8]);
            module
                .write_all(&ack(DEFAULT_ADDRESS, &[0x00, 0x00, 0x04]))
                .await
                .expect("write");
            module
        });
        let e = fp.store(1, 7).await.expect_err("the buffer is gone");
        assert!(matches!(e, FingerprintError::ModuleReset), "{e:?}");
        assert_eq!(fp.template_count().await.expect("count"), 4);
        server.await.expect("server");
    }

    #[tokio::test]
    async fn a_late_reply_is_never_taken_for_the_next_one() {
        let (drv, mut module) = tokio::io::duplex(1024);
        let mut fp = driver(drv);
        // An answer nobody asked for (say, to a request that timed out).
        module
            .write_all(&ack(DEFAULT_ADDRESS, &[0x00, 0x00, 0x07]))
            .await
            .expect("write");
        let server = tokio::spawn(async move {
            let cmd = read_command(&mut module).await;
            assert_eq!(cmd.payload, vec![Command::TemplateNum as u8]);
            // The real answer, after noise and split in two writes.
            let bytes = ack(DEFAULT_ADDRESS, &[0x00, 0x00, 0x03]);
            let (a, b) = bytes.split_at(5);
            module.write_all(&[0x00, 0x13]).await.expect("write");
            module.write_all(a).await.expect("write");
            module.write_all(b).await.expect("write");
            module
        });
        assert_eq!(fp.template_count().await.expect("count"), 3);
        server.await.expect("server");
    }

    #[tokio::test]
    async fn a_reply_from_another_address_or_without_results_is_refused() {
        let (drv, mut module) = tokio::io::duplex(1024);
        let mut fp = driver(drv);
        let server = tokio::spawn(async move {
            read_command(&mut module).await;
            module
                .write_all(&ack(0x1234_5678, &[0x00, 0x00, 0x01]))
                .await
                .expect("write");
            read_command(&mut module).await;
            module
                .write_all(&ack(DEFAULT_ADDRESS, &[0x00]))
                .await
                .expect("write");
            read_command(&mut module).await;
            module
                .write_all(&ack(DEFAULT_ADDRESS, &[0x0B]))
                .await
                .expect("write");
            module
        });
        let e = fp.template_count().await.expect_err("wrong address");
        assert!(matches!(e, FingerprintError::Protocol { .. }), "{e:?}");
        let e = fp.template_count().await.expect_err("no count");
        assert!(matches!(e, FingerprintError::Protocol { .. }), "{e:?}");
        let e = fp.store(1, 7).await.expect_err("bad slot");
        assert!(
            matches!(
                e,
                FingerprintError::Module {
                    command: Command::Store,
                    code: ModuleCode::BadSlot
                }
            ),
            "{e:?}"
        );
        server.await.expect("server");
    }

    #[test]
    fn confirmation_codes_round_trip() {
        for code in 1..=255u8 {
            let c = ModuleCode::from_code(code).expect("non-zero is an error");
            assert_eq!(c.code(), code);
        }
        assert_eq!(ModuleCode::from_code(0), None);
    }
}
