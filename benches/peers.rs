//! latchd's side of `scripts/bench-peers.sh`: one figure per run, printed
//! as a machine-readable line the script pairs with the peer's
//! (`scripts/peers/peers.py`) and turns into a ratio.
//!
//! ```text
//!  peers frame OUT.png      write the benchmark frame (320×240, one face)
//!  peers crop OUT.png       write the aligned 112×112 crop of its face
//!  peers face               detect + align + embed per frame
//!  peers face-still         the same frame again with nothing moved: the
//!                           detections are reused (still check + align + embed)
//!  peers detect             the detector alone on the frame (320×320 letterbox)
//!  peers embed              the embedder alone on the aligned crop
//!  peers antipeep DIGITS    keyed-MAC index lookup, DIGITS-digit input, 50 codes
//!  peers store-make DIR     a store with 50 users / 150 credentials in DIR
//!  peers store-load DIR     Store::load of that store
//! ```
//!
//! Every timed figure prints
//! `latchd-figure NAME cpu_ms=… wall_ms=… n=…`: the medians over `n`
//! single runs of the process's CPU time (CLOCK_PROCESS_CPUTIME_ID) and of
//! wall-clock time. CPU time is the figure the table compares: on a
//! machine shared with other builds, wall-clock time also counts the time
//! the scheduler gave to someone else. Everything runs on one thread.
//!
//! Run: `cargo bench --bench peers -- face` (the script runs the built
//! binary directly).

#[path = "../tests/it/common/shared.rs"]
mod shared;
use shared::{bench_frame, shared_dir};

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use latchd::biometrics::face::{align_face, FaceRecognizer, SceneMemo, DEFAULT_MATCH_THRESHOLD};
use latchd::core::passcode::{Macer, PasscodeIndex, PasscodeTarget};
use latchd::core::types::{
    Change, Credential, CredentialId, CredentialKind, CredentialSecret, PasscodeMac, Role,
    TempPasscodeId, User, UserNumber,
};
use latchd::core::Validity;
use latchd::store::{Store, StoreOptions};

/// CPU time of the whole process (every thread).
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a
    // constant every Linux kernel supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `f` a few times to warm caches, then `n` timed times; prints the
/// figure line.
fn measure<R>(name: &str, n: usize, mut f: impl FnMut() -> R) {
    for _ in 0..3.min(n) {
        black_box(f());
    }
    let (mut cpu, mut wall) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let (c0, w0) = (cpu_time(), Instant::now());
        black_box(f());
        let (c1, w1) = (cpu_time(), Instant::now());
        cpu.push((c1 - c0).as_secs_f64() * 1e3);
        wall.push((w1 - w0).as_secs_f64() * 1e3);
    }
    println!(
        "latchd-figure {name} cpu_ms={:.6} wall_ms={:.6} n={n}",
        median(cpu),
        median(wall)
    );
}

fn recognizer() -> FaceRecognizer {
    FaceRecognizer::load(&shared_dir().join("models"), DEFAULT_MATCH_THRESHOLD)
        .unwrap_or_else(|e| panic!("loading the face models: {e}"))
}

/// The passcodes of `benches/engine.rs`: 50 six-digit codes.
fn fifty_codes() -> Vec<Vec<u8>> {
    (0..50u32)
        .map(|i| {
            format!("{:06}", 246_001 + i * 7919)
                .bytes()
                .map(|b| b - b'0')
                .collect()
        })
        .collect()
}

/// One user's enrolment as `benches/store.rs` makes it: a face template
/// (sealed), a fingerprint slot and a passcode MAC (sealed).
fn enrolment(gen: u32) -> Vec<Change> {
    let number = UserNumber::new((gen % 999 + 1) as u16).expect("1..=999");
    let base = u32::from(number.get()) * 10;
    vec![
        Change::PutUser(User {
            number,
            role: Role::User,
            validity: Validity::ALWAYS,
        }),
        Change::PutCredential(Credential {
            id: CredentialId(base),
            user: number,
            kind: CredentialKind::Face,
            secret: CredentialSecret::FaceTemplate {
                slot: 0,
                template: vec![gen as u8; 512],
            },
        }),
        Change::PutCredential(Credential {
            id: CredentialId(base + 1),
            user: number,
            kind: CredentialKind::Fingerprint,
            secret: CredentialSecret::ModuleSlot(gen as u16),
        }),
        Change::PutCredential(Credential {
            id: CredentialId(base + 2),
            user: number,
            kind: CredentialKind::Passcode,
            secret: CredentialSecret::Passcode(PasscodeMac([gen as u8; 32])),
        }),
    ]
}

