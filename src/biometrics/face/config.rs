//! The `[face]` table of latchd.toml: face unlock on the outdoor camera.
//!
//! ```toml
//! [face]
//! enabled = "auto"                           # on where the board can check liveness (default); true | false
//! models_dir = "/usr/share/latchd/models"    # yunet_n_320_320.onnx + mobilefacenet.onnx
//! threshold = 0.35                           # cosine similarity to match
//! attempt_budget_ms = 3000                   # one recognition attempt (B-6.2)
//! enrol_timeout_s = 60                       # one enrolment (B-4.5)
//! liveness = "ir"                            # "ir" (needs an IR source below) | "none"
//! # allow_without_liveness = false           # "none" needs this, knowingly: a photo may pass
//! motion_trigger = true                      # frame motion starts an attempt
//! # ir_camera = "/dev/video2"                # Linux board: the V4L2 IR camera (GREY or YUYV)
//! # sim_people_dir = "/path/to/people"       # sim board: <N>.jpg = person N, empty.jpg
//! # sim_ir_dir = "/path/to/ir"               # sim board: <N>.png|jpg = person N under IR
//! ```
//!
//! `enabled = "auto"` (the default, issue 17 item 6) turns face unlock on
//! wherever the board can run it safely: every board has the front
//! panel's camera, so what decides is the liveness check — on when the
//! board has its IR source (`ir_camera`, `sim_ir_dir`), or when the table
//! knowingly runs without one; otherwise off, and the start-up log says
//! why ([`FaceConfig::resolve`]). A lock never refuses to start over a
//! feature it was not asked for, so `cargo run` on a developer machine
//! (sim board, no IR pictures) starts with face off, as before; a missing
//! model also only turns face unlock off (the lock keeps working).
//! `enabled = true` insists: missing prerequisites are start-up errors.
//!
//! Liveness fails closed at every step: face unlock never runs without a
//! liveness check unless the table says so twice (`liveness = "none"` and
//! `allow_without_liveness = true`, issue 13: a printed photo of an
//! enrolled person would open the door), and the daemon then logs a
//! warning at every start; `liveness = "ir"` without an IR source for the
//! board is refused at start-up ([`FaceConfig::validate`] for the table,
//! [`FaceConfig::check_board`] for the board), an IR source with
//! `liveness = "none"` is refused too (it would look like protection that
//! is not there), and at run time a missing IR frame refuses the face
//! (see `biometrics::face::liveness`).
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::liveness::LivenessMode;
use super::DEFAULT_MATCH_THRESHOLD;

/// `[face] enabled`: `"auto"` (default), `true` or `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaceSwitch {
    /// On where the board can check liveness ([`FaceConfig::resolve`]).
    #[default]
    Auto,
    /// On; what it needs and lacks is a start-up error.
    On,
    /// Off.
    Off,
}

impl<'de> Deserialize<'de> for FaceSwitch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(FaceSwitch::On),
            Raw::Bool(false) => Ok(FaceSwitch::Off),
            Raw::Word(w) if w == "auto" => Ok(FaceSwitch::Auto),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "`enabled` = {w:?}: use true, false or \"auto\""
            ))),
        }
    }
}

/// What `[face]` comes to on a board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceDecision {
    On,
    /// Off, and why (for the start-up log).
    Off(&'static str),
}

/// Face settings (the `[face]` table of latchd.toml).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaceConfig {
    /// Face recognition and enrolment on the camera: `"auto"` (default),
    /// `true` or `false`.
    pub enabled: FaceSwitch,
    /// Directory holding `yunet_n_320_320.onnx` and `mobilefacenet.onnx`.
    pub models_dir: PathBuf,
    /// Cosine similarity a probe must reach to match a template.
    pub threshold: f32,
    /// How long one recognition attempt looks at frames, milliseconds.
    pub attempt_budget_ms: u64,
    /// How long an enrolment may take before it fails, seconds.
    pub enrol_timeout_s: u64,
    /// Liveness source. `ir` (default): the IR-reflectance check on a frame
    /// from `ir_camera` (Linux board) or `sim_ir_dir` (sim board); refused
    /// without one. `none`: **a photo of an enrolled user may unlock**;
    /// accepted only with `allow_without_liveness = true`.
    pub liveness: LivenessMode,
    /// The explicit, logged consent to run face unlock with
    /// `liveness = "none"` (issue 13 item 8). Default `false`.
    pub allow_without_liveness: bool,
    /// Start a recognition attempt when the camera sees motion (someone
    /// walking up), as well as on a keypad touch.
    pub motion_trigger: bool,
    /// Sim board only: `<N>.jpg|jpeg|png` is what the camera shows while
    /// simulated person N is at the door, `empty.*` the empty doorstep.
    pub sim_people_dir: Option<PathBuf>,
    /// Linux board: the V4L2 node of the IR camera (`/dev/videoN`, GREY or
    /// YUYV), beside the RGB camera with the same field of view; the board
    /// file's `outputs.ir_illuminator` is lit while it grabs.
    pub ir_camera: Option<PathBuf>,
    /// Sim board only: `<N>.png|jpg|jpeg` is what the IR camera sees while
    /// simulated person N is at the door (read as luma, same framing as
    /// `sim_people_dir`'s `<N>.jpg`). A person without one is refused.
    pub sim_ir_dir: Option<PathBuf>,
}

