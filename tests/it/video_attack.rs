//! Issue 14 item 6: the video endpoint under attack, on real sockets.
//!
//! * 2,000 idle connections (100 source addresses × 20) against the real
//!   daemon with `[video]` in HTTPS: the daemon's descriptors stay bounded
//!   (no "Too many open files"), an unlock over the control socket works,
//!   and `ffprobe` over HTTPS (self-signed certificate made by `openssl`)
//!   still reads the stream;
//! * idle connections from one address are capped (the excess closed at
//!   once), and a full pool of idle strangers makes room for a viewer by
//!   closing the oldest;
//! * wrong tokens → 401 five times, then 429 with Retry-After, even for the
//!   right token from that peer; the global bucket holds back everybody;
//!   `?token=` in the URL is refused even when right;
//! * a non-loopback bind without TLS is refused when the config is loaded,
//!   by the daemon at start and by the server itself.
//!
//! Run: `cargo test --all-features --test it video_attack:: -- --nocapture`
//! (prints the daemon's descriptors during the flood).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use latchd::board::frames::FrameRing;
use latchd::board::sim::camera::{SimCamera, SimCameraConfig};
use latchd::video::{Caps, FailureLimits, StreamConfig, VideoServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::daemon::{first_start, Daemon, ADMIN_CODE};
use crate::common::ports::free_port;
use crate::common::shared::shared_dir;

const TOKEN: &str = "0123456789abcdef-attack-token";

/// Raise this process's soft descriptor limit to its hard limit (the flood
/// holds 2,000 sockets here).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= 4096,
        "this test needs 4096 descriptors (hard limit {})",
        lim.rlim_max
    );
}

