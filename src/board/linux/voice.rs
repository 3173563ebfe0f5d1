//! Voice prompts on an ALSA PCM.
//!
//! ```text
//!  engine Action::Prompt ──► AlsaVoice::say ──(latest wins)──► playback thread
//!                                                               │ load WAVs (cached)
//!                                                               │ hw params = asset's rate/channels, S16
//!                                                               └─► writei in ~20 ms chunks
//!                                                                    a newer prompt: snd_pcm_drop, start over
//! ```
//!
//! ALSA's PCM API is blocking, so playback lives on its own OS thread; the
//! daemon only queues a prompt and returns. Between chunks the thread looks
//! for a newer prompt, so a new one interrupts the old within one chunk.
//! A missing or unreadable asset is logged once per name and skipped: the
//! lock keeps working without that sound. Mute (B-3.4) is the engine's
//! business: a muted prompt never reaches here.
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};

use crate::board::drivers::prompts::{apply_volume, parse_wav, prompt_assets, Pcm16};
use crate::core::{Language, Prompt};

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("cannot open ALSA PCM `{pcm}`: {source}; check `voice.pcm` in the board file (`aplay -L` lists PCMs)")]
    Open { pcm: String, source: alsa::Error },
    #[error("ALSA PCM `{pcm}` refused {what}: {source}")]
    Params {
        pcm: String,
        what: &'static str,
        source: alsa::Error,
    },
    #[error("prompt assets directory {0} does not exist; check `voice.assets` (it holds one folder per language: en, zh-TW)")]
    Assets(PathBuf),
    #[error("the playback thread has stopped")]
    Stopped,
}

/// Why a prompt's WAV asset could not be used (logged once per asset).
#[derive(Debug, thiserror::Error)]
enum AssetError {
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    #[error("not a usable WAV file: {0}")]
    Wav(#[source] crate::board::drivers::prompts::WavError),
}

enum Cmd {
    Say(Vec<String>, Instant),
    Stop,
    Shutdown,
}

/// What the playback thread reports, for tests and latency figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaybackEvent {
    /// The first frames of a prompt were written to the PCM; the duration
    /// is from `say()` to that write.
    Started {
        first: String,
        latency: Duration,
    },
    /// A prompt played to its end.
    Finished {
        frames: usize,
    },
    /// A newer prompt cut this one short.
    Interrupted,
    Missing(String),
    /// The PCM refused the prompt (logged too).
    Failed(String),
}

/// A handle to the playback thread. Dropping it stops playback.
pub struct AlsaVoice {
    tx: mpsc::Sender<Cmd>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for AlsaVoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlsaVoice").finish_non_exhaustive()
    }
}

impl AlsaVoice {
    /// Checks the PCM opens, then starts the playback thread.
    /// `events` receives [`PlaybackEvent`]s when given.
    pub fn start(
        pcm: &str,
        assets: PathBuf,
        volume: u8,
        events: Option<mpsc::Sender<PlaybackEvent>>,
    ) -> Result<Self, VoiceError> {
        // Every language's folder, checked at start: the language can
        // change at any time (menu, app), and a lock that cannot say a
        // language it offers should say so now, not at the first prompt.
        for lang in Language::ALL {
            let dir = assets.join(lang.tag());
            if !dir.is_dir() {
                return Err(VoiceError::Assets(dir));
            }
        }
        // Fail at start-up, with the PCM's name, rather than at the first prompt.
        drop(open(pcm)?);
        let (tx, rx) = mpsc::channel();
        let player = Player {
            pcm: pcm.to_string(),
            assets,
            volume,
            cache: HashMap::new(),
            missing: HashSet::new(),
            events,
        };
        let thread = thread::Builder::new()
            .name("latchd-voice".into())
            .spawn(move || player.run(rx))
            .map_err(|_| VoiceError::Stopped)?;
        Ok(AlsaVoice {
            tx,
            thread: Some(thread),
        })
    }

    /// Queue a prompt in `lang`; a prompt still playing is cut short.
    pub fn say(&self, prompt: &Prompt, lang: Language) -> Result<(), VoiceError> {
        self.tx
            .send(Cmd::Say(prompt_assets(prompt, lang), Instant::now()))
            .map_err(|_| VoiceError::Stopped)
    }

    pub fn stop(&self) -> Result<(), VoiceError> {
        self.tx.send(Cmd::Stop).map_err(|_| VoiceError::Stopped)
    }
}

