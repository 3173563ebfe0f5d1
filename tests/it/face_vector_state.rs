//! The face models leave the CPU's vector registers clean (issue 19).
//!
//! tract-linalg's x86-64 assembly kernels, as published, return with the
//! upper halves of the YMM/ZMM registers dirty. Code built for x86-64's
//! baseline (SSE: all of latchd, and tract outside its kernels) then pays a
//! false dependency on those halves at every instruction: the detector's
//! frame scaling took 2.4 ms after a model run against 0.8 ms before one,
//! and the whole face pipeline ≈ 25 % longer. latchd builds tract-linalg
//! from `third_party/tract-linalg`, whose kernels end with `vzeroupper`
//! (`scripts/vendor-tract-linalg.sh`).
//!
//! Held without timing anything: the CPU reports which register state is
//! in use (XINUSE, `XGETBV` with ECX = 1). After a detector and an embedder
//! run, state components 2 (upper halves of YMM0–15) and 6 (upper halves
//! of ZMM0–15) must be clean. With the published tract-linalg they are
//! not (XINUSE 0xe6 instead of 0xa2 on the machine this was written on).
//! On a CPU without AVX or without XINUSE reporting there is nothing to
//! hold, and the test says so.

use latchd::biometrics::face::{FaceRecognizer, DEFAULT_MATCH_THRESHOLD};

use crate::common::shared::{models_dir, photo};

/// XINUSE bits whose dirt slows SSE code: YMM0–15's and ZMM0–15's upper
/// halves. (Bit 7, ZMM16–31, is invisible to SSE code.)
const UPPER_HALVES: u64 = (1 << 2) | (1 << 6);

/// The XINUSE bitmap of this thread's register state, or None where the
/// CPU cannot report it (or has no AVX state to report).
fn xinuse() -> Option<u64> {
    use std::arch::x86_64::{__cpuid_count, _xgetbv};
    // The standard library's check includes the OS having enabled the
    // AVX state (OSXSAVE and XCR0), so XGETBV itself is available.
    if !std::arch::is_x86_feature_detected!("avx") {
        return None;
    }
    // CPUID is present on every x86-64 CPU (a safe intrinsic there).
    let leaf = __cpuid_count(0xd, 1);
    if leaf.eax & (1 << 2) == 0 {
        return None;
    }
    // SAFETY: XGETBV is available (XSAVE enabled by the OS, checked
    // above) and accepts ECX = 1 on this CPU (CPUID.(0DH,1):EAX[2]).
    Some(unsafe { _xgetbv(1) })
}

#[test]
fn the_models_leave_the_vector_registers_upper_halves_clean() {
    if xinuse().is_none() {
        eprintln!("skipped: this CPU has no AVX state or does not report XINUSE");
        return;
    }
    let models = models_dir();
    let rec = FaceRecognizer::load(&models, DEFAULT_MATCH_THRESHOLD)
        .unwrap_or_else(|e| panic!("loading models from {}: {e}", models.display()));
    let frame = photo("obama/1.jpg");

    let faces = rec.detector().detect(&frame).expect("the detector runs");
    let after_detector = xinuse().expect("reported above");
    assert!(!faces.is_empty(), "the photo shows a face");

    let observed = rec.observe(&frame).expect("detect, align and embed run");
    let after_embedder = xinuse().expect("reported above");
    assert!(
        !observed.is_empty(),
        "the photo's face is embedded (so the embedder ran)"
    );

    for (what, state) in [
        ("the detector", after_detector),
        ("detector + embedder", after_embedder),
    ] {
        assert_eq!(
            state & UPPER_HALVES,
            0,
            "after {what} XINUSE is {state:#x}: the vector registers' upper halves are left \
             dirty, and every SSE instruction after it runs slower (is tract-linalg built from \
             third_party/tract-linalg, whose kernels end with vzeroupper?)"
        );
    }
}
