//! The simulated outdoor camera: still pictures played into the frame ring
//! at a steady rate, as a V4L2 camera would deliver them.
//!
//! ```text
//!   <dir>/1.jpg, 2.png, …  (person N)   ┐ decoded + letterboxed once
//!   <dir>/empty.jpg (optional)          ┘ to width×height at start
//!            │ show_person(Some(N)) / show_person(None) / show_image(img)
//!            │ (also through a cloned SceneControl: the sim's `face(person)`)
//!            ▼
//!   tick every 1/fps (tokio time) ──► FrameRing::publish(Rgb)
//! ```
//!
//! A person with no picture cannot be shown (an error, nothing changes).
//! Without an `empty` picture the empty scene is a flat grey wall, on
//! which the detector finds no face. The ticks run on tokio time, so a
//! test under `tokio::time::pause()` is deterministic.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use image::{imageops, Rgb, RgbImage};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::video::{FrameRing, PixelFormat};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimCameraError {
    #[error("sim camera picture {path}: {detail}")]
    Picture { path: PathBuf, detail: String },
    #[error("sim camera: no picture for person {0}; add <dir>/{0}.jpg")]
    UnknownPerson(u32),
    #[error("sim camera: {0}")]
    Config(String),
}

/// What the simulated camera is built from.
#[derive(Debug, Clone)]
pub struct SimCameraConfig {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Picture of each simulated person.
    pub people: BTreeMap<u32, PathBuf>,
    /// Picture of the empty doorstep; `None` is a grey wall.
    pub empty: Option<PathBuf>,
}

impl SimCameraConfig {
    /// 320×240 at 10 frames/s with no pictures.
    pub fn new(width: u32, height: u32) -> Self {
        SimCameraConfig {
            width,
            height,
            fps: 10,
            people: BTreeMap::new(),
            empty: None,
        }
    }

    /// Pictures from a directory: `<N>.jpg|jpeg|png` is person N,
    /// `empty.*` the empty scene; other files are ignored.
    pub fn from_dir(dir: &Path, width: u32, height: u32) -> Result<Self, SimCameraError> {
        let mut cfg = Self::new(width, height);
        let rd = std::fs::read_dir(dir).map_err(|e| SimCameraError::Picture {
            path: dir.to_owned(),
            detail: e.to_string(),
        })?;
        for entry in rd {
            let path = entry
                .map_err(|e| SimCameraError::Picture {
                    path: dir.to_owned(),
                    detail: e.to_string(),
                })?
                .path();
            let is_picture = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"));
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if !is_picture {
                continue;
            }
            if stem == "empty" {
                cfg.empty = Some(path.clone());
            } else if let Ok(n) = stem.parse::<u32>() {
                cfg.people.insert(n, path.clone());
            }
        }
        Ok(cfg)
    }
}

#[derive(Debug, Clone)]
enum Scene {
    Empty,
    Person(u32),
    Picture(Arc<RgbImage>),
}

/// A cheap handle that switches what the camera shows (who stands at the
/// door); the simulated board's `SimControl::face` holds one.
#[derive(Debug, Clone)]
pub struct SceneControl {
    scene: Arc<watch::Sender<Scene>>,
    people: Arc<BTreeSet<u32>>,
}

impl SceneControl {
    /// Put person `n` in front of the camera, or nobody. A person with no
    /// picture is an error and changes nothing.
    pub fn show_person(&self, person: Option<u32>) -> Result<(), SimCameraError> {
        let scene = match person {
            None => Scene::Empty,
            Some(n) if self.people.contains(&n) => Scene::Person(n),
            Some(n) => return Err(SimCameraError::UnknownPerson(n)),
        };
        self.scene.send_replace(scene);
        Ok(())
    }
}

/// The running simulated camera; dropping it stops the frames.
#[derive(Debug)]
pub struct SimCamera {
    ring: FrameRing,
    scene: SceneControl,
    people: BTreeMap<u32, Arc<RgbImage>>,
    width: u32,
    height: u32,
    task: JoinHandle<()>,
}