impl Drop for AlsaVoice {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open(name: &str) -> Result<PCM, VoiceError> {
    PCM::new(name, Direction::Playback, false).map_err(|source| VoiceError::Open {
        pcm: name.to_string(),
        source,
    })
}

struct Player {
    pcm: String,
    assets: PathBuf,
    volume: u8,
    cache: HashMap<String, Option<Pcm16>>,
    missing: HashSet<String>,
    events: Option<mpsc::Sender<PlaybackEvent>>,
}

/// Frames per write: ~20 ms at 16 kHz, the interruption granularity.
const CHUNK_FRAMES: usize = 320;

impl Player {
    fn emit(&self, e: PlaybackEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    fn load(&mut self, name: &str) -> Option<Pcm16> {
        if let Some(c) = self.cache.get(name) {
            return c.clone();
        }
        let path = self.assets.join(format!("{name}.wav"));
        let loaded = std::fs::read(&path)
            .map_err(AssetError::Read)
            .and_then(|b| parse_wav(&b).map_err(AssetError::Wav));
        let pcm = match loaded {
            Ok(mut p) => {
                apply_volume(&mut p.samples, self.volume);
                Some(p)
            }
            Err(e) => {
                // Logged once per asset: a missing sound is not worth a log
                // line per prompt.
                if self.missing.insert(name.to_string()) {
                    tracing::warn!(asset = %path.display(), error = %e, "voice prompt asset missing; the prompt is skipped");
                }
                self.emit(PlaybackEvent::Missing(name.to_string()));
                None
            }
        };
        self.cache.insert(name.to_string(), pcm.clone());
        pcm
    }

    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut next: Option<Cmd> = None;
        loop {
            let cmd = match next.take() {
                Some(c) => c,
                None => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            match cmd {
                Cmd::Shutdown => return,
                Cmd::Stop => continue,
                Cmd::Say(names, asked) => {
                    next = self.play(&names, asked, &rx);
                }
            }
        }
    }

    /// Play the assets back to back; returns a command that interrupted.
    fn play(&mut self, names: &[String], asked: Instant, rx: &mpsc::Receiver<Cmd>) -> Option<Cmd> {
        let clips: Vec<(String, Pcm16)> = names
            .iter()
            .filter_map(|n| self.load(n).map(|p| (n.clone(), p)))
            .collect();
        let (_, first) = clips.first()?;
        // Assets of one prompt share a format (one generator made them);
        // a clip in another format is resampled by ALSA's plug layer if the
        // PCM has one, else refused below and skipped.
        let (rate, channels) = (first.rate, first.channels);
        let pcm = match open(&self.pcm)
            .and_then(|p| configure(&p, &self.pcm, rate, channels).map(|_| p))
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "voice prompt not played");
                self.emit(PlaybackEvent::Failed(e.to_string()));
                return None;
            }
        };
        let io = match pcm.io_i16() {
            Ok(io) => io,
            Err(e) => {
                tracing::error!(error = %e, "voice prompt not played");
                self.emit(PlaybackEvent::Failed(e.to_string()));
                return None;
            }
        };
        let mut written = 0usize;
        let mut started = false;
        for (name, clip) in &clips {
            if clip.rate != rate || clip.channels != channels {
                tracing::warn!(asset = %name, "prompt asset format differs from the rest of the prompt; skipped");
                continue;
            }
            let ch = usize::from(channels);
            for chunk in clip.samples.chunks(CHUNK_FRAMES * ch) {
                if let Ok(cmd) = rx.try_recv() {
                    let _ = pcm.drop();
                    self.emit(PlaybackEvent::Interrupted);
                    return Some(cmd);
                }
                let mut off = 0;
                while off < chunk.len() {
                    match io.writei(&chunk[off..]) {
                        Ok(frames) => {
                            if !started {
                                started = true;
                                self.emit(PlaybackEvent::Started {
                                    first: name.clone(),
                                    latency: asked.elapsed(),
                                });
                            }
                            off += frames * ch;
                            written += frames;
                        }
                        Err(e) => {
                            // An underrun (EPIPE) is recoverable; anything
                            // else ends this prompt.
                            if pcm.recover(e.errno(), true).is_err() {
                                tracing::error!(error = %e, "voice playback failed");
                                self.emit(PlaybackEvent::Failed(e.to_string()));
                                return None;
                            }
                        }
                    }
                }
            }
        }
        let _ = pcm.drain();
        self.emit(PlaybackEvent::Finished { frames: written });
        None
    }
}

fn configure(pcm: &PCM, name: &str, rate: u32, channels: u16) -> Result<(), VoiceError> {
    let err = |what| {
        move |source| VoiceError::Params {
            pcm: name.to_string(),
            what,
            source,
        }
    };
    let hwp = HwParams::any(pcm).map_err(err("hardware parameters"))?;
    hwp.set_access(Access::RWInterleaved)
        .map_err(err("interleaved access"))?;
    hwp.set_format(Format::s16())
        .map_err(err("16-bit samples"))?;
    hwp.set_channels(u32::from(channels))
        .map_err(err("the channel count"))?;
    hwp.set_rate(rate, ValueOr::Nearest)
        .map_err(err("the sample rate"))?;
    pcm.hw_params(&hwp).map_err(err("the parameters"))?;
    Ok(())
}
