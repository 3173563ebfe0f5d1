//! Prompt latency: from `AlsaVoice::say` (what the daemon calls when the
//! engine emits `Action::Prompt`) to the first audio frames accepted by
//! ALSA, through the userspace `file` PCM over `null` (no sound card
//! needed). Prints min / median / p95 / max over 50 prompts.
//!
//!     cargo bench --features board-linux --bench voice_latency
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use latchd::board::linux::voice::{AlsaVoice, PlaybackEvent};
use latchd::core::Prompt;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("asound.conf");
    std::fs::write(
        &conf,
        format!(
            "</usr/share/alsa/alsa.conf>\npcm.tofile {{\n type file\n slave.pcm \"null\"\n file \"{}\"\n format \"wav\"\n}}\n",
            dir.path().join("out.wav").display()
        ),
    )
    .expect("write ALSA config");
    std::env::set_var("ALSA_CONFIG_PATH", &conf);
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/prompts");
    let (tx, rx) = mpsc::channel();
    let voice = AlsaVoice::start("tofile", assets, 80, Some(tx)).expect("ALSA file PCM");
    let mut lat = Vec::new();
    for _ in 0..50 {
        voice
            .say(&Prompt::Unlocked, latchd::core::Language::En)
            .expect("say");
        loop {
            match rx
                .recv_timeout(Duration::from_secs(10))
                .expect("playback event")
            {
                PlaybackEvent::Started { latency, .. } => lat.push(latency),
                PlaybackEvent::Finished { .. } => break,
                _ => {}
            }
        }
    }
    lat.sort();
    let pct = |p: usize| lat[(lat.len() - 1) * p / 100];
    println!(
        "prompt latency (say -> first frames written), {} prompts: min {:?}  median {:?}  p95 {:?}  max {:?}",
        lat.len(),
        lat[0],
        pct(50),
        pct(95),
        lat[lat.len() - 1]
    );
}
