//! Face recognition: camera frame → YuNet detector → 5-landmark alignment →
//! MobileFaceNet embedder → cosine match against enrolled templates, all on
//! the CPU with tract (pure-Rust ONNX), compiled with the `face` feature.
//!
//! ```text
//!  RgbImage (any size, e.g. 320×240 from V4L2)
//!     │ letterbox to 320×320, BGR 0–255                  detect.rs
//!     ▼
//!  YuNet ── decode strides 8/16/32 ── NMS ──▶ box, score, 5 landmarks
//!     │ Umeyama similarity → ArcFace 112×112 template     align.rs
//!     ▼
//!  aligned crop ──▶ MobileFaceNet, RGB (x−127.5)/127.5    embed.rs
//!     │ L2-normalise
//!     ▼
//!  Embedding (128 f32) ── max cosine over each template's pose
//!     │                     embeddings ≥ threshold ──▶ match
//!     ├──▶ quality.rs: yaw/pitch from landmarks, sharpness, size,
//!     │                occlusion (feature-band contrast)
//!     └──▶ enrol.rs: 5-pose enrolment state machine → FaceTemplate
//!  liveness.rs: optional IR-frame check on the matched face (off by default)
//! ```
//!
//! The API is synchronous and CPU-bound: the daemon calls it from
//! `tokio::task::spawn_blocking`. Model load failures are typed
//! ([`FaceError::ModelMissing`], [`FaceError::ModelShape`]) so the lock can
//! start without face unlock and say why.
//!
//! # Threshold
//!
//! [`DEFAULT_MATCH_THRESHOLD`] comes from `tests/it/face_accuracy.rs` on the
//! shared photos (5 people, 11 photos, 55 pairs): same-person pairs scored
//! 0.52–0.76, different-person pairs −0.19–0.14 (that test prints the
//! table). 0.35 sits in the gap: 0.174 below the worst same-person pair and
//! 0.209 above the worst different-person pair. Five people is a smoke
//! test, not a false-accept-rate measurement: a product must re-tune this
//! on a real evaluation set (e.g. LFW pairs) for its target false-accept
//! rate.
//!
//! # Privacy (B-11.1)
//!
//! Only [`FaceTemplate`]s leave this module: 128-d embeddings, no pixels. A
//! template cannot be turned back into an image of the face.

mod align;
pub mod config;
mod conv3x3s2;
mod depthwise;
mod detect;
mod embed;
mod enrol;
mod liveness;
mod planes;
mod pointwise;
mod pool;
mod quality;
mod resize;
mod rewrite;
mod scratch;
mod session;
mod still;
mod template;
#[cfg(test)]
mod test_graphs;
pub mod worker;

use std::path::{Path, PathBuf};

use image::RgbImage;
use pulp::{Arch, Simd, WithSimd};
use tract_onnx::prelude::*;

pub use align::{align_face, Point, Similarity, ALIGNED_SIZE, ARCFACE_TEMPLATE};
pub use config::{FaceConfig, FaceConfigError, FaceDecision, FaceSwitch};
pub use detect::{nms, Detection, Detector, FaceBox, Placement, DETECTOR_INPUT, MAX_FACES};
pub use embed::Embedder;
pub use enrol::{EnrolConfig, EnrolStep, FaceEnrolment, Fix, Pose, PoseLimits, ENROL_POSES};
pub use liveness::{
    register_box, IrLiveness, LivenessCheck, LivenessFrame, LivenessMode, LivenessVerdict,
    SpoofReason,
};
pub use quality::{
    estimate_pose, face_fraction, region_contrast, sharpness, synthetic_landmarks, HeadPose,
};
pub use resize::{resize_triangle, Resizer};
pub use still::{grey_thumbnail, SceneMemo, STILL_DELTA, STILL_GRID};
pub use template::{
    Embedding, FaceTemplate, EMBEDDING_DIM, MAX_TEMPLATE_EMBEDDINGS, TEMPLATE_VERSION,
};