// `threshold` is an f32, but `validate` refuses NaN, so equality is
// reflexive for every configuration the daemon accepts.
impl Eq for FaceConfig {}

impl Default for FaceConfig {
    fn default() -> Self {
        FaceConfig {
            enabled: FaceSwitch::Auto,
            models_dir: PathBuf::from("/usr/share/latchd/models"),
            threshold: DEFAULT_MATCH_THRESHOLD,
            attempt_budget_ms: 3000,
            enrol_timeout_s: 60,
            liveness: LivenessMode::Ir,
            allow_without_liveness: false,
            motion_trigger: true,
            sim_people_dir: None,
            ir_camera: None,
            sim_ir_dir: None,
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
        for (key, path) in [
            ("face.ir_camera", &self.ir_camera),
            ("face.sim_ir_dir", &self.sim_ir_dir),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return bad(key, "\"\"".into(), "name a path, or leave the key out");
            }
        }
        if self.enabled != FaceSwitch::Off {
            let has_ir = self.ir_camera.is_some() || self.sim_ir_dir.is_some();
            let insists = self.enabled == FaceSwitch::On;
            match self.liveness {
                // Failing closed: accepting "ir" with no IR frames would
                // either refuse every face or silently skip the check.
                // "auto" turns face off instead (`resolve`).
                LivenessMode::Ir if !has_ir && insists => {
                    return bad(
                        "face.liveness",
                        "\"ir\"".into(),
                        "needs an IR source: set `face.ir_camera` (Linux board) or `face.sim_ir_dir` (sim board), or use \"none\" (a photo may pass)",
                    )
                }
                LivenessMode::Off if !has_ir && !self.allow_without_liveness && insists => {
                    return bad(
                        "face.liveness",
                        "\"none\"".into(),
                        "face unlock without a liveness check lets a printed photo of an enrolled person open the door; \
                         give the board an IR source and use \"ir\", or accept the risk knowingly with \
                         `face.allow_without_liveness = true`",
                    )
                }
                LivenessMode::Off if has_ir => {
                    let key = if self.ir_camera.is_some() {
                        "face.ir_camera"
                    } else {
                        "face.sim_ir_dir"
                    };
                    let path = self.ir_camera.as_ref().or(self.sim_ir_dir.as_ref());
                    return bad(
                        key,
                        format!("{:?}", path.map(|p| p.display().to_string()).unwrap_or_default()),
                        "an IR source is set but `face.liveness` is \"none\", so it would not be used; set liveness = \"ir\" or remove the key",
                    );
                }
                _ => {}
            }
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

    /// The board-specific half of the check (the daemon calls it when it
    /// starts the camera): with `liveness = "ir"` the board must have its
    /// kind of IR source, `ir_camera` on a real board, `sim_ir_dir` on the
    /// sim board (unless "auto" turns face off for want of it); the other
    /// board's key is refused, not ignored.
    pub fn check_board(&self, sim_board: bool) -> Result<(), FaceConfigError> {
        if self.enabled == FaceSwitch::Off || self.liveness != LivenessMode::Ir {
            return Ok(());
        }
        let path_value = |p: &PathBuf| format!("{:?}", p.display().to_string());
        let (wrong, wrong_key, why) = if sim_board {
            (
                &self.ir_camera,
                "face.ir_camera",
                "the sim board has no V4L2 IR camera; give it IR pictures with `face.sim_ir_dir`",
            )
        } else {
            (
                &self.sim_ir_dir,
                "face.sim_ir_dir",
                "only the sim board reads IR pictures; give a real board `face.ir_camera`",
            )
        };
        if let Some(p) = wrong {
            return Err(FaceConfigError {
                key: wrong_key,
                value: path_value(p),
                why,
            });
        }
        let present = if sim_board {
            self.sim_ir_dir.is_some()
        } else {
            self.ir_camera.is_some()
        };
        if !present && self.enabled == FaceSwitch::On {
            return Err(FaceConfigError {
                key: "face.liveness",
                value: "\"ir\"".into(),
                why: if sim_board {
                    "needs an IR source: set `face.sim_ir_dir` on the sim board"
                } else {
                    "needs an IR source: set `face.ir_camera` on this board"
                },
            });
        }
        Ok(())
    }

    /// Whether face unlock runs on this board (a table that passed
    /// [`validate`](Self::validate) and [`check_board`](Self::check_board)):
    /// `true` and `false` say it; `"auto"` is on when the liveness check
    /// can run — the board's own IR source with `liveness = "ir"`, or
    /// `liveness = "none"` with the explicit consent — and off otherwise.
    pub fn resolve(&self, sim_board: bool) -> FaceDecision {
        match self.enabled {
            FaceSwitch::On => FaceDecision::On,
            FaceSwitch::Off => FaceDecision::Off("`face.enabled` = false"),
            FaceSwitch::Auto => match self.liveness {
                LivenessMode::Ir if sim_board && self.sim_ir_dir.is_none() => FaceDecision::Off(
                    "auto: the liveness check needs the sim board's IR pictures, `face.sim_ir_dir`",
                ),
                LivenessMode::Ir if !sim_board && self.ir_camera.is_none() => FaceDecision::Off(
                    "auto: the liveness check needs the board's IR camera, `face.ir_camera`",
                ),
                LivenessMode::Ir => FaceDecision::On,
                LivenessMode::Off if self.allow_without_liveness => FaceDecision::On,
                LivenessMode::Off => FaceDecision::Off(
                    "auto: `face.liveness` = \"none\" without `face.allow_without_liveness` = true",
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_valid() {
        let c: FaceConfig = toml::from_str("").expect("empty table");
        assert_eq!(c, FaceConfig::default());
        assert_eq!(c.enabled, FaceSwitch::Auto);
        // Nothing to check liveness with on either board: off.
        assert!(matches!(c.resolve(true), FaceDecision::Off(_)));
        assert!(matches!(c.resolve(false), FaceDecision::Off(_)));
        assert_eq!(c.check_board(true), Ok(()));
        assert_eq!(c.check_board(false), Ok(()));
        assert_eq!(c.liveness, LivenessMode::Ir);
        assert!(!c.allow_without_liveness);
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
        let cases: [(&str, &str); 11] = [
            // Issue 13 item 8: never without a liveness check by default.
            ("enabled = true", "face.liveness"),
            ("enabled = true\nliveness = \"none\"", "face.liveness"),
            ("threshold = 1.5", "face.threshold"),
            ("threshold = nan", "face.threshold"),
            ("attempt_budget_ms = 10", "face.attempt_budget_ms"),
            ("enrol_timeout_s = 0", "face.enrol_timeout_s"),
            ("enabled = true\nliveness = \"ir\"", "face.liveness"),
            ("ir_camera = \"\"", "face.ir_camera"),
            ("sim_ir_dir = \"\"", "face.sim_ir_dir"),
            (
                "enabled = true\nliveness = \"none\"\nallow_without_liveness = true\nir_camera = \"/dev/video2\"",
                "face.ir_camera",
            ),
            (
                "enabled = true\nliveness = \"none\"\nallow_without_liveness = true\nsim_ir_dir = \"/tmp/ir\"",
                "face.sim_ir_dir",
            ),
        ];
        for (text, key) in cases {
            let c: FaceConfig = toml::from_str(text).expect(text);
            assert_eq!(c.validate().map_err(|e| e.key), Err(key), "{text}");
        }
    }

    #[test]
    fn no_liveness_needs_the_explicit_consent() {
        let c: FaceConfig =
            toml::from_str("enabled = true\nliveness = \"none\"\nallow_without_liveness = true")
                .expect("parses");
        assert_eq!(c.validate(), Ok(()));
        // The consent does not turn an IR source off silently.
        let c: FaceConfig = toml::from_str(
            "enabled = true\nliveness = \"none\"\nallow_without_liveness = true\nsim_ir_dir = \"/tmp/ir\"",
        )
        .expect("parses");
        assert_eq!(c.validate().map_err(|e| e.key), Err("face.sim_ir_dir"));
    }

    #[test]
    fn ir_liveness_is_accepted_with_an_ir_source() {
        for text in [
            "enabled = true\nliveness = \"ir\"\nir_camera = \"/dev/video2\"",
            "enabled = true\nliveness = \"ir\"\nsim_ir_dir = \"/tmp/ir\"",
            // Off: nothing is used, nothing to refuse.
            "liveness = \"ir\"",
        ] {
            let c: FaceConfig = toml::from_str(text).expect(text);
            assert_eq!(c.validate(), Ok(()), "{text}");
        }
    }

    #[test]
    fn each_board_needs_its_own_ir_source() {
        let parse = |text: &str| -> FaceConfig { toml::from_str(text).expect(text) };
        let linux = parse("enabled = true\nliveness = \"ir\"\nir_camera = \"/dev/video2\"");
        let sim = parse("enabled = true\nliveness = \"ir\"\nsim_ir_dir = \"/tmp/ir\"");
        assert_eq!(linux.check_board(false), Ok(()));
        assert_eq!(sim.check_board(true), Ok(()));
        let e = linux
            .check_board(true)
            .expect_err("IR camera on the sim board");
        assert_eq!(e.key, "face.ir_camera");
        assert!(e.to_string().contains("/dev/video2"), "{e}");
        let e = sim
            .check_board(false)
            .expect_err("IR pictures on a real board");
        assert_eq!(e.key, "face.sim_ir_dir");
        // Without liveness (or with face off) the board has nothing to give.
        assert_eq!(FaceConfig::default().check_board(false), Ok(()));
        let off = parse("enabled = false\nliveness = \"ir\"\nsim_ir_dir = \"/tmp/ir\"");
        assert_eq!(off.check_board(false), Ok(()));
        // "auto" would use the key, so the wrong board's key is refused.
        let auto = parse("liveness = \"ir\"\nsim_ir_dir = \"/tmp/ir\"");
        assert_eq!(
            auto.check_board(false).map_err(|e| e.key),
            Err("face.sim_ir_dir")
        );
        // Both keys set: the board's own one is used, the other refused.
        let both = parse(
            "enabled = true\nliveness = \"ir\"\nir_camera = \"/dev/video2\"\nsim_ir_dir = \"/tmp/ir\"",
        );
        assert_eq!(
            both.check_board(true).map_err(|e| e.key),
            Err("face.ir_camera")
        );
        assert_eq!(
            both.check_board(false).map_err(|e| e.key),
            Err("face.sim_ir_dir")
        );
    }

    #[test]
    fn enabled_is_auto_true_or_false() {
        let parse = |text: &str| toml::from_str::<FaceConfig>(text).map(|c| c.enabled);
        assert_eq!(parse("enabled = \"auto\"").ok(), Some(FaceSwitch::Auto));
        assert_eq!(parse("enabled = true").ok(), Some(FaceSwitch::On));
        assert_eq!(parse("enabled = false").ok(), Some(FaceSwitch::Off));
        for bad in ["enabled = \"yes\"", "enabled = 1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// Issue 17 item 6: face is on by default wherever the board can check
    /// liveness, and never on without the check unless the table says so
    /// twice.
    #[test]
    fn auto_turns_face_on_only_where_liveness_can_run() {
        let parse = |text: &str| -> FaceConfig { toml::from_str(text).expect(text) };
        let on = |c: &FaceConfig, sim| c.resolve(sim) == FaceDecision::On;
        let linux_ir = parse("ir_camera = \"/dev/video2\"");
        assert_eq!(linux_ir.validate(), Ok(()));
        assert_eq!(linux_ir.check_board(false), Ok(()));
        assert!(on(&linux_ir, false));
        let sim_ir = parse("sim_ir_dir = \"/tmp/ir\"");
        assert_eq!(sim_ir.check_board(true), Ok(()));
        assert!(on(&sim_ir, true));
        // No IR source: off, and no start-up error either.
        let plain = parse("");
        for sim in [true, false] {
            assert!(!on(&plain, sim));
            assert_eq!(plain.check_board(sim), Ok(()));
        }
        // Without liveness only with the consent.
        let unchecked = parse("liveness = \"none\"");
        assert_eq!(unchecked.validate(), Ok(()));
        assert!(!on(&unchecked, true) && !on(&unchecked, false));
        let consented = parse("liveness = \"none\"\nallow_without_liveness = true");
        assert!(on(&consented, true) && on(&consented, false));
        // Explicit settings win.
        assert!(!on(
            &parse("enabled = false\nir_camera = \"/dev/video2\""),
            false
        ));
        assert!(on(&parse("enabled = true\nsim_ir_dir = \"/tmp/ir\""), true));
    }
}
