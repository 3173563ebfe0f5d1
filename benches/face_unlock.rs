//! Face unlock latency on the sim board's camera path: from the engine's
//! `RecogniseFace` with an enrolled person in view to the `Recognised`
//! report on the engine's input queue. This is everything between the
//! engine asking and the engine hearing: the face service's queue, the wait
//! for the next camera frame (sim camera at 15 frames/s, 640×480), RGB
//! conversion, YuNet + MobileFaceNet on the blocking pool, template match
//! and the report's trip through the ordered sender. The engine's own
//! handling and the motor's 0.6 s travel come after and are not included.
//!
//! Also reports frames/s the MJPEG server delivers to one local reader
//! (camera at 30 frames/s, 640×480 RGB encoded to JPEG once per frame).
//!
//! Run: `cargo bench --bench face_unlock` (needs the shared models and
//! photos: `$LATCHD_SHARED`, else `../shared`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use latchd::biometrics::face::{FaceRecognizer, FaceTemplate, DEFAULT_MATCH_THRESHOLD};
use latchd::board::face_service::{decode_templates, FacePipeline, FaceService, FaceServiceConfig};
use latchd::board::sim::camera::{SimCamera, SimCameraConfig};
use latchd::board::{FaceSource, InputSender, OrderedSender};
use latchd::core::input::ModuleReport;
use latchd::core::{Input, ModuleCmd};
use latchd::video::{FrameRing, StreamConfig, VideoServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

fn shared_dir() -> PathBuf {
    std::env::var_os("LATCHD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"))
}

fn bench_unlock(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let models = shared_dir().join("models");
    let rec = Arc::new(
        FaceRecognizer::load(&models, DEFAULT_MATCH_THRESHOLD)
            .unwrap_or_else(|e| panic!("loading models from {}: {e}", models.display())),
    );
    let photo = shared_dir().join("faces/kit_harington/1.jpg");
    let mut cfg = SimCameraConfig::new(640, 480);
    cfg.fps = 15;
    cfg.people.insert(1, photo);

    let (camera, mut service, mut inputs, _templates) = rt.block_on(async {
        let ring = FrameRing::new();
        let camera = SimCamera::start(&cfg, ring.clone()).expect("sim camera");
        camera.show_person(Some(1)).expect("person 1");
        // A one-pose template from the camera's own frame stands in for an
        // enrolment (enrolment cost is not what is measured here).
        let frame = ring.subscribe().next().await.expect("frame");
        let rgb = frame.to_rgb().expect("rgb");
        let face = rec.observe(&rgb).expect("inference");
        let first = face.first().expect("a face in the photo");
        let template = FaceTemplate::new(vec![first.embedding.clone()]).expect("template");
        let (templates, templates_rx) =
            watch::channel(decode_templates([(1u16, template.to_bytes().as_slice())]));
        let (tx, inputs) = mpsc::channel(64);
        let service = FaceService::with_pipeline(
            FaceServiceConfig::new(models.clone()),
            rec.clone() as Arc<dyn FacePipeline>,
            ring,
            templates_rx,
            OrderedSender::spawn(InputSender::new(tx)),
        );
        (camera, service, inputs, templates)
    });

    let mut g = c.benchmark_group("face_unlock");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("recognise_face_to_recognised_report", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                service.command(&ModuleCmd::RecogniseFace).expect("queued");
                match rt.block_on(inputs.recv()) {
                    Some(Input::Module(ModuleReport::Recognised { slot: 1, .. })) => {}
                    other => panic!("expected Recognised, got {other:?}"),
                }
                total += t0.elapsed();
            }
            total
        })
    });
    g.finish();
    drop(camera);
}

fn bench_stream(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    const TOKEN: &str = "bench-token-0123456789";
    let mut cfg = SimCameraConfig::new(640, 480);
    cfg.fps = 30;
    cfg.people.insert(1, shared_dir().join("faces/obama/1.jpg"));
    let frames = 90u32;
    let fps = rt.block_on(async {
        let ring = FrameRing::new();
        let camera = SimCamera::start(&cfg, ring.clone()).expect("sim camera");
        camera.show_person(Some(1)).expect("person 1");
        let (_battery, battery_rx) = watch::channel(Some(90u8));
        let mut scfg = StreamConfig::new(TOKEN);
        scfg.bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let server = VideoServer::bind(&scfg, ring, battery_rx)
            .await
            .expect("bind");
        let addr = server.local_addr().expect("addr");
        let task = tokio::spawn(server.run());
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET /stream.mjpg?token={TOKEN} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut buf = vec![0u8; 1 << 16];
        let mut seen = 0u32;
        let mut t0 = None;
        let mut tail = Vec::new();
        while seen < frames {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "stream ended");
            tail.extend_from_slice(&buf[..n]);
            // Count part boundaries; keep a short tail for split markers.
            let marker = b"--latchdframe\r\n";
            let mut i = 0;
            while let Some(p) = tail[i..].windows(marker.len()).position(|w| w == marker) {
                seen += 1;
                if seen == 1 {
                    t0 = Some(Instant::now());
                }
                i += p + marker.len();
            }
            let keep_from = i.max(tail.len().saturating_sub(marker.len() - 1));
            tail.drain(..keep_from);
        }
        task.abort();
        let secs = t0.map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
        f64::from(frames - 1) / secs
    });
    println!(
        "mjpeg stream: {fps:.1} frames/s delivered to one reader (camera 640x480 at 30 frames/s)"
    );
    // Criterion needs at least one measured function; this one times a
    // frame's JPEG encode, the server's per-frame cost for an RGB camera.
    let img = image::open(shared_dir().join("faces/obama/1.jpg"))
        .expect("photo")
        .to_rgb8();
    let img = latchd::board::sim::camera::letterbox(&img, 640, 480);
    c.bench_function("jpeg_encode_640x480", |b| {
        b.iter(|| latchd::video::ring::encode_jpeg(&img).expect("encode"))
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_unlock(&mut c);
    bench_stream(&mut c);
    c.final_summary();
}