/// A self-signed P-256 certificate for 127.0.0.1 made by `openssl`; the
/// key is 0600 as latchd requires.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("video.crt");
    let key = dir.join("video.key");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=latchd test", "-addext"])
        .args(["subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key)
}

fn token_file(dir: &Path) -> PathBuf {
    let p = dir.join("video.token");
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&p)
        .unwrap()
        .write_all(format!("{TOKEN}\n").as_bytes())
        .unwrap();
    p
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

fn lo(a: u8, b: u8) -> IpAddr {
    IpAddr::from([127, 0, a, b])
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn two_thousand_idle_connections_leave_the_daemon_and_a_tls_viewer_working() {
    raise_nofile();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let token = token_file(dir.path());
    let port = free_port();
    let config = dir.path().join("latchd.toml");
    std::fs::write(
        &config,
        format!(
            "[video]\nenabled = true\nbind = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n\
             tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            token.display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    // systemd's default soft limit for a service: what the lock really has.
    let wrapper = ["prlimit", "--nofile=1024:1024", "--"].map(String::from);
    let state = dir.path().join("state");
    let d = Daemon::start_wrapped(&wrapper, &state, &["--config", config.to_str().unwrap()]);
    first_start(&d);
    let baseline = open_fds(d.pid());

    // The flood: 100 addresses × 20 idle connections, held, never a byte.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let held: Vec<TcpStream> = rt.block_on(async {
        let mut tasks = Vec::new();
        for a in 1..=100u8 {
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..20 {
                    // Without the caps a connect may sit in a full backlog:
                    // bounded so the test reports instead of hanging.
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(Duration::from_secs(3), connect_from(lo(1, a), addr))
                            .await
                    {
                        mine.push(s);
                    }
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    println!("flood: {} of 2000 idle connections opened", held.len());
    assert!(held.len() >= 1000, "the flood could not even connect");

    // An unlock over the control socket still works.
    d.press(&format!("{ADMIN_CODE}✓"));
    d.settle();
    assert_eq!(d.status()["sim"]["bolt"], "retracted", "{}", d.log_text());

    // A real viewer over HTTPS, checking the certificate, still gets frames.
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-tls_verify", "1", "-ca_file"])
        .arg(&cert)
        .args(["-headers", &format!("Authorization: Bearer {TOKEN}\r\n")])
        .args([
            "-f",
            "mjpeg",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "csv=p=0"])
        .arg(format!("https://127.0.0.1:{port}/stream.mjpg"))
        .output()
        .expect("ffprobe (Debian package ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "mjpeg,640,480");

    // The daemon's descriptors stayed bounded while the flood is held.
    let during = open_fds(d.pid());
    println!(
        "daemon descriptors: {baseline} before the flood, {during} with {} idle connections held (limit 1024)",
        held.len()
    );
    assert!(
        during <= baseline + 64 + 8,
        "descriptors grew from {baseline} to {during}"
    );
    drop(held);
    let log = d.log_text();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(log.contains("video connection closed at once"), "{log}");
    assert!(d.sigterm().success());
}

struct Rig {
    addr: SocketAddr,
    _camera: SimCamera,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn rig(cfg: StreamConfig) -> Rig {
    let mut cam = SimCameraConfig::new(160, 120);
    cam.fps = 10;
    cam.people.insert(1, shared_dir().join("faces/obama/1.jpg"));
    let ring = FrameRing::new();
    let camera = SimCamera::start(&cam, ring.clone()).expect("sim camera");
    camera.show_person(Some(1)).expect("person 1");
    let (_tx, battery) = tokio::sync::watch::channel(Some(80));
    let server = VideoServer::bind(&cfg, ring, battery).await.expect("bind");
    let addr = server.local_addr().expect("addr");
    Rig {
        addr,
        _camera: camera,
        server: tokio::spawn(server.run()),
    }
}

fn loopback_config() -> StreamConfig {
    let mut cfg = StreamConfig::new(TOKEN);
    cfg.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg
}

/// Everything the server sends until it closes (bounded).
async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await;
    buf
}

/// One request from `from`; the status line and head.
async fn get_from(from: IpAddr, addr: SocketAddr, target: &str, auth: Option<&str>) -> String {
    let mut s = connect_from(from, addr).await.expect("connect");
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: lock\r\n{auth}\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_per_address_are_capped_and_the_oldest_make_room() {
    // Per address: 4 pending; the 5th to 10th are closed at once, before
    // any byte, while the first 4 wait for their head until the 408.
    let rig1 = rig(loopback_config()).await;
    let mut conns = Vec::new();
    for _ in 0..10 {
        conns.push(connect_from(lo(0, 2), rig1.addr).await.expect("connect"));
    }
    let mut answers = Vec::new();
    for c in &mut conns {
        answers.push(String::from_utf8_lossy(&read_all(c).await).into_owned());
    }
    for (i, a) in answers.iter().enumerate() {
        if i < 4 {
            assert!(a.starts_with("HTTP/1.1 408"), "connection {i}: {a:?}");
        } else {
            assert_eq!(a, "", "connection {i} is closed at once");
        }
    }
    drop(rig1);

    // Overall: 4 pending; 8 idle strangers from two addresses fill it, a
    // viewer arriving after them is served, the oldest idle ones closed.
    let mut cfg = loopback_config();
    cfg.caps = Caps {
        max_connections: 16,
        max_pending: 4,
        max_pending_per_peer: 4,
    };
    let rig2 = rig(cfg).await;
    let mut idle = Vec::new();
    for from in [lo(0, 2), lo(0, 3)] {
        for _ in 0..4 {
            idle.push(connect_from(from, rig2.addr).await.expect("connect"));
        }
    }
    let reply = get_from(lo(0, 4), rig2.addr, "/snapshot.jpg", Some(TOKEN)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // The first address's four were the oldest: closed without an answer.
    for c in &mut idle[..4] {
        assert_eq!(read_all(c).await, b"");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_get_429_with_retry_after_per_peer_and_overall() {
    let mut cfg = loopback_config();
    cfg.failure_limits = FailureLimits {
        per_peer_burst: 5,
        per_peer_every: Duration::from_secs(60),
        global_burst: 8,
        global_every: Duration::from_secs(60),
    };
    let rig = rig(cfg).await;
    let guesser = lo(0, 2);
    for i in 0..5 {
        let r = get_from(
            guesser,
            rig.addr,
            "/snapshot.jpg",
            Some("wrong-token-wrong-token"),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 401"), "guess {i}: {r}");
    }
    let r = get_from(
        guesser,
        rig.addr,
        "/snapshot.jpg",
        Some("wrong-token-wrong-token"),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 429"), "{r}");
    assert!(r.contains("Retry-After: 60\r\n"), "{r}");
    // The right token from that peer is not even compared now.
    let r = get_from(guesser, rig.addr, "/snapshot.jpg", Some(TOKEN)).await;
    assert!(r.starts_with("HTTP/1.1 429"), "{r}");
    // Another address is not held back by the guesser...
    let r = get_from(lo(0, 3), rig.addr, "/snapshot.jpg", Some(TOKEN)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // ...until all wrong tokens together reach the global burst (8).
    for from in [lo(0, 3), lo(0, 4), lo(0, 5)] {
        let r = get_from(from, rig.addr, "/snapshot.jpg", Some("another-wrong-token")).await;
        assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    }
    let r = get_from(lo(0, 6), rig.addr, "/snapshot.jpg", Some(TOKEN)).await;
    assert!(r.starts_with("HTTP/1.1 429"), "{r}");
    assert!(r.contains("Retry-After: "), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_in_the_url_is_refused_even_when_right() {
    let rig = rig(loopback_config()).await;
    let r = get_from(
        lo(0, 1),
        rig.addr,
        &format!("/snapshot.jpg?token={TOKEN}"),
        None,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    assert!(r.contains("?token= is not accepted"), "{r}");
    assert!(r.contains("WWW-Authenticate: Bearer"), "{r}");
    let r = get_from(lo(0, 1), rig.addr, "/snapshot.jpg", Some(TOKEN)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_port_serves_nothing_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let mut cfg = loopback_config();
    cfg.tls = Some(latchd::video::tls::load(&cert, &key).expect("tls"));
    let rig = rig(cfg).await;
    let mut s = TcpStream::connect(rig.addr).await.expect("connect");
    s.write_all(
        format!("GET /snapshot.jpg HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let reply = read_all(&mut s).await;
    assert!(
        !reply.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    // A key file others may read is refused.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = latchd::video::tls::load(&cert, &key)
        .unwrap_err()
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
}

#[tokio::test]
async fn plain_http_beyond_loopback_is_refused_at_config_load() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let (cert, key) = self_signed(dir.path());
    let path = dir.path().join("latchd.toml");
    for bind in [
        "0.0.0.0:8081",
        "192.0.2.1:8081",
        "[::]:8081",
        "[::ffff:127.0.0.1]:8081",
    ] {
        let text = format!(
            "[video]\nenabled = true\nbind = \"{bind}\"\ntoken_file = \"{}\"\n",
            token.display()
        );
        let err = latchd::config::Config::parse(&text, &path)
            .expect_err(bind)
            .to_string();
        assert!(err.contains("video.bind"), "{err}");
        assert!(
            err.contains("plain HTTP is refused beyond loopback"),
            "{err}"
        );
        // With both TLS files it is accepted.
        let with_tls = format!(
            "{text}tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            cert.display(),
            key.display()
        );
        latchd::config::Config::parse(&with_tls, &path).expect(bind);
    }
    // Loopback may stay plain.
    for bind in ["127.0.0.1:8081", "[::1]:8081"] {
        let text = format!("[video]\nenabled = true\nbind = \"{bind}\"\n");
        latchd::config::Config::parse(&text, &path).expect(bind);
    }

    // The daemon refuses to start with it, with the reason.
    std::fs::write(
        &path,
        format!(
            "[video]\nenabled = true\nbind = \"0.0.0.0:{}\"\ntoken_file = \"{}\"\n",
            free_port(),
            token.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latchd"))
        .args([
            "--headless",
            "--config",
            path.to_str().unwrap(),
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plain HTTP is refused beyond loopback"),
        "{err}"
    );

    // And the server itself, whoever builds its config.
    let mut cfg = StreamConfig::new(TOKEN);
    cfg.bind = SocketAddr::from(([0, 0, 0, 0], 0));
    let (_tx, battery) = tokio::sync::watch::channel(Some(80));
    let err = VideoServer::bind(&cfg, FrameRing::new(), battery)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("plain HTTP is refused beyond loopback"),
        "{err}"
    );
}
