//! Embeddings and enrolled face templates, and the template byte format.
//!
//! A template holds only L2-normalised 128-d embeddings: the output of the
//! embedder's last layer. It holds no pixels, no crop and no landmarks, and
//! the embedder is a many-to-one function, so a template cannot be turned
//! back into an image of the face (B-11.1). It is still biometric data: the
//! store seals it with the device key (B-11.2), and the in-memory copy is
//! zeroed when dropped.
//!
//! Byte format, version 1 (all numbers little-endian):
//!
//! ```text
//! [version u8 = 1][n u8, 1..=8][n × 128 × f32]
//! ```
//!
//! Decoding refuses any other version, a wrong length, a non-finite value or
//! an embedding whose norm is not 1 (± 1e-3): a corrupt or forged template
//! is an error, never a template that matches everything.

use zeroize::Zeroize;

use super::FaceError;

/// Number of values in one embedding (MobileFaceNet's output).
pub const EMBEDDING_DIM: usize = 128;

/// Current template byte-format version.
pub const TEMPLATE_VERSION: u8 = 1;

/// Most embeddings one template may hold (the enrolment stores 5).
pub const MAX_TEMPLATE_EMBEDDINGS: usize = 8;

/// How far from 1 a decoded embedding's norm may be (f32 rounding only).
const NORM_TOLERANCE: f32 = 1e-3;

/// An L2-normalised face embedding. Built only through [`Embedding::from_raw`],
/// so every value of this type has unit norm and cosine similarity is a dot
/// product.
#[derive(Clone, PartialEq)]
pub struct Embedding([f32; EMBEDDING_DIM]);

impl std::fmt::Debug for Embedding {
    // Biometric data stays out of logs: print only that it exists.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedding(<128 values>)")
    }
}

impl Embedding {
    /// Normalises a raw embedder output. Fails on a wrong length, a
    /// non-finite value or an all-zero vector (which has no direction).
    pub fn from_raw(raw: &[f32]) -> Result<Self, FaceError> {
        if raw.len() != EMBEDDING_DIM {
            return Err(FaceError::BadEmbedding {
                reason: format!("{} values, expected {EMBEDDING_DIM}", raw.len()),
            });
        }
        if raw.iter().any(|v| !v.is_finite()) {
            return Err(FaceError::BadEmbedding {
                reason: "non-finite value".into(),
            });
        }
        let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm < 1e-6 {
            return Err(FaceError::BadEmbedding {
                reason: "all-zero vector".into(),
            });
        }
        let mut out = [0.0f32; EMBEDDING_DIM];
        for (o, v) in out.iter_mut().zip(raw) {
            *o = v / norm;
        }
        Ok(Self(out))
    }

    /// Cosine similarity, in [-1, 1].
    pub fn cosine(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(other.0.iter()).map(|(a, b)| a * b).sum()
    }

    /// The normalised values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

impl Drop for Embedding {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// An enrolled face: one embedding per enrolment pose (front, up, down,
/// left, right). Matching scores a probe against every embedding and keeps
/// the best, so a face seen slightly from the side at the door still meets
/// the embedding taken in that pose.
#[derive(Clone, PartialEq)]
pub struct FaceTemplate {
    embeddings: Vec<Embedding>,
}

impl std::fmt::Debug for FaceTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaceTemplate({} embeddings)", self.embeddings.len())
    }
}

impl FaceTemplate {
    /// A template from 1..=[`MAX_TEMPLATE_EMBEDDINGS`] embeddings.
    pub fn new(embeddings: Vec<Embedding>) -> Result<Self, FaceError> {
        if embeddings.is_empty() || embeddings.len() > MAX_TEMPLATE_EMBEDDINGS {
            return Err(FaceError::TemplateFormat {
                reason: format!(
                    "{} embeddings, a template holds 1 to {MAX_TEMPLATE_EMBEDDINGS}",
                    embeddings.len()
                ),
            });
        }
        Ok(Self { embeddings })
    }

    /// The embeddings, in enrolment order (front first).
    pub fn embeddings(&self) -> &[Embedding] {
        &self.embeddings
    }

    /// Best cosine similarity of `probe` against this template's embeddings.
    pub fn score(&self, probe: &Embedding) -> f32 {
        self.embeddings
            .iter()
            .map(|e| e.cosine(probe))
            .fold(f32::NEG_INFINITY, f32::max)
    }