/// File name of the detector inside the models directory.
pub const DETECTOR_FILE: &str = "yunet_n_320_320.onnx";
/// File name of the embedder inside the models directory.
pub const EMBEDDER_FILE: &str = "mobilefacenet.onnx";
/// Default cosine-similarity threshold (see the module docs for the data).
pub const DEFAULT_MATCH_THRESHOLD: f32 = 0.35;

/// Everything that can go wrong in the face pipeline.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    #[error("face model {path} not found; install it or set `[face] models_dir` (face unlock stays off)")]
    ModelMissing { path: PathBuf },
    #[error("face model {path} has the wrong layout: expected {expected}, found {found}; is it the right file?")]
    ModelShape {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("face model {path} could not be loaded: {detail}")]
    ModelLoad { path: PathBuf, detail: String },
    #[error("face model inference failed: {detail}")]
    Inference { detail: String },
    #[error("match threshold {0} is outside (0, 1); use a cosine similarity such as {DEFAULT_MATCH_THRESHOLD}")]
    BadThreshold(f32),
    #[error("bad face embedding: {reason}")]
    BadEmbedding { reason: String },
    #[error(
        "face template is malformed: {reason}; it was not written by this build or is corrupt"
    )]
    TemplateFormat { reason: String },
}

impl FaceError {
    fn load(path: &Path, e: TractError) -> Self {
        FaceError::ModelLoad {
            path: path.to_path_buf(),
            detail: format!("{e:#}"),
        }
    }

    fn inference(e: TractError) -> Self {
        FaceError::Inference {
            detail: format!("{e:#}"),
        }
    }
}

/// Parses an ONNX file with one input (shape not fixed yet).
fn parse_model(path: &Path) -> Result<InferenceModel, FaceError> {
    if !path.is_file() {
        return Err(FaceError::ModelMissing {
            path: path.to_path_buf(),
        });
    }
    // The file's shape hints (`value_info`, output shapes) were written
    // for the size it was exported at (YuNet's say 320×320 all through):
    // dropped, so the shapes come from the input given in `optimise`.
    let model = onnx()
        .with_ignore_value_info(true)
        .with_ignore_output_shapes(true)
        .model_for_path(path)
        .map_err(|e| FaceError::load(path, e))?;
    let n_inputs = model
        .input_outlets()
        .map_err(|e| FaceError::load(path, e))?
        .len();
    if n_inputs != 1 {
        return Err(FaceError::ModelShape {
            path: path.to_path_buf(),
            expected: "one input".into(),
            found: format!("{n_inputs} inputs"),
        });
    }
    Ok(model)
}

/// Fixes the input to f32 `input` and optimises for that concrete shape:
/// every fact in the plan is then known, so a run resolves no symbol and
/// tract picks its kernels once, here. Before tract's optimiser runs,
/// 2×2 stride-2 max pools, the first 3×3 stride-2 convolution and 3×3
/// depthwise convolutions (with the clamp after them) become our ops
/// (`pool.rs`, `conv3x3s2.rs`, `depthwise.rs`: tract walks them scalar, in
/// SSE2 or through im2col; the values are tract's, or within rounding).
fn optimise(
    path: &Path,
    model: InferenceModel,
    input: [usize; 4],
) -> Result<Arc<TypedRunnableModel>, FaceError> {
    // A model whose graph cannot take this input shape fails here: that is
    // a layout error (wrong model), not an IO error.
    model
        .with_input_fact(0, f32::fact(input).into())
        .and_then(|m| m.into_typed())
        .and_then(|m| m.into_decluttered())
        .and_then(|mut m| {
            if vector_unit() {
                replace_with_ours(path, &mut m)?;
            } else {
                tracing::info!(
                    model = %path.display(),
                    "no AVX2 or NEON: tract runs the whole model (its SSE kernels beat our \
                     loops at one lane)"
                );
            }
            m.into_optimized()
        })
        .and_then(|m| m.into_runnable())
        .map_err(|e| FaceError::ModelShape {
            path: path.to_path_buf(),
            expected: format!("a graph taking f32 {input:?}"),
            found: format!("{e:#}"),
        })
}

