//! Which recorded assets make up a voice prompt, and the WAV format they
//! are stored in.
//!
//! Most prompts are one asset named by [`Prompt::asset`]. Prompts that
//! speak values are spelled from a fixed vocabulary so that every sentence
//! the lock can say is covered by a finite, pre-recorded set:
//! `user_number` + three `digit_N`; system information as
//! `serial_number` + characters + `firmware_version` + characters +
//! `verification_code` + characters (+ `matter_setup_code` + digits on a
//! lock with a Matter node), each character `digit_N`, `letter_X` or
//! `point`.
//!
//! The English set in `assets/prompts/` is generated from
//! [`asset_texts`] by `scripts/gen-prompts.sh` (espeak-ng), so the words
//! and the recordings cannot drift apart.
use crate::core::Prompt;

/// Assets to play, in order, for one prompt.
pub fn prompt_assets(prompt: &Prompt) -> Vec<String> {
    match prompt {
        Prompt::UserNumber(n) => {
            let mut v = vec!["user_number".to_string()];
            v.extend(n.digits().iter().map(|d| format!("digit_{d}")));
            v
        }
        Prompt::SystemInfo {
            serial,
            firmware,
            verification_code,
            matter_code,
        } => {
            let mut v = vec!["serial_number".to_string()];
            v.extend(spell(serial));
            v.push("firmware_version".into());
            v.extend(spell(firmware));
            v.push("verification_code".into());
            v.extend(spell(verification_code));
            if let Some(code) = matter_code {
                v.push("matter_setup_code".into());
                v.extend(spell(code));
            }
            v
        }
        other => vec![other.asset()],
    }
}

/// One asset per character that can be spoken; other characters (dashes,
/// spaces) are skipped.
fn spell(s: &str) -> impl Iterator<Item = String> + '_ {
    s.chars().filter_map(|c| match c {
        '0'..='9' => Some(format!("digit_{c}")),
        'a'..='z' | 'A'..='Z' => Some(format!("letter_{}", c.to_ascii_lowercase())),
        '.' => Some("point".to_string()),
        _ => None,
    })
}

/// Every asset name with the English text it is recorded from.
pub fn asset_texts() -> Vec<(String, String)> {
    use crate::core::input::{FaceFix, FacePose};
    let fixed = [
        Prompt::ChooseDirection,
        Prompt::DirectionSet,
        Prompt::CreateAdmin,
        Prompt::EnterPasscode,
        Prompt::RepeatPasscode,
        Prompt::PasscodeMismatch,
        Prompt::PasscodeTooSimple,
        Prompt::PasscodeTaken,
        Prompt::InputTooLong,
        Prompt::Success,
        Prompt::Failure,
        Prompt::MenuMain,
        Prompt::ChooseMethod,
        Prompt::ChooseMethodOrDuress,
        Prompt::FacePose(FacePose::Straight),
        Prompt::FacePose(FacePose::Up),
        Prompt::FacePose(FacePose::Down),
        Prompt::FacePose(FacePose::Left),
        Prompt::FacePose(FacePose::Right),
        Prompt::FaceFix(FaceFix::NoFace),
        Prompt::FaceFix(FaceFix::SeveralFaces),
        Prompt::FaceFix(FaceFix::TooFar),
        Prompt::FaceFix(FaceFix::TooClose),
        Prompt::FaceFix(FaceFix::Blurry),
        Prompt::FaceFix(FaceFix::Covered),
        Prompt::FaceFix(FaceFix::WrongPose),
        Prompt::PlacePalm,
        Prompt::PlaceFinger,
        Prompt::PresentAgain,
        Prompt::Remove,
        Prompt::AlreadyEnrolled,
        Prompt::LimitReached,
        Prompt::EnterUserNumber,
        Prompt::NoSuchUser,
        Prompt::CannotDeleteLastAdmin,
        Prompt::Deleted,
        Prompt::VerifyAdmin,
        Prompt::Unlocked,
        Prompt::Locked,
        Prompt::VerifyFailed,
        Prompt::LockedOut,
        Prompt::KeypadDisabled,
        Prompt::KeypadReleased,
        Prompt::UserNotValidNow,
        Prompt::TamperAlarm,
        Prompt::LowBattery,
        Prompt::PairingMode,
        Prompt::PairingEnded,
        Prompt::Identify,
        Prompt::MuteOn,
        Prompt::AwayArmed,
        Prompt::AwayDisarmed,
        Prompt::Doorbell,
        Prompt::FactoryResetRelease,
        Prompt::FactoryResetConfirm,
        Prompt::FactoryResetDone,
        Prompt::Jammed,
        Prompt::ModuleFault,
        Prompt::DoorAjar,
        Prompt::DoorForcedOpen,
    ];
    let mut v: Vec<(String, String)> = fixed.iter().map(|p| (p.asset(), p.text())).collect();
    v.push(("user_number".into(), "User number".into()));
    v.push(("serial_number".into(), "Serial number".into()));
    v.push(("firmware_version".into(), "Firmware version".into()));
    v.push(("verification_code".into(), "Verification code".into()));
    v.push(("matter_setup_code".into(), "Matter setup code".into()));
    v.push(("point".into(), "point".into()));
    for d in 0..=9 {
        v.push((format!("digit_{d}"), d.to_string()));
    }
    for c in 'a'..='z' {
        v.push((format!("letter_{c}"), c.to_ascii_uppercase().to_string()));
    }
    v
}

