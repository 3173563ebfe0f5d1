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
//!
//! The simulated IR camera ([`SimIrCamera`], `[face] sim_ir_dir`) follows
//! the same scene: `<ir dir>/N.png` is what it sees while person N is at
//! the door, read as luma and letterboxed to the RGB frame size exactly as
//! `N.jpg` is, so a face box of the RGB frame lies on the same face in
//! the IR frame (the two pictures must have the same aspect ratio, which
//! is checked at start). Nobody at the door, an arbitrary picture, or a
//! person without an IR picture: no IR frame (the liveness check then
//! refuses the face).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use image::{imageops, GrayImage, ImageBuffer, Luma, Pixel, Rgb, RgbImage};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::board::frames::{FrameRing, PixelFormat};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimCameraError {
    #[error("sim camera picture {path}: {detail}")]
    Picture { path: PathBuf, detail: String },
    #[error("sim camera: no picture for person {0}; add <dir>/{0}.jpg")]
    UnknownPerson(u32),
    #[error("sim camera: {0}")]
    Config(String),
    #[error("sim IR picture {ir} is {ir_size:?} but the camera picture {rgb} is {rgb_size:?}: the aspect ratios differ, so a face box cannot be carried across; give the IR picture the camera picture's framing")]
    NotRegistered {
        ir: PathBuf,
        ir_size: (u32, u32),
        rgb: PathBuf,
        rgb_size: (u32, u32),
    },
    #[error("sim IR camera: {0}")]
    NoIrFrame(String),
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
    /// Each person's picture file and its size before letterboxing (what
    /// an IR picture must match to be registered).
    sources: BTreeMap<u32, (PathBuf, (u32, u32))>,
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
    letterbox_on(img, w, h, Rgb([128, 128, 128]))
}

/// [`letterbox`] for an IR picture: the same geometry, so a picture of the
/// same aspect ratio lands on the same pixels; the border is dark, as the
/// background beyond an IR illuminator's reach is.
pub fn letterbox_luma(img: &GrayImage, w: u32, h: u32) -> GrayImage {
    letterbox_on(img, w, h, Luma([0]))
}

fn letterbox_on<P: Pixel<Subpixel = u8> + 'static>(
    img: &ImageBuffer<P, Vec<u8>>,
    w: u32,
    h: u32,
    fill: P,
) -> ImageBuffer<P, Vec<u8>> {
    let (iw, ih) = img.dimensions();
    let scale = (w as f32 / iw.max(1) as f32).min(h as f32 / ih.max(1) as f32);
    let nw = ((iw as f32 * scale).round() as u32).clamp(1, w);
    let nh = ((ih as f32 * scale).round() as u32).clamp(1, h);
    let scaled = imageops::resize(img, nw, nh, imageops::FilterType::Triangle);
    let mut out = ImageBuffer::from_pixel(w, h, fill);
    imageops::overlay(
        &mut out,
        &scaled,
        i64::from((w - nw) / 2),
        i64::from((h - nh) / 2),
    );
    out
}