/// Whether `pulp` finds a vector unit for our ops' loops (AVX2 with FMA or
/// AVX-512 on x86-64, NEON on aarch64). Without one they would run one lane
/// at a time, slower than tract's SSE kernels on the same CPU (x86-64
/// before AVX2; also QEMU's TCG as the VM tests configure it).
fn vector_unit() -> bool {
    struct Lanes;
    impl WithSimd for Lanes {
        type Output = usize;

        #[inline(always)]
        fn with_simd<S: Simd>(self, _simd: S) -> usize {
            S::F32_LANES
        }
    }
    Arch::new().dispatch(Lanes) > 1
}

/// Hands the layers our ops compute to them (`pool.rs`, `conv3x3s2.rs`,
/// `depthwise.rs`, `pointwise.rs`), folding the bias and clamps after them
/// in (`rewrite.rs`).
fn replace_with_ours(path: &Path, m: &mut TypedModel) -> TractResult<()> {
    let pools = pool::replace_max_pools(m)?;
    let first = conv3x3s2::replace_first_convs(m)?;
    let depthwise = depthwise::replace_depthwise(m)?;
    let pointwise = pointwise::replace_pointwise(m)?;
    let clamps = rewrite::fuse_clamps::<conv3x3s2::Conv3x3S2>(m)?
        + rewrite::fuse_clamps::<depthwise::Depthwise3x3>(m)?
        + rewrite::fuse_clamps::<pointwise::Pointwise>(m)?;
    let residuals = pointwise::fuse_residuals(m)?;
    tracing::debug!(
        model = %path.display(),
        pools,
        first,
        depthwise,
        pointwise,
        clamps,
        residuals,
        "ops run by latchd's own code"
    );
    Ok(())
}

/// Deterministic pseudo-random words for this module's tests: the
/// successive states of xorshift32 from `state` (which must not be 0).
#[cfg(test)]
fn xorshift(mut state: u32) -> impl Iterator<Item = u32> {
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    })
}

/// One face seen in a frame, with everything recognition and enrolment need.
#[derive(Debug, Clone)]
pub struct FaceObservation {
    /// Box in frame pixels.
    pub bbox: FaceBox,
    /// Detector confidence in [0, 1]; low on covered faces.
    pub score: f32,
    /// Landmarks in frame pixels (see `detect` for the order).
    pub landmarks: [Point; 5],
    /// Width and height of the frame the face was seen in.
    pub frame_size: (u32, u32),
    /// Head pose from the landmarks.
    pub pose: HeadPose,
    /// Variance of the Laplacian of the aligned crop.
    pub sharpness: f32,
    /// Occlusion heuristic: lowest feature-band contrast of the aligned
    /// crop (see [`region_contrast`]).
    pub region_contrast: f32,
    /// L2-normalised embedding of the aligned crop.
    pub embedding: Embedding,
}

impl FaceObservation {
    /// Face size relative to the frame (see [`face_fraction`]).
    pub fn face_fraction(&self) -> f32 {
        face_fraction(&self.bbox, self.frame_size)
    }
}

/// The loaded pipeline.
#[derive(Debug)]
pub struct FaceRecognizer {
    detector: Detector,
    embedder: Embedder,
    threshold: f32,
}

impl FaceRecognizer {
    /// Loads both models from `models_dir` ([`DETECTOR_FILE`],
    /// [`EMBEDDER_FILE`]) with the match `threshold`.
    pub fn load(models_dir: &Path, threshold: f32) -> Result<Self, FaceError> {
        Self::load_paths(
            &models_dir.join(DETECTOR_FILE),
            &models_dir.join(EMBEDDER_FILE),
            threshold,
        )
    }

    /// Loads the models from explicit paths.
    pub fn load_paths(detector: &Path, embedder: &Path, threshold: f32) -> Result<Self, FaceError> {
        if !(threshold > 0.0 && threshold < 1.0) {
            return Err(FaceError::BadThreshold(threshold));
        }
        // One after the other on purpose: loading them on two threads made
        // face unlock ready ≈ 45 ms sooner once per boot, but the idle
        // daemon then held ≈ 4 MiB more for good (46.4 → 50.2 MiB median,
        // mostly anonymous memory the load freed and the allocator kept),
        // and start-up meets its goal without it (benches/startup.rs,
        // issue 19).
        Ok(Self {
            detector: Detector::load(detector)?,
            embedder: Embedder::load(embedder)?,
            threshold,
        })
    }

