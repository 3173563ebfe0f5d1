//! Voice prompts through real ALSA: the userspace `file` PCM plugin over
//! the `null` PCM writes what latchd plays into a WAV, no sound card
//! needed. The WAV is read back and compared with the prompt's assets.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use latchd::board::drivers::prompts::{parse_wav, prompt_assets};
use latchd::board::linux::voice::{AlsaVoice, PlaybackEvent};
use latchd::core::types::UserNumber;
use latchd::core::{Language, Prompt};

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/prompts")
}

/// A `file` PCM over `null` writing to a WAV of this test's own: the stock
/// ALSA configuration defines `pcm.file` with `FILE` and `FORMAT`
/// arguments, so the PCM name carries the path. No process-wide
/// `ALSA_CONFIG_PATH` (ALSA reads its configuration once per process, and
/// the tests share one) and no lock between tests. Returns the directory
/// (keep it alive), the WAV path and the PCM name.
fn file_pcm() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let name = format!("file:FILE='{}',FORMAT=wav", out.display());
    (dir, out, name)
}

fn expected_frames(prompt: &Prompt, lang: Language) -> (usize, u32) {
    let mut frames = 0;
    let mut rate = 0;
    for a in prompt_assets(prompt, lang) {
        let pcm = parse_wav(&std::fs::read(assets().join(format!("{a}.wav"))).unwrap()).unwrap();
        frames += pcm.frames();
        rate = pcm.rate;
    }
    (frames, rate)
}

fn wait_for(
    rx: &mpsc::Receiver<PlaybackEvent>,
    want: impl Fn(&PlaybackEvent) -> bool,
) -> PlaybackEvent {
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("playback thread went quiet");
        eprintln!("playback event: {e:?}");
        if want(&e) {
            return e;
        }
        if let PlaybackEvent::Failed(why) = &e {
            panic!("playback failed: {why}");
        }
    }
}

#[test]
fn prompts_play_through_alsa_and_a_newer_prompt_interrupts() {
    let (_dir, out, pcm) = file_pcm();
    let (tx, rx) = mpsc::channel();
    let voice = AlsaVoice::start(&pcm, assets(), 100, Some(tx)).unwrap();

    // A multi-asset prompt: "user number" + three digits, in Mandarin
    // (issue 17 item 4: the chosen language's recordings are played).
    let prompt = Prompt::UserNumber(UserNumber::new(123).unwrap());
    voice.say(&prompt, Language::ZhTw).unwrap();
    match wait_for(&rx, |e| matches!(e, PlaybackEvent::Started { .. })) {
        PlaybackEvent::Started { first, latency } => {
            assert_eq!(first, "zh-TW/user_number");
            eprintln!("prompt latency (say → first frames written): {latency:?}");
        }
        e => panic!("{e:?}"),
    }
    let PlaybackEvent::Finished { frames } =
        wait_for(&rx, |e| matches!(e, PlaybackEvent::Finished { .. }))
    else {
        unreachable!()
    };
    let (want_frames, want_rate) = expected_frames(&prompt, Language::ZhTw);
    assert_ne!(
        want_frames,
        expected_frames(&prompt, Language::En).0,
        "the two languages' recordings differ in length, so the count tells them apart"
    );
    assert_eq!(
        frames, want_frames,
        "every frame of every asset was written"
    );
    drop(voice);

    // What ALSA wrote: same format, same length (the file plugin may pad
    // the last period with silence).
    let written = parse_wav(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(written.rate, want_rate);
    assert_eq!(written.channels, 1);
    assert!(
        written.frames() >= want_frames && written.frames() < want_frames + 4096,
        "wrote {} frames, prompt has {want_frames}",
        written.frames()
    );
    // Not silence: the prompt's audio is there.
    assert!(written.samples.iter().any(|s| s.unsigned_abs() > 1000));

    // A long prompt cut short by a newer one. The `null` PCM does not pace
    // playback (it takes frames as fast as they come), so the newer prompt
    // is queued right behind the long one: the player finds it before the
    // long prompt's first 20 ms chunk and switches.
    let (tx, rx) = mpsc::channel();
    let voice = AlsaVoice::start(&pcm, assets(), 100, Some(tx)).unwrap();
    voice.say(&Prompt::MenuMain, Language::En).unwrap();
    voice.say(&Prompt::Unlocked, Language::En).unwrap();
    wait_for(&rx, |e| *e == PlaybackEvent::Interrupted);
    match wait_for(&rx, |e| matches!(e, PlaybackEvent::Started { .. })) {
        PlaybackEvent::Started { first, .. } => assert_eq!(first, "en/unlocked"),
        e => panic!("{e:?}"),
    }
    wait_for(&rx, |e| matches!(e, PlaybackEvent::Finished { .. }));
}

#[test]
fn a_missing_asset_is_reported_and_playback_goes_on() {
    let (_out_dir, _, pcm) = file_pcm();
    let dir = tempfile::tempdir().unwrap();
    // An assets directory with only one of the two assets of a prompt.
    let partial = dir.path().join("assets");
    for lang in Language::ALL {
        std::fs::create_dir_all(partial.join(lang.tag())).unwrap();
    }
    std::fs::copy(
        assets().join("en/digit_7.wav"),
        partial.join("en/digit_7.wav"),
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let voice = AlsaVoice::start(&pcm, partial, 100, Some(tx)).unwrap();
    voice
        .say(
            &Prompt::UserNumber(UserNumber::new(777).unwrap()),
            Language::En,
        )
        .unwrap();
    assert_eq!(
        wait_for(&rx, |e| matches!(e, PlaybackEvent::Missing(_))),
        PlaybackEvent::Missing("en/user_number".into())
    );
    wait_for(&rx, |e| matches!(e, PlaybackEvent::Finished { .. }));
}

#[test]
fn a_wrong_pcm_name_is_a_clear_start_up_error() {
    let err = AlsaVoice::start("no_such_pcm", assets(), 80, None).expect_err("must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("no_such_pcm") && msg.contains("voice.pcm"),
        "{msg}"
    );
}
