//! The V4L2 camera backend against a real kernel capture driver: vivid in
//! the VM rig (`--video`, `/dev/video0`). Opens it by path and by card
//! name, negotiates a format (vivid offers YUYV, not MJPEG, so this is the
//! YUYV path), captures frames into the ring and checks their size and
//! that they convert to RGB.
//!
//! Run: `tests/vm/run-vm-tests.sh vm_camera::` (or `LATCHD_VM_TESTS=1
//! cargo test --all-features --test vm vm_camera:: -- --test-threads=1`).

use crate::rig as vm;

use std::path::PathBuf;
use std::time::Duration;

use latchd::board::frames::{FrameRing, PixelFormat};
use latchd::board::linux::camera::{find_by_card, CameraError, V4l2Camera};
use latchd::board::linux::config::Camera;

#[test]
fn v4l2_camera_on_vivid() {
    if !vm::enabled_or_skip("v4l2_camera_on_vivid") {
        return;
    }
    let opts = vm::VmOptions {
        video: true,
        ..Default::default()
    };
    vm::run_test_in_guest(&opts, module_path!(), "guest_v4l2_camera_on_vivid")
        .expect("vm")
        .assert_success();
}

#[test]
fn guest_v4l2_camera_on_vivid() {
    if !vm::in_guest_or_skip("guest_v4l2_camera_on_vivid") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // By path.
        let cfg = Camera {
            path: Some(PathBuf::from("/dev/video0")),
            card: None,
            width: 640,
            height: 480,
        };
        let ring = FrameRing::new();
        let mut frames = ring.subscribe();
        let cam = V4l2Camera::start(&cfg, ring.clone()).expect("open vivid");
        let n = cam.negotiated().clone();
        println!("negotiated {n:?}");
        assert_eq!((n.width, n.height), (640, 480));
        assert!(matches!(n.format, PixelFormat::Mjpeg | PixelFormat::Yuyv));
        let mut seqs = Vec::new();
        while seqs.len() < 10 {
            let f = tokio::time::timeout(Duration::from_secs(10), frames.next())
                .await
                .expect("a frame within 10 s")
                .expect("ring open");
            assert_eq!((f.width, f.height), (640, 480));
            let rgb = f.to_rgb().expect("frame converts");
            assert_eq!(rgb.dimensions(), (640, 480));
            seqs.push(f.seq);
        }
        assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
        drop(cam);

        // By card name: the same node is found by scanning /dev/video*.
        let found = find_by_card(&n.card).expect("card found");
        assert_eq!(found, PathBuf::from("/dev/video0"));
        let by_card = Camera {
            path: None,
            card: Some(n.card.clone()),
            width: 320,
            height: 240,
        };
        let ring = FrameRing::new();
        let mut frames = ring.subscribe();
        let cam = V4l2Camera::start(&by_card, ring.clone()).expect("open by card");
        let f = tokio::time::timeout(Duration::from_secs(10), frames.next())
            .await
            .expect("a frame")
            .expect("ring open");
        // vivid rounds 320x240 to one of its discrete sizes (320x180): the
        // frames must have the size the driver agreed to, whatever it is.
        let agreed = cam.negotiated();
        println!(
            "asked 320x240, driver agreed {}x{}",
            agreed.width, agreed.height
        );
        assert_eq!((f.width, f.height), (agreed.width, agreed.height));
        assert!(agreed.width <= 320 && agreed.height <= 240);
        assert_eq!(
            f.to_rgb().expect("converts").dimensions(),
            (f.width, f.height)
        );
        drop(cam);

        // A card that is not there is a clear error listing what is.
        match find_by_card("no such camera") {
            Err(CameraError::CardNotFound { found, .. }) => {
                assert!(found.contains("/dev/video0"), "{found}")
            }
            other => panic!("expected CardNotFound, got {other:?}"),
        }
    });
}