    /// The match threshold in use.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Detects, aligns and embeds every face in `frame` (best detector
    /// score first, at most [`MAX_FACES`]). Faces whose landmarks are
    /// degenerate are left out: they cannot be aligned or posed.
    pub fn observe(&self, frame: &RgbImage) -> Result<Vec<FaceObservation>, FaceError> {
        let dets = self.detector.detect(frame)?;
        self.observe_detections(frame, dets)
    }

    /// [`FaceRecognizer::observe`] for a stream of frames: when nothing
    /// moved since the frame the detector last ran on (`memo`), its faces
    /// are reused and only aligned and embedded on this frame (see
    /// `still.rs`).
    pub fn observe_still(
        &self,
        frame: &RgbImage,
        memo: &mut SceneMemo,
    ) -> Result<Vec<FaceObservation>, FaceError> {
        let dets = match memo.recall(frame) {
            (Some(dets), _) => dets,
            (None, thumb) => {
                let dets = self.detector.detect(frame)?;
                memo.remember(frame.dimensions(), thumb, &dets);
                dets
            }
        };
        self.observe_detections(frame, dets)
    }

    /// Aligns and embeds the faces `dets` found in `frame`.
    fn observe_detections(
        &self,
        frame: &RgbImage,
        dets: Vec<Detection>,
    ) -> Result<Vec<FaceObservation>, FaceError> {
        let mut out = Vec::new();
        for det in dets {
            let (Some(crop), Some(pose)) = (
                align_face(frame, &det.landmarks),
                estimate_pose(&det.landmarks),
            ) else {
                continue;
            };
            out.push(FaceObservation {
                bbox: det.bbox,
                score: det.score,
                landmarks: det.landmarks,
                frame_size: frame.dimensions(),
                pose,
                sharpness: sharpness(&crop),
                region_contrast: region_contrast(&crop),
                embedding: self.embedder.embed(&crop)?,
            });
        }
        Ok(out)
    }

    /// The detector alone (for callers that only need boxes).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The embedder alone.
    pub fn embedder(&self) -> &Embedder {
        &self.embedder
    }