/// 16-bit PCM audio, as the prompt assets are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm16 {
    pub rate: u32,
    pub channels: u16,
    /// Interleaved samples.
    pub samples: Vec<i16>,
}

impl Pcm16 {
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotWave,
    #[error("WAV format {format} with {bits} bits is not supported (expected PCM, 16 bits)")]
    Unsupported { format: u16, bits: u16 },
    #[error("WAV file is truncated or malformed: {0}")]
    Malformed(&'static str),
}

/// Parse a PCM 16-bit WAV. Chunks other than `fmt ` and `data` are
/// skipped; sizes are checked against the buffer.
pub fn parse_wav(bytes: &[u8]) -> Result<Pcm16, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWave);
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body_start = pos + 8;
        // Streams written without a known length (ALSA's file plugin while
        // recording) may carry 0 or 0xFFFFFFFF here: take the rest.
        let body_end = if len == 0 || len == u32::MAX as usize || body_start + len > bytes.len() {
            if id == b"data" {
                bytes.len()
            } else {
                return Err(WavError::Malformed("chunk runs past the end"));
            }
        } else {
            body_start + len
        };
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => {
                if body.len() < 16 {
                    return Err(WavError::Malformed("short fmt chunk"));
                }
                let format = u16::from_le_bytes([body[0], body[1]]);
                let channels = u16::from_le_bytes([body[2], body[3]]);
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                let bits = u16::from_le_bytes([body[14], body[15]]);
                fmt = Some((format, channels, rate, bits));
            }
            b"data" => {
                let (format, channels, rate, bits) =
                    fmt.ok_or(WavError::Malformed("data before fmt"))?;
                // 1 = PCM, 0xFFFE = WAVE_FORMAT_EXTENSIBLE (PCM subformat).
                if !(format == 1 || format == 0xFFFE) || bits != 16 {
                    return Err(WavError::Unsupported { format, bits });
                }
                if channels == 0 || rate == 0 {
                    return Err(WavError::Malformed("zero channels or rate"));
                }
                let samples = body
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                return Ok(Pcm16 {
                    rate,
                    channels,
                    samples,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = body_end + (body_end - body_start) % 2;
    }
    Err(WavError::Malformed("no data chunk"))
}

/// Scale samples for a 0–100 volume on a perceptual (squared) curve.
pub fn apply_volume(samples: &mut [i16], volume: u8) {
    let v = f32::from(volume.min(100)) / 100.0;
    let gain = v * v;
    for s in samples {
        *s = (f32::from(*s) * gain).round() as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::UserNumber;

    pub(crate) fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        v.extend_from_slice(&(2 * channels).to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"LIST");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(b"abc\0");
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&data);
        v
    }

    #[test]
    fn parses_pcm16_and_skips_odd_chunks() {
        let p = parse_wav(&wav(16000, 1, &[1, -2, 3])).unwrap();
        assert_eq!(p.rate, 16000);
        assert_eq!(p.channels, 1);
        assert_eq!(p.samples, vec![1, -2, 3]);
        assert_eq!(p.frames(), 3);
    }

    #[test]
    fn rejects_garbage_and_other_formats() {
        assert_eq!(parse_wav(b"hello"), Err(WavError::NotWave));
        let mut w = wav(8000, 1, &[0]);
        w[34] = 8; // bits per sample
        assert_eq!(
            parse_wav(&w),
            Err(WavError::Unsupported { format: 1, bits: 8 })
        );
        let w = wav(8000, 1, &[0]);
        assert!(parse_wav(&w[..30]).is_err());
    }

    #[test]
    fn user_numbers_are_spoken_digit_by_digit() {
        let p = Prompt::UserNumber(UserNumber::new(42).unwrap());
        assert_eq!(
            prompt_assets(&p),
            ["user_number", "digit_0", "digit_4", "digit_2"]
        );
    }

    #[test]
    fn system_information_is_spelled() {
        let p = Prompt::SystemInfo {
            serial: "LD-7A".into(),
            firmware: "0.1".into(),
            verification_code: "K9".into(),
            matter_code: None,
        };
        assert_eq!(
            prompt_assets(&p),
            [
                "serial_number",
                "letter_l",
                "letter_d",
                "digit_7",
                "letter_a",
                "firmware_version",
                "digit_0",
                "point",
                "digit_1",
                "verification_code",
                "letter_k",
                "digit_9"
            ]
        );
    }

    #[test]
    fn every_asset_name_is_unique_and_recorded() {
        let all = asset_texts();
        let mut names: Vec<_> = all.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/prompts");
        for n in names {
            let f = dir.join(format!("{n}.wav"));
            let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let pcm = parse_wav(&bytes).unwrap();
            assert!(pcm.frames() > 0, "{n} is empty");
        }
    }

    #[test]
    fn volume_scales() {
        let mut s = [1000i16, -1000];
        apply_volume(&mut s, 50);
        assert_eq!(s, [250, -250]);
        let mut s = [1000i16];
        apply_volume(&mut s, 100);
        assert_eq!(s, [1000]);
    }
}