#[expect(
    clippy::exit,
    reason = "a command-line usage error ends the bench with status 2"
)]
fn usage() -> ! {
    eprintln!(
        "usage: peers frame OUT.png | crop OUT.png | face | face-still | detect | \
         embed | antipeep DIGITS | store-make DIR | store-load DIR"
    );
    std::process::exit(2)
}

fn main() {
    // `cargo bench` adds `--bench`; only our own words count.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_else(|| usage());
    match arg(0) {
        "frame" => {
            let out = arg(1);
            bench_frame()
                .save(out)
                .unwrap_or_else(|e| panic!("writing {out}: {e}"));
        }
        "crop" => {
            let out = arg(1);
            let frame = bench_frame();
            let rec = recognizer();
            let faces = rec.detector().detect(&frame).expect("detect");
            let face = faces.first().expect("the bench frame shows a face");
            align_face(&frame, &face.landmarks)
                .expect("aligned")
                .save(out)
                .unwrap_or_else(|e| panic!("writing {out}: {e}"));
        }
        "face" => {
            let frame = bench_frame();
            let rec = recognizer();
            let faces = rec.observe(&frame).expect("observe");
            assert_eq!(faces.len(), 1, "the bench frame must show one face");
            measure("face", 60, || rec.observe(&frame).expect("observe"));
        }
        "face-still" => {
            let frame = bench_frame();
            let rec = recognizer();
            let mut memo = SceneMemo::default();
            let faces = rec.observe_still(&frame, &mut memo).expect("observe");
            assert_eq!(faces.len(), 1, "the bench frame must show one face");
            measure("face_still", 60, || {
                rec.observe_still(&frame, &mut memo).expect("observe")
            });
        }
        "detect" => {
            let frame = bench_frame();
            let rec = recognizer();
            measure("detect", 80, || {
                rec.detector().detect(&frame).expect("detect")
            });
        }
        "embed" => {
            let frame = bench_frame();
            let rec = recognizer();
            let faces = rec.detector().detect(&frame).expect("detect");
            let face = faces.first().expect("the bench frame shows a face");
            let crop = align_face(&frame, &face.landmarks).expect("aligned");
            measure("embed", 80, || rec.embedder().embed(&crop).expect("embed"));
        }
        "antipeep" => {
            let digits: usize = arg(1).parse().unwrap_or_else(|_| usage());
            let macer = Macer::new(&[9; 32]);
            let mut idx = PasscodeIndex::default();
            for (i, code) in fifty_codes().iter().enumerate() {
                idx.insert(
                    macer.mac(code),
                    PasscodeTarget::Temp(TempPasscodeId(i as u32)),
                );
            }
            // No window matches: every window is MACed and looked up, the
            // worst case (the peer script types the same digits).
            let miss: Vec<u8> = (0..digits).map(|i| ((i * 7 + 3) % 10) as u8).collect();
            assert!(idx.find(&macer, &miss).is_none());
            measure(&format!("antipeep{digits}"), 2000, || {
                idx.find(&macer, black_box(&miss))
            });
        }
        "store-make" => {
            let dir = Path::new(arg(1));
            let (mut store, _key) =
                Store::open(dir, StoreOptions::default()).expect("opening the store");
            for g in 1..=50 {
                store.apply(&enrolment(g)).expect("enrol");
            }
            println!("{}", store.db_path().display());
        }
        "store-load" => {
            let dir = Path::new(arg(1));
            let (store, _key) =
                Store::open(dir, StoreOptions::default()).expect("opening the store");
            let loaded = store.load().expect("load");
            assert_eq!(loaded.users.len(), 50, "store-make first");
            measure("store_load", 300, || store.load().expect("load"));
        }
        _ => usage(),
    }
}