impl Drop for SimCamera {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Scale `img` to fit `w`×`h`, centred on grey (keeps the aspect ratio,
/// as a camera's field of view would).
pub fn letterbox(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (iw, ih) = img.dimensions();
    let scale = (w as f32 / iw.max(1) as f32).min(h as f32 / ih.max(1) as f32);
    let nw = ((iw as f32 * scale).round() as u32).clamp(1, w);
    let nh = ((ih as f32 * scale).round() as u32).clamp(1, h);
    let scaled = imageops::resize(img, nw, nh, imageops::FilterType::Triangle);
    let mut out = RgbImage::from_pixel(w, h, Rgb([128, 128, 128]));
    imageops::overlay(
        &mut out,
        &scaled,
        i64::from((w - nw) / 2),
        i64::from((h - nh) / 2),
    );
    out
}

fn load(path: &Path, w: u32, h: u32) -> Result<Arc<RgbImage>, SimCameraError> {
    let img = image::open(path).map_err(|e| SimCameraError::Picture {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    Ok(Arc::new(letterbox(&img.to_rgb8(), w, h)))
}

impl SimCamera {
    /// Decode every picture and start publishing the empty scene into
    /// `ring`. Must be called inside a tokio runtime.
    pub fn start(cfg: &SimCameraConfig, ring: FrameRing) -> Result<Self, SimCameraError> {
        if cfg.width == 0 || cfg.height == 0 || cfg.width > 4096 || cfg.height > 4096 {
            return Err(SimCameraError::Config(
                "width and height must be 1-4096".into(),
            ));
        }
        if cfg.fps == 0 || cfg.fps > 120 {
            return Err(SimCameraError::Config("fps must be 1-120".into()));
        }
        let (w, h) = (cfg.width, cfg.height);
        let mut people = BTreeMap::new();
        for (n, p) in &cfg.people {
            people.insert(*n, load(p, w, h)?);
        }
        let empty = match &cfg.empty {
            Some(p) => load(p, w, h)?,
            None => Arc::new(RgbImage::from_pixel(w, h, Rgb([128, 128, 128]))),
        };
        let (scene, mut rx) = watch::channel(Scene::Empty);
        let period = Duration::from_secs(1) / cfg.fps;
        let task_people = people.clone();
        let task_ring = ring.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            // A starved test machine skips ticks instead of bursting.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let img = match &*rx.borrow_and_update() {
                    Scene::Empty => empty.clone(),
                    Scene::Person(n) => match task_people.get(n) {
                        Some(i) => i.clone(),
                        None => empty.clone(),
                    },
                    Scene::Picture(i) => i.clone(),
                };
                task_ring.publish(w, h, PixelFormat::Rgb, img.as_raw().clone());
            }
        });
        let scene = SceneControl {
            scene: Arc::new(scene),
            people: Arc::new(people.keys().copied().collect()),
        };
        Ok(SimCamera {
            ring,
            scene,
            people,
            width: w,
            height: h,
            task,
        })
    }

    /// Put person `n` in front of the camera, or nobody.
    pub fn show_person(&self, person: Option<u32>) -> Result<(), SimCameraError> {
        self.scene.show_person(person)
    }

    /// A handle that switches the scene while the camera runs.
    pub fn control(&self) -> SceneControl {
        self.scene.clone()
    }

    /// Show an arbitrary picture (letterboxed to the camera's size).
    pub fn show_image(&self, img: &RgbImage) {
        let fitted = if img.dimensions() == (self.width, self.height) {
            img.clone()
        } else {
            letterbox(img, self.width, self.height)
        };
        self.scene
            .scene
            .send_replace(Scene::Picture(Arc::new(fitted)));
    }

    /// The people this camera has pictures of.
    pub fn people(&self) -> impl Iterator<Item = u32> + '_ {
        self.people.keys().copied()
    }

    pub fn ring(&self) -> &FrameRing {
        &self.ring
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn publishes_the_scene_at_the_frame_rate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let red = RgbImage::from_pixel(40, 20, Rgb([255, 0, 0]));
        red.save(dir.path().join("3.png")).expect("save");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
        let cfg = SimCameraConfig::from_dir(dir.path(), 32, 24).expect("dir");
        assert_eq!(cfg.people.len(), 1);
        let ring = FrameRing::new();
        let cam = SimCamera::start(&cfg, ring.clone()).expect("start");
        let mut frames = ring.subscribe();
        let f = frames.next().await.expect("frame");
        assert_eq!((f.width, f.height, f.format), (32, 24, PixelFormat::Rgb));
        assert_eq!(
            f.to_rgb().expect("rgb").get_pixel(16, 12).0,
            [128, 128, 128]
        );
        cam.show_person(Some(3)).expect("known");
        let f = frames.next().await.expect("frame");
        assert_eq!(f.to_rgb().expect("rgb").get_pixel(16, 12).0, [255, 0, 0]);
        assert!(matches!(
            cam.show_person(Some(9)),
            Err(SimCameraError::UnknownPerson(9))
        ));
        // A cloned handle switches the same camera.
        let control = cam.control();
        control.show_person(None).expect("empty");
        let f = frames.next().await.expect("frame");
        assert_eq!(
            f.to_rgb().expect("rgb").get_pixel(16, 12).0,
            [128, 128, 128]
        );
        assert!(control.show_person(Some(4)).is_err());
    }

    #[test]
    fn letterbox_keeps_aspect() {
        let img = RgbImage::from_pixel(100, 50, Rgb([0, 0, 0]));
        let out = letterbox(&img, 100, 100);
        assert_eq!(out.get_pixel(50, 10).0, [128, 128, 128]);
        assert_eq!(out.get_pixel(50, 50).0, [0, 0, 0]);
    }
}
