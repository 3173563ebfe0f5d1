//! MobileFaceNet embedder: 112×112 aligned crop → 128-d embedding.
//!
//! What the model file was found to be (by loading and running it): input
//! `input`, 1×3×112×112 f32, NCHW, **RGB**, `(x − 127.5) / 127.5`; one
//! output of 1×128 (not normalised). RGB order was checked against BGR on
//! the shared photos (`tests/face_accuracy.rs` prints both): RGB gives a
//! same-vs-different gap of 0.38, BGR 0.25, so RGB is what the model was
//! trained on. `/127.5` vs `/128` differ by 0.4 % in scale, which the L2
//! normalisation all but removes; it was not tested separately.

use std::path::Path;

use image::RgbImage;
use tract_onnx::prelude::*;

use super::align::ALIGNED_SIZE;
use super::template::{Embedding, EMBEDDING_DIM};
use super::FaceError;

type Plan = Arc<TypedRunnableModel>;

/// The loaded embedder.
pub struct Embedder {
    plan: Plan,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads and checks the MobileFaceNet model.
    pub fn load(path: &Path) -> Result<Self, FaceError> {
        let side = ALIGNED_SIZE as usize;
        let plan = super::load_plan(path, [1, 3, side, side])?;
        let model = plan.model();
        let n_out = model
            .output_outlets()
            .map_err(|e| FaceError::load(path, e))?
            .len();
        let shape = if n_out == 1 {
            model
                .output_fact(0)
                .map_err(|e| FaceError::load(path, e))?
                .shape
                .as_concrete()
                .map(<[usize]>::to_vec)
        } else {
            None
        };
        if n_out != 1 || shape.as_deref() != Some(&[1, EMBEDDING_DIM][..]) {
            return Err(FaceError::ModelShape {
                path: path.to_path_buf(),
                expected: format!("embedder: 1 output of [1, {EMBEDDING_DIM}]"),
                found: format!("{n_out} outputs, first {shape:?}"),
            });
        }
        Ok(Self { plan })
    }

    /// Embeds an aligned 112×112 crop.
    pub fn embed(&self, crop: &RgbImage) -> Result<Embedding, FaceError> {
        if crop.dimensions() != (ALIGNED_SIZE, ALIGNED_SIZE) {
            return Err(FaceError::Inference {
                detail: format!(
                    "embedder input is {:?}, expected {ALIGNED_SIZE}×{ALIGNED_SIZE}",
                    crop.dimensions()
                ),
            });
        }
        let plane = (ALIGNED_SIZE * ALIGNED_SIZE) as usize;
        let mut data = vec![0.0f32; 3 * plane];
        for (x, y, p) in crop.enumerate_pixels() {
            let i = (y * ALIGNED_SIZE + x) as usize;
            for c in 0..3 {
                data[c * plane + i] = (f32::from(p.0[c]) - 127.5) / 127.5;
            }
        }
        let side = ALIGNED_SIZE as usize;
        let input = Tensor::from_shape(&[1, 3, side, side], &data).map_err(FaceError::inference)?;
        let out = self
            .plan
            .run(tvec!(input.into_tvalue()))
            .map_err(FaceError::inference)?;
        let raw = out
            .first()
            .ok_or_else(|| FaceError::Inference {
                detail: "embedder returned no output".into(),
            })?
            .try_as_plain_ram()
            .and_then(|v| v.as_slice::<f32>())
            .map_err(FaceError::inference)?;
        Embedding::from_raw(raw)
    }
}