fn open(path: &Path) -> Result<image::DynamicImage, SimCameraError> {
    image::open(path).map_err(|e| SimCameraError::Picture {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

fn load(path: &Path, w: u32, h: u32) -> Result<Arc<RgbImage>, SimCameraError> {
    Ok(Arc::new(letterbox(&open(path)?.to_rgb8(), w, h)))
}

/// The pictures of a directory by person: `<N>.jpg|jpeg|png`.
fn people_pictures(dir: &Path) -> Result<BTreeMap<u32, PathBuf>, SimCameraError> {
    Ok(SimCameraConfig::from_dir(dir, 1, 1)?.people)
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
        let mut sources = BTreeMap::new();
        for (n, p) in &cfg.people {
            let img = open(p)?.to_rgb8();
            sources.insert(*n, (p.clone(), img.dimensions()));
            people.insert(*n, Arc::new(letterbox(&img, w, h)));
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
            sources,
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

    /// The simulated IR camera beside this one: `<dir>/<N>.png|jpg|jpeg`
    /// is person N under IR. Every IR picture must belong to a person this
    /// camera has a picture of, with the same aspect ratio (within 1 %),
    /// so that the letterboxed frames are registered.
    pub fn ir_camera(&self, dir: &Path) -> Result<SimIrCamera, SimCameraError> {
        let mut pictures = BTreeMap::new();
        for (n, path) in people_pictures(dir)? {
            let ir = open(&path)?.to_luma8();
            let Some((rgb, rgb_size)) = self.sources.get(&n) else {
                return Err(SimCameraError::Config(format!(
                    "IR picture {} is for person {n}, who has no camera picture",
                    path.display()
                )));
            };
            let aspect = |(w, h): (u32, u32)| w as f32 / h.max(1) as f32;
            if (aspect(ir.dimensions()) / aspect(*rgb_size) - 1.0).abs() > 0.01 {
                return Err(SimCameraError::NotRegistered {
                    ir: path,
                    ir_size: ir.dimensions(),
                    rgb: rgb.clone(),
                    rgb_size: *rgb_size,
                });
            }
            pictures.insert(n, Arc::new(letterbox_luma(&ir, self.width, self.height)));
        }
        Ok(SimIrCamera {
            pictures,
            scene: self.scene.scene.subscribe(),
        })
    }
}

/// The simulated IR camera (see the module docs): what it "captures" is
/// the IR picture of whoever the RGB camera shows at that moment.
#[derive(Debug)]
pub struct SimIrCamera {
    pictures: BTreeMap<u32, Arc<GrayImage>>,
    scene: watch::Receiver<Scene>,
}

impl SimIrCamera {
    /// One IR frame of the current scene, registered to the RGB frame.
    pub fn grab(&self) -> Result<Arc<GrayImage>, SimCameraError> {
        match &*self.scene.borrow() {
            Scene::Person(n) => self.pictures.get(n).cloned().ok_or_else(|| {
                SimCameraError::NoIrFrame(format!(
                    "no IR picture for person {n}; add <sim_ir_dir>/{n}.png"
                ))
            }),
            Scene::Empty => Err(SimCameraError::NoIrFrame(
                "nobody is at the door, there is no IR picture of the empty scene".into(),
            )),
            Scene::Picture(_) => Err(SimCameraError::NoIrFrame(
                "the camera shows a picture with no IR counterpart".into(),
            )),
        }
    }

    /// The people with an IR picture.
    pub fn people(&self) -> impl Iterator<Item = u32> + '_ {
        self.pictures.keys().copied()
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

    #[tokio::test(start_paused = true)]
    async fn ir_camera_follows_the_scene_and_refuses_what_it_cannot_see() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rgb_dir, ir_dir) = (dir.path().join("rgb"), dir.path().join("ir"));
        std::fs::create_dir_all(&rgb_dir).expect("mkdir");
        std::fs::create_dir_all(&ir_dir).expect("mkdir");
        for n in [1, 2] {
            RgbImage::from_pixel(80, 40, Rgb([200, 10, 10]))
                .save(rgb_dir.join(format!("{n}.jpg")))
                .expect("save");
        }
        // Person 1's IR picture at half the resolution, same framing: a
        // bright left half and a dark right half.
        GrayImage::from_fn(40, 20, |x, _| Luma([if x < 20 { 200 } else { 10 }]))
            .save(ir_dir.join("1.png"))
            .expect("save");
        let cfg = SimCameraConfig::from_dir(&rgb_dir, 64, 48).expect("dir");
        let cam = SimCamera::start(&cfg, FrameRing::new()).expect("start");
        let ir = cam.ir_camera(&ir_dir).expect("ir");
        assert_eq!(ir.people().collect::<Vec<_>>(), vec![1]);
        assert!(matches!(ir.grab(), Err(SimCameraError::NoIrFrame(_))));
        cam.show_person(Some(1)).expect("person 1");
        let frame = ir.grab().expect("IR frame of person 1");
        // Letterboxed like the RGB picture: 64×32 centred, dark border.
        assert_eq!(frame.dimensions(), (64, 48));
        assert_eq!(frame.get_pixel(10, 24).0, [200]);
        assert_eq!(frame.get_pixel(54, 24).0, [10]);
        assert_eq!(frame.get_pixel(10, 4).0, [0]);
        cam.show_person(Some(2)).expect("person 2");
        let e = ir.grab().expect_err("person 2 has no IR picture");
        assert!(e.to_string().contains("2.png"), "{e}");
        cam.show_image(&RgbImage::new(64, 48));
        assert!(ir.grab().is_err());

        // A square IR picture for a 2:1 camera picture is not registered.
        GrayImage::new(40, 40)
            .save(ir_dir.join("2.png"))
            .expect("save");
        assert!(matches!(
            cam.ir_camera(&ir_dir),
            Err(SimCameraError::NotRegistered { .. })
        ));
        // An IR picture of someone the camera cannot show is a mistake.
        std::fs::remove_file(ir_dir.join("2.png")).expect("rm");
        GrayImage::new(40, 20)
            .save(ir_dir.join("7.png"))
            .expect("save");
        assert!(matches!(
            cam.ir_camera(&ir_dir),
            Err(SimCameraError::Config(_))
        ));
    }

    #[test]
    fn letterbox_keeps_aspect() {
        let img = RgbImage::from_pixel(100, 50, Rgb([0, 0, 0]));
        let out = letterbox(&img, 100, 100);
        assert_eq!(out.get_pixel(50, 10).0, [128, 128, 128]);
        assert_eq!(out.get_pixel(50, 50).0, [0, 0, 0]);
    }
}
