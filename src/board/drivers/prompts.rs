//! Which recorded assets make up a voice prompt, and the WAV format they
//! are stored in.
//!
//! Each language has its own set, `assets/prompts/<tag>/<name>.wav`
//! (`en/unlocked.wav`, `zh-TW/unlocked.wav`; tags from
//! [`Language::tag`]), recorded from that language's table in
//! `core::lang` by `scripts/gen-prompts.sh` (espeak-ng), so the words and
//! the recordings cannot drift apart. Every language has every asset.
//!
//! Most prompts are one asset named by [`Prompt::asset`]. Prompts that
//! speak values are spelled from a fixed vocabulary so that every sentence
//! the lock can say is covered by a finite, pre-recorded set:
//! `user_number` + three `digit_N`; system information as
//! `serial_number` + characters + `firmware_version` + characters +
//! `verification_code` + characters (+ `matter_setup_code` + digits on a
//! lock with a Matter node), each character `digit_N`, `letter_X` or
//! `point` — the same words, in the same order, as the prompt's text.
//! The language menu is every language's own `choose_language` asset.
use crate::core::lang::catalogue;
use crate::core::{Language, Prompt};

/// Assets to play, in order, for one prompt said in `lang`: paths below
/// the assets directory without `.wav` (`zh-TW/digit_1`).
pub fn prompt_assets(prompt: &Prompt, lang: Language) -> Vec<String> {
    let in_lang = |name: &str| format!("{}/{name}", lang.tag());
    match prompt {
        Prompt::UserNumber(n) => {
            let mut v = vec![in_lang("user_number")];
            v.extend(n.digits().iter().map(|d| in_lang(&format!("digit_{d}"))));
            v
        }
        Prompt::SystemInfo {
            serial,
            firmware,
            verification_code,
            matter_code,
        } => {
            let mut v = vec![in_lang("serial_number")];
            v.extend(spell(serial).map(|a| in_lang(&a)));
            v.push(in_lang("firmware_version"));
            v.extend(spell(firmware).map(|a| in_lang(&a)));
            v.push(in_lang("verification_code"));
            v.extend(spell(verification_code).map(|a| in_lang(&a)));
            if let Some(code) = matter_code {
                v.push(in_lang("matter_setup_code"));
                v.extend(spell(code).map(|a| in_lang(&a)));
            }
            v
        }
        other => other
            .spoken_in(lang)
            .into_iter()
            .map(|l| format!("{}/{}", l.tag(), other.asset()))
            .collect(),
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

/// Every asset name of `lang`'s set with the text it is recorded from.
pub fn asset_texts(lang: Language) -> Vec<(String, String)> {
    let w = lang.words();
    let mut v: Vec<(String, String)> = catalogue()
        .iter()
        .filter(|p| !matches!(p, Prompt::UserNumber(_) | Prompt::SystemInfo { .. }))
        .map(|p| (p.asset(), p.recorded_text(lang)))
        .collect();
    for (name, text) in [
        ("user_number", w.user_number),
        ("serial_number", w.serial_number),
        ("firmware_version", w.firmware_version),
        ("verification_code", w.verification_code),
        ("matter_setup_code", w.matter_setup_code),
        ("point", w.point),
    ] {
        v.push((name.into(), text.into()));
    }
    for (d, word) in w.digits.iter().enumerate() {
        v.push((format!("digit_{d}"), (*word).into()));
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
    fn user_numbers_are_spoken_digit_by_digit_in_the_chosen_language() {
        let p = Prompt::UserNumber(UserNumber::new(42).unwrap());
        assert_eq!(
            prompt_assets(&p, Language::En),
            ["en/user_number", "en/digit_0", "en/digit_4", "en/digit_2"]
        );
        assert_eq!(
            prompt_assets(&p, Language::ZhTw),
            [
                "zh-TW/user_number",
                "zh-TW/digit_0",
                "zh-TW/digit_4",
                "zh-TW/digit_2"
            ]
        );
    }

    #[test]
    fn the_language_menu_plays_each_language_in_its_own_voice() {
        for lang in Language::ALL {
            assert_eq!(
                prompt_assets(&Prompt::ChooseLanguage, lang),
                ["en/choose_language", "zh-TW/choose_language"]
            );
        }
        assert_eq!(
            prompt_assets(&Prompt::Unlocked, Language::ZhTw),
            ["zh-TW/unlocked"]
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
        let names: Vec<String> = prompt_assets(&p, Language::En)
            .into_iter()
            .map(|a| a.strip_prefix("en/").unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
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

    /// Issue 17 item 4: every prompt has its recording in every language,
    /// and no language folder holds a recording no prompt uses (a renamed
    /// prompt leaves none behind). The committed WAVs are checked, not
    /// regenerated: CI has no espeak-ng. Each folder's `texts.tsv`, written
    /// with the recordings, must be the table's texts: a prompt whose words
    /// changed without `scripts/gen-prompts.sh` fails here.
    #[test]
    fn every_prompt_has_an_asset_in_every_language_and_none_is_orphaned() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/prompts");
        let mut dirs: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        dirs.sort();
        let mut tags: Vec<String> = Language::ALL.iter().map(|l| l.tag().to_owned()).collect();
        tags.sort();
        assert_eq!(dirs, tags, "one folder per language in {}", root.display());
        let loose: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        assert!(
            loose.is_empty(),
            "recordings outside a language folder: {loose:?}"
        );
        for lang in Language::ALL {
            let texts = asset_texts(lang);
            let mut names: Vec<String> = texts.iter().map(|(n, _)| n.clone()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), texts.len(), "{lang}: an asset name twice");
            // Every asset a prompt of the catalogue plays is in the list.
            for p in catalogue() {
                for a in prompt_assets(&p, lang) {
                    let (_, name) = a.split_once('/').unwrap();
                    assert!(names.iter().any(|n| n == name), "{lang}: {a} not recorded");
                }
            }
            let dir = root.join(lang.tag());
            for n in &names {
                let f = dir.join(format!("{n}.wav"));
                let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                let pcm = parse_wav(&bytes).unwrap();
                assert!(pcm.frames() > 0, "{} is empty", f.display());
                assert_eq!((pcm.rate, pcm.channels), (16_000, 1), "{}", f.display());
            }
            let recorded = std::fs::read_to_string(dir.join("texts.tsv")).unwrap();
            let table: String = texts.iter().map(|(n, t)| format!("{n}\t{t}\n")).collect();
            for (want, got) in table.lines().zip(recorded.lines()) {
                assert_eq!(
                    want, got,
                    "{lang}: the recording says something else; run scripts/gen-prompts.sh"
                );
            }
            assert_eq!(table.lines().count(), recorded.lines().count(), "{lang}");
            let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|f| f != "texts.tsv")
                .collect();
            on_disk.sort();
            let expected: Vec<String> = names.iter().map(|n| format!("{n}.wav")).collect();
            let orphans: Vec<_> = on_disk.iter().filter(|f| !expected.contains(f)).collect();
            assert!(
                orphans.is_empty(),
                "{lang}: recordings of no prompt: {orphans:?}"
            );
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