    /// The best-scoring template at or above the threshold, with its score.
    /// Ties go to the earlier template.
    pub fn match_templates<Id: Clone>(
        &self,
        probe: &Embedding,
        templates: &[(Id, FaceTemplate)],
    ) -> Option<(Id, f32)> {
        let mut best: Option<(&Id, f32)> = None;
        for (id, t) in templates {
            let s = t.score(probe);
            if s >= self.threshold && best.is_none_or(|(_, b)| s > b) {
                best = Some((id, s));
            }
        }
        best.map(|(id, s)| (id.clone(), s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizer_is_send_and_sync() {
        // The daemon moves it into spawn_blocking and shares it in an Arc.
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<FaceRecognizer>();
    }

    #[test]
    fn missing_model_is_a_typed_error() {
        let err = FaceRecognizer::load(Path::new("/nonexistent/models"), DEFAULT_MATCH_THRESHOLD)
            .expect_err("no models there");
        assert!(
            matches!(err, FaceError::ModelMissing { ref path } if path.ends_with(DETECTOR_FILE)),
            "{err}"
        );
    }

    /// The shared models (`LATCHD_SHARED`, else `../shared`, as the
    /// integration tests find them).
    fn shared_model(file: &str) -> PathBuf {
        std::env::var_os("LATCHD_SHARED")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
            .join("models")
            .join(file)
    }

    /// The plan latchd runs for a shared model file, at the input size it
    /// runs it.
    fn planned(file: &str) -> Arc<TypedRunnableModel> {
        let path = shared_model(file);
        optimise(&path, parse_model(&path).expect("parsed"), input_of(file)).expect("planned")
    }

    fn input_of(file: &str) -> [usize; 4] {
        let side = if file == DETECTOR_FILE {
            DETECTOR_INPUT
        } else {
            ALIGNED_SIZE
        };
        [1, 3, side as usize, side as usize]
    }

    /// How many of the plan's nodes run our op `T`.
    fn own<T: TypedOp>(plan: &TypedRunnableModel) -> usize {
        plan.model()
            .nodes()
            .iter()
            .filter(|n| n.op_is::<T>())
            .count()
    }

    #[test]
    fn our_ops_run_where_pulp_has_a_vector_unit() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            vector_unit(),
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        );
        #[cfg(target_arch = "aarch64")]
        assert!(vector_unit());
    }

    #[test]
    fn the_models_layers_run_our_ops() {
        // If a later tract represented these layers differently, a swap
        // would stop silently (the values would not change, only the
        // time, issue 19): this says so. Pointwise: every 1×1 layer but
        // YuNet's twelve NHWC heads (4 or 10 channels, or one per pixel)
        // and the embedder's last (one pixel). Residuals: every `Add` of the
        // embedder's bottleneck blocks.
        if !vector_unit() {
            return;
        }
        let detector = planned(DETECTOR_FILE);
        let embedder = planned(EMBEDDER_FILE);
        let counts = |plan: &TypedRunnableModel| {
            (
                own::<pool::MaxPool2x2S2>(plan),
                own::<conv3x3s2::Conv3x3S2>(plan),
                own::<depthwise::Depthwise3x3>(plan),
                own::<pointwise::Pointwise>(plan),
                // Those adding a residual (a second input).
                plan.model()
                    .nodes()
                    .iter()
                    .filter(|n| n.op_is::<pointwise::Pointwise>() && n.inputs.len() == 2)
                    .count(),
            )
        };
        assert_eq!(counts(&detector), (4, 1, 17, 17, 0), "detector");
        assert_eq!(counts(&embedder), (0, 1, 16, 32, 12), "embedder");
    }

    #[test]
    fn our_plans_give_tracts_outputs_on_the_real_models() {
        // The same input through latchd's plan (after another run) and
        // through tract's own (no op of ours): the depthwise, pointwise and
        // pooling ops give
        // tract's values exactly; the first convolution rounds once per
        // multiply-add where tract may round twice. Pixel-like inputs.
        for (file, scale, offset) in [(DETECTOR_FILE, 255.0, 0.0), (EMBEDDER_FILE, 2.0, -1.0)] {
            let shape = input_of(file);
            let len = shape.iter().product();
            let values: Vec<f32> = xorshift(0x1234_5679)
                .take(len)
                .map(|x| (x % 256) as f32 / 255.0 * scale + offset)
                .collect();
            let input: TValue = tract_ndarray::Array::from_shape_vec(shape.to_vec(), values)
                .expect("shaped")
                .into_tensor()
                .into();
            let path = shared_model(file);
            let theirs = parse_model(&path)
                .and_then(|m| {
                    m.with_input_fact(0, f32::fact(shape).into())
                        .and_then(|m| m.into_optimized())
                        .and_then(|m| m.into_runnable())
                        .map_err(FaceError::inference)
                })
                .expect("tract's plan");
            // One state, an unrelated frame first: what our ops keep from a
            // run (`scratch.rs`) must not show in the next.
            let plan = planned(file);
            let mut state = plan.spawn().expect("a state");
            let other: TValue = Tensor::zero::<f32>(&shape).expect("zeros").into();
            state.run(tvec!(other)).expect("a first run");
            let ours = state.run(tvec!(input.clone())).expect("our run");
            let theirs = theirs.run(tvec!(input)).expect("tract's run");
            assert_eq!(ours.len(), theirs.len(), "{file}");
            for (n, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                let a = a.try_as_plain_ram().expect("plain");
                let b = b.try_as_plain_ram().expect("plain");
                let (a, b) = (
                    a.as_slice::<f32>().expect("f32"),
                    b.as_slice::<f32>().expect("f32"),
                );
                let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
                let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    worst <= 1e-4 * scale,
                    "{file} output {n}: off by {worst} of a largest value {scale}"
                );
            }
        }
    }

    #[test]
    fn bad_threshold_is_refused() {
        for t in [0.0, 1.0, -0.2, f32::NAN] {
            assert!(matches!(
                FaceRecognizer::load(Path::new("/nonexistent"), t),
                Err(FaceError::BadThreshold(_))
            ));
        }
    }
}
