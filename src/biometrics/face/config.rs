//! The `[face]` table of latchd.toml: face unlock on the outdoor camera.
//!
//! ```toml
//! [face]
//! enabled = false                            # off by default
//! models_dir = "/usr/share/latchd/models"    # yunet_n_320_320.onnx + mobilefacenet.onnx
//! threshold = 0.35                           # cosine similarity to match
//! attempt_budget_ms = 3000                   # one recognition attempt (B-6.2)
//! enrol_timeout_s = 60                       # one enrolment (B-4.5)
//! liveness = "none"                          # "none" | "ir"
//! motion_trigger = true                      # frame motion starts an attempt
//! # sim_people_dir = "/path/to/people"       # sim board: <N>.jpg = person N, empty.jpg
//! ```
//!
//! Off by default so `cargo run` on a developer machine without the models
//! still starts: the face feature is only loaded when asked for, and even
//! then a missing model only turns face unlock off (the lock keeps working).
use std::path::PathBuf;

use serde::Deserialize;

use super::liveness::LivenessMode;
use super::DEFAULT_MATCH_THRESHOLD;

/// Face settings (the `[face]` table of latchd.toml).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaceConfig {
    /// Face recognition and enrolment on the camera. Off by default.
    pub enabled: bool,
    /// Directory holding `yunet_n_320_320.onnx` and `mobilefacenet.onnx`.
    pub models_dir: PathBuf,
    /// Cosine similarity a probe must reach to match a template.
    pub threshold: f32,
    /// How long one recognition attempt looks at frames, milliseconds.
    pub attempt_budget_ms: u64,
    /// How long an enrolment may take before it fails, seconds.
    pub enrol_timeout_s: u64,
    /// Liveness source. `none` (default): **a photo of an enrolled user
    /// may unlock.** `ir`: the IR-reflectance check, which needs a board
    /// that delivers IR frames; none does yet, so it is refused.
    pub liveness: LivenessMode,
    /// Start a recognition attempt when the camera sees motion (someone
    /// walking up), as well as on a keypad touch.
    pub motion_trigger: bool,
    /// Sim board only: `<N>.jpg|jpeg|png` is what the camera shows while
    /// simulated person N is at the door, `empty.*` the empty doorstep.
    pub sim_people_dir: Option<PathBuf>,
}

// `threshold` is an f32, but `validate` refuses NaN, so equality is
// reflexive for every configuration the daemon accepts.
impl Eq for FaceConfig {}

impl Default for FaceConfig {
    fn default() -> Self {
        FaceConfig {
            enabled: false,
            models_dir: PathBuf::from("/usr/share/latchd/models"),
            threshold: DEFAULT_MATCH_THRESHOLD,
            attempt_budget_ms: 3000,
            enrol_timeout_s: 60,
            liveness: LivenessMode::Off,
            motion_trigger: true,
            sim_people_dir: None,
        }
    }
}

/// A `[face]` value out of range: the key, the value, and what to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}` = {value}: {why}")]
pub struct FaceConfigError {
    pub key: &'static str,
    pub value: String,
    pub why: &'static str,
}

impl FaceConfig {
    /// Check every value's range; the first bad key is reported.
    pub fn validate(&self) -> Result<(), FaceConfigError> {
        let bad = |key, value: String, why| Err(FaceConfigError { key, value, why });
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return bad(
                "face.threshold",
                self.threshold.to_string(),
                "use a cosine similarity between 0 and 1, such as 0.35",
            );
        }
        if !(500..=30_000).contains(&self.attempt_budget_ms) {
            return bad(
                "face.attempt_budget_ms",
                self.attempt_budget_ms.to_string(),
                "must be between 500 and 30000 milliseconds",
            );
        }
        if !(10..=600).contains(&self.enrol_timeout_s) {
            return bad(
                "face.enrol_timeout_s",
                self.enrol_timeout_s.to_string(),
                "must be between 10 and 600 seconds",
            );
        }
        if self.enabled && self.liveness == LivenessMode::Ir {
            // Failing closed: accepting "ir" with no IR frames would either
            // refuse every face or silently skip the check.
            return bad(
                "face.liveness",
                "\"ir\"".into(),
                "no board in this build delivers IR frames yet; use \"none\" (a photo may pass)",
            );
        }
        if self
            .models_dir
            .as_os_str()
            .to_str()
            .is_some_and(|s| s.trim().is_empty())
        {
            return bad(
                "face.models_dir",
                "\"\"".into(),
                "name the directory holding the ONNX models",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_valid() {
        let c: FaceConfig = toml::from_str("").expect("empty table");
        assert_eq!(c, FaceConfig::default());
        assert!(!c.enabled);
        assert_eq!(c.liveness, LivenessMode::Off);
        assert_eq!(c.threshold, DEFAULT_MATCH_THRESHOLD);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn unknown_key_is_refused() {
        assert!(toml::from_str::<FaceConfig>("tresh = 0.2").is_err());
    }

    #[test]
    fn liveness_names() {
        let c: FaceConfig = toml::from_str("liveness = \"none\"").expect("none");
        assert_eq!(c.liveness, LivenessMode::Off);
        let c: FaceConfig = toml::from_str("liveness = \"ir\"").expect("ir");
        assert_eq!(c.liveness, LivenessMode::Ir);
        assert!(toml::from_str::<FaceConfig>("liveness = \"depth\"").is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: [(&str, &str); 5] = [
            ("threshold = 1.5", "face.threshold"),
            ("threshold = nan", "face.threshold"),
            ("attempt_budget_ms = 10", "face.attempt_budget_ms"),
            ("enrol_timeout_s = 0", "face.enrol_timeout_s"),
            ("enabled = true\nliveness = \"ir\"", "face.liveness"),
        ];
        for (text, key) in cases {
            let c: FaceConfig = toml::from_str(text).expect(text);
            assert_eq!(c.validate().map_err(|e| e.key), Err(key), "{text}");
        }
    }
}
