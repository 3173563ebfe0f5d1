//! MobileFaceNet embedder: 112×112 aligned crop → 128-d embedding.
//!
//! What the model file was found to be (by loading and running it): input
//! `input`, 1×3×112×112 f32, NCHW, **RGB**, `(x − 127.5) / 127.5`; one
//! output of 1×128 (not normalised). RGB order was checked against BGR on
//! the shared photos (`tests/it/face_accuracy.rs` prints both): RGB gives a
//! same-vs-different gap of 0.38, BGR 0.25, so RGB is what the model was
//! trained on. `/127.5` vs `/128` differ by 0.4 % in scale, which the L2
//! normalisation all but removes; it was not tested separately.

use std::path::Path;

use image::RgbImage;

use super::align::ALIGNED_SIZE;
use super::session::Session;
use super::template::{Embedding, EMBEDDING_DIM};
use super::FaceError;

/// The loaded embedder: its plan, optimised for 1×3×112×112, and the
/// scratch its runs reuse.
pub struct Embedder {
    session: Session,
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
        let shape = [1, 3, side, side];
        let plan = super::optimise(path, super::parse_model(path)?, shape)?;
        let model = plan.model();
        let n_out = model
            .output_outlets()
            .map_err(|e| FaceError::load(path, e))?
            .len();
        let out_shape = if n_out == 1 {
            model
                .output_fact(0)
                .map_err(|e| FaceError::load(path, e))?
                .shape
                .as_concrete()
                .map(<[usize]>::to_vec)
        } else {
            None
        };
        if n_out != 1 || out_shape.as_deref() != Some(&[1, EMBEDDING_DIM][..]) {
            return Err(FaceError::ModelShape {
                path: path.to_path_buf(),
                expected: format!("embedder: 1 output of [1, {EMBEDDING_DIM}]"),
                found: format!("{n_out} outputs, first {out_shape:?}"),
            });
        }
        Ok(Self {
            session: Session::new(plan, shape),
        })
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
        self.session.run(
            |input| write_normalised_rgb_planes(crop, input),
            |out| {
                let raw = out
                    .first()
                    .ok_or_else(|| FaceError::Inference {
                        detail: "embedder returned no output".into(),
                    })?
                    .try_as_plain_ram()
                    .and_then(|v| v.as_slice::<f32>())
                    .map_err(FaceError::inference)?;
                Embedding::from_raw(raw)
            },
        )
    }
}

/// Writes `crop` as NCHW RGB planes of `(x − 127.5) / 127.5`, straight
/// into the reused input tensor.
fn write_normalised_rgb_planes(crop: &RgbImage, input: &mut [f32]) {
    let plane = (crop.width() * crop.height()) as usize;
    let (r, rest) = input.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, p) in crop.as_raw().chunks_exact(3).enumerate() {
        r[i] = (f32::from(p[0]) - 127.5) / 127.5;
        g[i] = (f32::from(p[1]) - 127.5) / 127.5;
        b[i] = (f32::from(p[2]) - 127.5) / 127.5;
    }
}