    /// Serialises to the versioned byte format (see the module docs). The
    /// caller seals these bytes before they reach storage.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.embeddings.len() * EMBEDDING_DIM * 4);
        out.push(TEMPLATE_VERSION);
        // `new` and `from_bytes` bound the count to MAX_TEMPLATE_EMBEDDINGS (8).
        out.push(self.embeddings.len() as u8);
        for e in &self.embeddings {
            for v in e.as_slice() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Parses the byte format, refusing anything malformed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FaceError> {
        let bad = |reason: String| FaceError::TemplateFormat { reason };
        let (&version, rest) = bytes
            .split_first()
            .ok_or_else(|| bad("empty template".into()))?;
        if version != TEMPLATE_VERSION {
            return Err(bad(format!(
                "version {version}, this build reads version {TEMPLATE_VERSION}"
            )));
        }
        let (&n, body) = rest
            .split_first()
            .ok_or_else(|| bad("no embedding count".into()))?;
        let n = usize::from(n);
        if n == 0 || n > MAX_TEMPLATE_EMBEDDINGS {
            return Err(bad(format!(
                "{n} embeddings, a template holds 1 to {MAX_TEMPLATE_EMBEDDINGS}"
            )));
        }
        let want = n * EMBEDDING_DIM * 4;
        if body.len() != want {
            return Err(bad(format!(
                "{} bytes of embeddings, expected {want}",
                body.len()
            )));
        }
        let mut embeddings = Vec::with_capacity(n);
        for chunk in body.chunks_exact(EMBEDDING_DIM * 4) {
            let mut values = [0.0f32; EMBEDDING_DIM];
            for (v, b) in values.iter_mut().zip(chunk.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(bad("non-finite value in an embedding".into()));
            }
            let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
            if (norm - 1.0).abs() > NORM_TOLERANCE {
                return Err(bad(format!("embedding norm {norm}, expected 1")));
            }
            embeddings.push(Embedding(values));
            values.zeroize();
        }
        Ok(Self { embeddings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emb(seed: u32) -> Embedding {
        // A deterministic pseudo-random vector (xorshift), not a real face.
        let raw: Vec<f32> = super::super::xorshift(seed.wrapping_mul(2_654_435_761).max(1))
            .take(EMBEDDING_DIM)
            .map(|s| (s % 2000) as f32 / 1000.0 - 1.0)
            .collect();
        Embedding::from_raw(&raw).expect("non-zero vector")
    }

    #[test]
    fn embedding_is_normalised_and_rejects_bad_input() {
        let e = emb(7);
        assert!((e.cosine(&e) - 1.0).abs() < 1e-5);
        assert!(Embedding::from_raw(&[0.0; EMBEDDING_DIM]).is_err());
        assert!(Embedding::from_raw(&[1.0; 3]).is_err());
        let mut nan = [1.0f32; EMBEDDING_DIM];
        nan[5] = f32::NAN;
        assert!(Embedding::from_raw(&nan).is_err());
    }

    #[test]
    fn template_round_trips_through_bytes() {
        let t = FaceTemplate::new((1..=5).map(emb).collect()).expect("5 embeddings");
        let bytes = t.to_bytes();
        assert_eq!(bytes.len(), 2 + 5 * EMBEDDING_DIM * 4);
        assert_eq!(bytes[0], TEMPLATE_VERSION);
        assert_eq!(bytes[1], 5);
        let back = FaceTemplate::from_bytes(&bytes).expect("valid bytes");
        assert_eq!(back, t);
        assert!((back.score(&emb(3)) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn malformed_template_bytes_are_refused() {
        let good = FaceTemplate::new(vec![emb(1)]).expect("one").to_bytes();
        assert!(FaceTemplate::from_bytes(&[]).is_err());
        let mut v2 = good.clone();
        v2[0] = 2;
        assert!(FaceTemplate::from_bytes(&v2).is_err());
        assert!(FaceTemplate::from_bytes(&good[..good.len() - 1]).is_err());
        let mut zero_n = good.clone();
        zero_n[1] = 0;
        assert!(FaceTemplate::from_bytes(&zero_n).is_err());
        // A scaled embedding (norm 2) is not a template this code wrote.
        let mut scaled = good.clone();
        for c in scaled[2..].chunks_exact_mut(4) {
            let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * 2.0;
            c.copy_from_slice(&v.to_le_bytes());
        }
        assert!(FaceTemplate::from_bytes(&scaled).is_err());
        assert!(FaceTemplate::new(vec![]).is_err());
    }
}
