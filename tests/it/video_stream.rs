//! The live video stream end to end: the sim camera plays a shared photo
//! into the frame ring, the MJPEG server serves it on loopback, and the
//! real `ffprobe`/`ffmpeg` (Debian package `ffmpeg`) read it.
//!
//! * right token (bearer header) → ffprobe sees an MJPEG stream of
//!   the camera's size, ffmpeg decodes 10 frames of it;
//! * wrong or missing token, or a token in the URL → 401;
//! * battery below 20 % → 503 with the reason (B-10.2);
//! * `/snapshot.jpg` → one JPEG of the camera's size.
//!
//! Run: `cargo test --test it video_stream:: -- --nocapture` (prints frames/s).

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use latchd::board::frames::FrameRing;
use latchd::board::sim::camera::{SimCamera, SimCameraConfig};
use latchd::video::{StreamConfig, VideoServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::common::shared::shared_dir;

const TOKEN: &str = "0123456789abcdef-test-token";
const W: u32 = 320;
const H: u32 = 240;

struct Rig {
    addr: SocketAddr,
    battery: watch::Sender<Option<u8>>,
    _camera: SimCamera,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn rig(fps: u32) -> Rig {
    let mut cfg = SimCameraConfig::new(W, H);
    cfg.fps = fps;
    cfg.people.insert(1, shared_dir().join("faces/obama/1.jpg"));
    let ring = FrameRing::new();
    let camera = SimCamera::start(&cfg, ring.clone()).expect("sim camera");
    camera.show_person(Some(1)).expect("person 1");
    let (battery, battery_rx) = watch::channel(Some(80));
    let mut scfg = StreamConfig::new(TOKEN);
    scfg.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = VideoServer::bind(&scfg, ring, battery_rx)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    let server = tokio::spawn(server.run());
    Rig {
        addr,
        battery,
        _camera: camera,
        server,
    }
}

/// One raw request; returns the status code and the first 64 KiB.
async fn get(addr: SocketAddr, target: &str, headers: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {target} HTTP/1.1\r\nHost: lock\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    // Read to the end (error statuses close) or 64 KiB (a stream does not).
    while buf.len() < 64 * 1024 {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf[..buf.len().min(16)]).into_owned();
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    (code, buf)
}

fn body(resp: &[u8]) -> &[u8] {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end");
    &resp[end + 4..]
}

async fn run(cmd: &mut Command) -> std::process::Output {
    let mut cmd = std::mem::replace(cmd, Command::new("true"));
    tokio::task::spawn_blocking(move || {
        cmd.output()
            .expect("ffmpeg/ffprobe installed (apt-get install ffmpeg)")
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_reads_the_stream_with_the_token() {
    let rig = rig(15).await;
    let url = format!("http://{}/stream.mjpg", rig.addr);

    let probe = run(Command::new("ffprobe").args([
        "-v",
        "error",
        "-headers",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
        "-show_entries",
        "stream=codec_name,width,height",
        "-of",
        "csv=p=0",
        &url,
    ]))
    .await;
    let out = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert_eq!(out.trim(), format!("mjpeg,{W},{H}"));

    // 10 frames decoded to raw RGB: the byte count proves count and size.
    let frames = 30;
    let t0 = Instant::now();
    let ff = run(Command::new("ffmpeg").args([
        "-nostdin",
        "-v",
        "error",
        "-headers",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
        "-i",
        &format!("http://{}/stream.mjpg", rig.addr),
        "-frames:v",
        &frames.to_string(),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]))
    .await;
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        ff.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&ff.stderr)
    );
    assert_eq!(ff.stdout.len(), frames * (W * H * 3) as usize);
    println!(
        "ffmpeg read {frames} frames of {W}x{H} in {secs:.2} s: {:.1} frames/s (sim camera at 15 frames/s)",
        frames as f64 / secs
    );

    // The snapshot endpoint: one JPEG of the camera's size.
    let (code, resp) = get(
        rig.addr,
        "/snapshot.jpg",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .await;
    assert_eq!(code, 200);
    let img =
        image::load_from_memory_with_format(body(&resp), image::ImageFormat::Jpeg).expect("a JPEG");
    assert_eq!((img.width(), img.height()), (W, H));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_token_is_401() {
    let rig = rig(10).await;
    for (target, headers) in [
        ("/stream.mjpg", ""),
        ("/stream.mjpg?token=0123456789abcdef-test-tokeN", ""),
        ("/stream.mjpg?token=", ""),
        (
            "/stream.mjpg",
            "Authorization: Bearer wrong-token-wrong-token\r\n",
        ),
        ("/stream.mjpg", &format!("Authorization: Basic {TOKEN}\r\n")),
        ("/snapshot.jpg", ""),
    ] {
        let (code, resp) = get(rig.addr, target, headers).await;
        assert_eq!(code, 401, "{target} {headers:?}");
        let text = String::from_utf8_lossy(&resp);
        assert!(text.contains("WWW-Authenticate: Bearer"), "{text}");
        assert!(!text.contains("battery"), "401 tells nothing else: {text}");
    }
    // ffmpeg itself fails without the token.
    let ff = run(Command::new("ffmpeg").args([
        "-nostdin",
        "-v",
        "error",
        "-i",
        &format!("http://{}/stream.mjpg", rig.addr),
        "-frames:v",
        "1",
        "-f",
        "null",
        "-",
    ]))
    .await;
    assert!(!ff.status.success());
    assert!(String::from_utf8_lossy(&ff.stderr).contains("401"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_battery_is_503_with_the_reason() {
    let rig = rig(10).await;
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    rig.battery.send_replace(Some(19));
    for target in ["/stream.mjpg", "/snapshot.jpg"] {
        let (code, resp) = get(rig.addr, target, &auth).await;
        assert_eq!(code, 503, "{target}");
        let text = String::from_utf8_lossy(body(&resp)).into_owned();
        assert!(text.contains("battery at 19 %, below 20 %"), "{text}");
    }
    // Unknown battery level: refused too (nothing fails open).
    rig.battery.send_replace(None);
    assert_eq!(get(rig.addr, "/stream.mjpg", &auth).await.0, 503);
    // At 20 % it is served again.
    rig.battery.send_replace(Some(20));
    let (code, resp) = get(rig.addr, "/stream.mjpg", &auth).await;
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&resp);
    assert!(text.contains("multipart/x-mixed-replace; boundary=latchdframe"));
    assert!(text.contains("--latchdframe\r\nContent-Type: image/jpeg"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let rig = rig(10).await;
    let (code, _) = get(rig.addr, "/nothing", "").await;
    assert_eq!(code, 404);
    // An oversized head is refused without reading it all.
    let mut s = TcpStream::connect(rig.addr).await.expect("connect");
    let big = format!(
        "GET /stream.mjpg HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let _ = s.write_all(big.as_bytes()).await;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut resp)).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // POST is refused.
    let mut s = TcpStream::connect(rig.addr).await.expect("connect");
    s.write_all(b"POST /stream.mjpg HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut resp)).await;
    assert!(resp.starts_with(b"HTTP/1.1 405"));
}
