//! Voice prompts through real ALSA: the userspace `file` PCM plugin over
//! the `null` PCM writes what latchd plays into a WAV, no sound card
//! needed. The WAV is read back and compared with the prompt's assets.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use latchd::board::drivers::prompts::{parse_wav, prompt_assets};
use latchd::board::linux::voice::{AlsaVoice, PlaybackEvent};
use latchd::core::types::UserNumber;
use latchd::core::Prompt;

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/prompts")
}

/// ALSA reads its configuration once per process, so every test here
/// shares one configuration with a `tofile` PCM, and one test at a time
/// plays (each play rewrites the file). Returns the lock and the WAV path.
fn alsa_file_pcm() -> (MutexGuard<'static, ()>, PathBuf) {
    static SETUP: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let (_, out) = SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.wav");
        let conf = dir.path().join("asound.conf");
        std::fs::write(
            &conf,
            format!(
                "</usr/share/alsa/alsa.conf>\npcm.tofile {{\n type file\n slave.pcm \"null\"\n file \"{}\"\n format \"wav\"\n}}\n",
                out.display()
            ),
        )
        .unwrap();
        std::env::set_var("ALSA_CONFIG_PATH", &conf);
        (dir, out)
    });
    (guard, out.clone())
}

fn expected_frames(prompt: &Prompt) -> (usize, u32) {
    let mut frames = 0;
    let mut rate = 0;
    for a in prompt_assets(prompt) {
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
    let (_serial, out) = alsa_file_pcm();
    let (tx, rx) = mpsc::channel();
    let voice = AlsaVoice::start("tofile", assets(), 100, Some(tx)).unwrap();

    // A multi-asset prompt: "user number" + three digits.
    let prompt = Prompt::UserNumber(UserNumber::new(123).unwrap());
    voice.say(&prompt).unwrap();
    match wait_for(&rx, |e| matches!(e, PlaybackEvent::Started { .. })) {
        PlaybackEvent::Started { first, latency } => {
            assert_eq!(first, "user_number");
            eprintln!("prompt latency (say → first frames written): {latency:?}");
        }
        e => panic!("{e:?}"),
    }
    let PlaybackEvent::Finished { frames } =
        wait_for(&rx, |e| matches!(e, PlaybackEvent::Finished { .. }))
    else {
        unreachable!()
    };
    let (want_frames, want_rate) = expected_frames(&prompt);
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
    let voice = AlsaVoice::start("tofile", assets(), 100, Some(tx)).unwrap();
    voice.say(&Prompt::MenuMain).unwrap();
    voice.say(&Prompt::Unlocked).unwrap();
    wait_for(&rx, |e| *e == PlaybackEvent::Interrupted);
    match wait_for(&rx, |e| matches!(e, PlaybackEvent::Started { .. })) {
        PlaybackEvent::Started { first, .. } => assert_eq!(first, "unlocked"),
        e => panic!("{e:?}"),
    }
    wait_for(&rx, |e| matches!(e, PlaybackEvent::Finished { .. }));
}

#[test]
fn a_missing_asset_is_reported_and_playback_goes_on() {
    let (_serial, _) = alsa_file_pcm();
    let dir = tempfile::tempdir().unwrap();
    // An assets directory with only one of the two assets of a prompt.
    let partial = dir.path().join("assets");
    std::fs::create_dir(&partial).unwrap();
    std::fs::copy(assets().join("digit_7.wav"), partial.join("digit_7.wav")).unwrap();
    let (tx, rx) = mpsc::channel();
    let voice = AlsaVoice::start("tofile", partial, 100, Some(tx)).unwrap();
    voice
        .say(&Prompt::UserNumber(UserNumber::new(777).unwrap()))
        .unwrap();
    assert_eq!(
        wait_for(&rx, |e| matches!(e, PlaybackEvent::Missing(_))),
        PlaybackEvent::Missing("user_number".into())
    );
    wait_for(&rx, |e| matches!(e, PlaybackEvent::Finished { .. }));
}

#[test]
fn a_wrong_pcm_name_is_a_clear_start_up_error() {
    let (_serial, _) = alsa_file_pcm();
    let err = AlsaVoice::start("no_such_pcm", assets(), 80, None)
        .err()
        .expect("must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("no_such_pcm") && msg.contains("voice.pcm"),
        "{msg}"
    );
}
