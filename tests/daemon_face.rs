//! Face unlock end to end in the real daemon on the sim board (issue 7):
//! `[face] enabled` with a people directory built here from the shared
//! photos, the real YuNet + MobileFaceNet pipeline reading the sim
//! camera's frame ring, the motion trigger starting attempts.
//!
//! Pictures (person N = `<N>.jpg` in the sim people directory): 1 is
//! `kit_harington/1.jpg` (frontal), 9 is `obama/1.jpg`.
//!
//! NOT covered yet (see the report of issue 7): a full five-pose enrolment
//! through the menu followed by a face unlock and a stranger's attempt.
//! No shared photo shows a raised or lowered head, and a row warp of the
//! frontal photo does not move YuNet's nose landmark enough to read as a
//! pitched head (tried: the pipeline read ±1–3°), so the enrolment cannot
//! finish from pictures alone. `tests/face_sim.rs` covers enrol → unlock
//! → stranger on the service with pitched landmarks injected.
//!
//! Run: `cargo test --test daemon_face -- --nocapture` (needs ../shared,
//! or LATCHD_SHARED pointing at it).
#![cfg(feature = "face")]
mod daemon_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use daemon_common::{enter_menu, first_start, Daemon};
use image::RgbImage;
use serde_json::{json, Value};

const STRANGER: u32 = 9;

fn shared_dir() -> PathBuf {
    std::env::var_os("LATCHD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn photo(rel: &str) -> RgbImage {
    let p = shared_dir().join("faces").join(rel);
    image::open(&p)
        .unwrap_or_else(|e| panic!("decoding {}: {e}", p.display()))
        .to_rgb8()
}

/// The people directory: the frontal photo and a stranger.
fn people_dir(dir: &Path) -> PathBuf {
    let people = dir.join("people");
    std::fs::create_dir_all(&people).unwrap();
    photo("kit_harington/1.jpg")
        .save(people.join("1.jpg"))
        .unwrap();
    photo("obama/1.jpg")
        .save(people.join(format!("{STRANGER}.jpg")))
        .unwrap();
    people
}

/// Poll `cond` on the daemon's published state. The bound only turns a
/// hang into a failure with the log; nothing asserts on time.
fn wait_for(d: &Daemon, what: &str, mut cond: impl FnMut(&Daemon) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !cond(d) {
        assert!(
            Instant::now() < deadline,
            "never saw {what}:\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn prompted(d: &Daemon, text: &str) -> bool {
    d.last_prompts(4).iter().any(|p| p == text)
}

fn engine(d: &Daemon) -> Value {
    d.status()["engine"].clone()
}

fn face(d: &Daemon, person: Option<u32>) {
    d.ok(json!({"cmd": "face", "person": person}));
}

fn start(dir: &Path, config: &Path) -> Daemon {
    Daemon::start_with(&dir.join("state"), &["--config", config.to_str().unwrap()])
}

#[test]
fn real_pipeline_takes_the_front_pose_and_doorbell_snapshot_carries_the_event_id() {
    let dir = tempfile::tempdir().unwrap();
    let people = people_dir(dir.path());
    let config = dir.path().join("latchd.toml");
    std::fs::write(
        &config,
        format!(
            "[face]\nenabled = true\nmodels_dir = \"{}\"\nsim_people_dir = \"{}\"\n",
            shared_dir().join("models").display(),
            people.display()
        ),
    )
    .unwrap();
    let d = start(dir.path(), &config);
    first_start(&d);

    // B-4.4 + B-4.5: add user 002 with a face. The frontal picture is taken
    // by the real pipeline, which then asks for the next pose.
    enter_menu(&d);
    d.press("2");
    face(&d, Some(1));
    d.press("1");
    wait_for(&d, "the second pose asked for", |d| {
        prompted(d, "Raise your head slightly.")
    });
    // Cancelled: nothing stored (B-4.5).
    d.press("↩");
    face(&d, None);
    assert_eq!(engine(&d)["counts"]["faces"], json!(0));
    d.press("↩↩");

    // B-3.5: a doorbell press stores a snapshot named by its event.
    d.press("d");
    let events = d.ok(json!({"cmd": "events", "n": 20}));
    let bell = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["kind"] == json!("doorbell"))
        .unwrap_or_else(|| panic!("no doorbell event in {events}"))["id"]
        .as_u64()
        .unwrap();
    let snapshots = d.state.join("snapshots");
    let want = format!("-ev{bell:012}-doorbell.jpg");
    wait_for(&d, "the doorbell snapshot", |_| {
        std::fs::read_dir(&snapshots).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(&want))
        })
    });
    // The sim board still counts it for its panel.
    assert_eq!(d.status()["sim"]["snapshots"], json!(1));
    assert!(d.sigterm().success());
}
