//! The live outdoor video: MJPEG over a small HTTP/1.1 server, in HTTPS
//! (rustls) whenever it listens beyond loopback.
//!
//! ```text
//!  accept ─► admission (admission.rs): too many connections, or too many
//!         │  not yet authenticated from this peer ─► closed at once, no task;
//!         │  too many not yet authenticated overall ─► the oldest is evicted
//!         ▼
//!  [TLS handshake] + request head (≤ 8 KiB) within 5 s, else 408 / closed
//!         │ parse request line + headers
//!         │ ?token= in the URL ────────────────────────► 401 (never accepted)
//!         │ no Authorization: Bearer ──────────────────► 401
//!         │ too many wrong tokens (limit.rs) ──────────► 429 + Retry-After (not compared)
//!         │ wrong token (constant time) ───────────────► 401, counted
//!         │ ── authenticated: no longer "pending" ──
//!         │ battery < 20 %? ───────────────────────────► 503 (B-10.2)
//!         │ too many viewers? ─────────────────────────► 503
//!         ▼
//!  ◄── 200 multipart/x-mixed-replace; boundary=latchdframe
//!  ◄── --latchdframe / image/jpeg / Content-Length / JPEG   (per ring frame)
//!       a client slower than the camera skips frames (see `ring`);
//!       a client that stops reading for 10 s is dropped;
//!       the stream ends when the battery falls below the limit.
//!
//!  GET /snapshot.jpg  ──► the newest frame as one JPEG (same checks)
//! ```
//!
//! Why MJPEG and not RTSP, and why `?token=` is refused: see
//! `docs/video.md`.
//!
//! The server answers `GET` only, one request per connection
//! (`Connection: close`), and never echoes request data into a response.
//! The token is compared in constant time (SHA-256 of both sides, then
//! `subtle`), so neither its bytes nor its length leak through timing.
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::admission::{Admission, Caps, Refused, Ticket};
use super::limit::{FailureLimiter, FailureLimits};
use crate::board::frames::{Frame, FrameRing};

/// Largest request head accepted (request line + headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to finish the TLS handshake and send its request
/// head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time one frame may take to be written before the viewer is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a refused client to stop sending before closing.
pub const LINGER: Duration = Duration::from_secs(1);
/// Most bytes read and dropped from a refused client.
const LINGER_BYTES: usize = 64 * 1024;
/// Multipart boundary between frames.
pub const BOUNDARY: &str = "latchdframe";
/// Shortest token accepted in the configuration.
pub const MIN_TOKEN_LEN: usize = 16;

/// The `[video]` settings.
#[derive(Clone)]
pub struct StreamConfig {
    /// Where to listen; loopback by default. Beyond loopback `tls` is
    /// required.
    pub bind: SocketAddr,
    /// HTTPS: required on a non-loopback `bind`, optional on loopback.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The bearer token a viewer must present.
    pub token: Zeroizing<String>,
    /// B-10.2: below this battery level video is refused.
    pub min_battery_percent: u8,
    /// Viewers served at once; more get 503.
    pub max_viewers: usize,
    /// Time `/snapshot.jpg` waits for a first frame.
    pub frame_wait: Duration,
    /// Connections held at once, and not yet authenticated.
    pub caps: Caps,
    /// Wrong tokens allowed per peer and overall before 429.
    pub failure_limits: FailureLimits,
}

impl std::fmt::Debug for StreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConfig")
            .field("bind", &self.bind)
            .field("tls", &self.tls.is_some())
            .field("token", &"<redacted>")
            .field("min_battery_percent", &self.min_battery_percent)
            .field("max_viewers", &self.max_viewers)
            .field("caps", &self.caps)
            .field("failure_limits", &self.failure_limits)
            .finish()
    }
}

impl StreamConfig {
    /// Loopback port 8081 in plain HTTP, 20 % battery floor, 4 viewers,
    /// the default caps and failure limits.
    pub fn new(token: impl Into<String>) -> Self {
        StreamConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
            tls: None,
            token: Zeroizing::new(token.into()),
            min_battery_percent: 20,
            max_viewers: 4,
            frame_wait: Duration::from_secs(2),
            caps: Caps::default(),
            failure_limits: FailureLimits::default(),
        }
    }

    /// Refuse settings that would serve video to anyone.
    pub fn validate(&self) -> Result<(), VideoError> {
        let t = self.token.as_str();
        if t.len() < MIN_TOKEN_LEN {
            return Err(VideoError::Config(format!(
                "video.token must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 16`)"
            )));
        }
        // URL-safe characters only, so `?token=` needs no percent-decoding.
        if !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(VideoError::Config(
                "video.token may contain only A-Z a-z 0-9 - . _ ~".into(),
            ));
        }
        if self.max_viewers == 0 {
            return Err(VideoError::Config(
                "video.max_viewers must be at least 1".into(),
            ));
        }
        if self.min_battery_percent > 100 {
            return Err(VideoError::Config(
                "video.min_battery_percent must be 0-100".into(),
            ));
        }
        if let Err(why) = check_plain_bind(self.bind, self.tls.is_some()) {
            return Err(VideoError::Config(why.into()));
        }
        let c = self.caps;
        if c.max_pending == 0 || c.max_pending_per_peer == 0 {
            return Err(VideoError::Config(
                "video.max_pending and video.max_pending_per_peer must be at least 1".into(),
            ));
        }
        if c.max_connections < c.max_pending + self.max_viewers {
            return Err(VideoError::Config(format!(
                "video.max_connections ({}) must be at least max_pending + max_viewers ({}), \
                 so viewers keep room while strangers wait",
                c.max_connections,
                c.max_pending + self.max_viewers
            )));
        }
        Ok(())
    }
}

/// Plain HTTP only on loopback: anywhere else the token and the picture
/// would cross a network in clear.
pub fn check_plain_bind(bind: SocketAddr, tls: bool) -> Result<(), &'static str> {
    // An IPv4-mapped IPv6 loopback (::ffff:127.0.0.1) is not `is_loopback`
    // and so needs TLS: strict, never loose.
    if tls || bind.ip().is_loopback() {
        Ok(())
    } else {
        Err(
            "plain HTTP is refused beyond loopback: set video.tls_cert_file and \
             video.tls_key_file (HTTPS), or bind 127.0.0.1 and publish the stream \
             through a TLS proxy or the app's tunnel",
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("video configuration: {0}")]
    Config(String),
    #[error("cannot listen for video on {addr}: {source}; check that the port is free")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A bound video server; [`VideoServer::run`] serves until dropped.
pub struct VideoServer {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for VideoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoServer")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

struct Shared {
    token_hash: [u8; 32],
    /// `Some`: every connection is HTTPS.
    tls: Option<tokio_rustls::TlsAcceptor>,
    min_battery: u8,
    frame_wait: Duration,
    viewers: Semaphore,
    /// Connections held and not yet authenticated (the caps).
    admission: Arc<Admission>,
    /// Wrong tokens per peer and overall.
    failures: Mutex<FailureLimiter>,
    /// Zero of the limiter's monotonic clock.
    started: Instant,
    ring: FrameRing,
    battery: watch::Receiver<Option<u8>>,
}

impl VideoServer {
    /// Check `cfg` and bind. `battery` is the lock's battery percent
    /// (`None` until first read: video is refused until it is known).
    pub async fn bind(
        cfg: &StreamConfig,
        ring: FrameRing,
        battery: watch::Receiver<Option<u8>>,
    ) -> Result<Self, VideoError> {
        cfg.validate()?;
        let listener = TcpListener::bind(cfg.bind)
            .await
            .map_err(|source| VideoError::Bind {
                addr: cfg.bind,
                source,
            })?;
        let started = Instant::now();
        Ok(VideoServer {
            listener,
            shared: Arc::new(Shared {
                token_hash: Sha256::digest(cfg.token.as_bytes()).into(),
                tls: cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from),
                min_battery: cfg.min_battery_percent,
                frame_wait: cfg.frame_wait,
                viewers: Semaphore::new(cfg.max_viewers),
                admission: Admission::new(cfg.caps),
                failures: Mutex::new(FailureLimiter::new(
                    cfg.failure_limits,
                    crate::core::time::Instant::from_millis(0),
                )),
                started,
                ring,
                battery,
            }),
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept and serve connections. A socket the caps do not admit is
    /// closed here, at once, without a task; an admitted one gets a task
    /// that holds its place until it ends.
    pub async fn run(self) {
        let mut refused = 0u64;
        loop {
            match self.listener.accept().await {
                Ok((sock, peer)) => {
                    let ticket = match self.shared.admission.admit(peer.ip()) {
                        Ok(t) => t,
                        Err(why) => {
                            // Dropping the socket closes it. Counted, and
                            // logged once per 1,000 so a flood cannot fill
                            // the journal.
                            refused += 1;
                            if refused % 1000 == 1 {
                                tracing::warn!(
                                    %peer,
                                    refused,
                                    "video connection closed at once: {}",
                                    match why {
                                        Refused::Full => "too many connections",
                                        Refused::PeerPending =>
                                            "too many unauthenticated connections from this address",
                                    }
                                );
                            }
                            continue;
                        }
                    };
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve(sock, peer.ip(), &shared, ticket).await {
                            tracing::debug!(%peer, "video connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("video accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// What a request asks for, once parsed. Every field borrows from the
/// head; nothing is decoded or copied.
#[doc(hidden)] // public only for the fuzzer (fuzz/fuzz_targets/http_head.rs)
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query_token: Option<&'a str>,
    pub bearer: Option<&'a str>,
}

#[doc(hidden)] // public only for the fuzzer
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    TooLarge,
    Malformed(&'static str),
}

/// Parse a request head (everything before the blank line).
#[doc(hidden)] // public only for the fuzzer
pub fn parse_head(head: &[u8]) -> Result<Request<'_>, HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    // RFC 9112 §2.2: a bare CR (or LF) makes the request invalid. Read
    // leniently, a proxy in front and this server would split the same
    // bytes into different headers (found by the http_head fuzzer: a
    // bare CR let one header line run into the next). NUL is never valid.
    if !well_terminated(head) {
        return Err(HeadError::Malformed("bare CR or LF, or NUL"));
    }
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(HeadError::Malformed("empty"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("request line"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Malformed("HTTP version"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let query_token = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v)
    });
    let mut bearer = None;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("header line"))?;
        if name.eq_ignore_ascii_case("authorization") {
            let value = value.trim();
            if let Some((scheme, cred)) = value.split_once(' ') {
                if scheme.eq_ignore_ascii_case("bearer") {
                    bearer = Some(cred.trim());
                }
            }
        }
    }
    Ok(Request {
        method,
        path,
        query_token,
        bearer,
    })
}

/// Read until the blank line ending the head, at most [`MAX_HEAD`] bytes.
async fn read_head<S: AsyncRead + Unpin>(sock: &mut S) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_blank_line(&buf) {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let want = chunk.len().min(MAX_HEAD - buf.len());
        let n = sock
            .read(&mut chunk[..want])
            .await
            .map_err(|_| HeadError::Malformed("read"))?;
        if n == 0 {
            return Err(HeadError::Malformed("closed before the end of the head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Every CR is followed by LF and every LF follows a CR; no NUL.
fn well_terminated(head: &[u8]) -> bool {
    head.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => head.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && head[i - 1] == b'\r',
        0 => false,
        _ => true,
    })
}

/// Where the head ends: the offset of the first `\r\n\r\n`.
#[doc(hidden)] // public only for the fuzzer
pub fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Send a short plain-text answer and close. After the FIN, whatever the
/// client is still sending (the rest of an oversized head) is read and
/// dropped for a moment, bounded in bytes and time: closing a socket with
/// unread data makes the kernel send a reset, which can destroy the answer
/// before the client reads it ("lingering close").
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    sock: &mut S,
    status: &str,
    extra: &str,
    body: &str,
) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    write_timed(sock, msg.as_bytes()).await?;
    sock.shutdown().await?;
    let mut drained = 0usize;
    let mut chunk = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while drained < LINGER_BYTES {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
    Ok(())
}

/// The outcome of the token check.
#[derive(Debug, PartialEq, Eq)]
enum Auth {
    Ok,
    /// No `Authorization: Bearer`.
    Missing,
    /// `?token=` in the URL: refused whatever its value (docs/video.md).
    InUrl,
    /// Too many wrong tokens: not compared; retry after this long.
    Limited(Duration),
    Wrong,
}

impl Shared {
    fn now(&self) -> crate::core::time::Instant {
        crate::core::time::Instant::from_millis(self.started.elapsed().as_millis() as u64)
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, FailureLimiter> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authorise(&self, req: &Request<'_>, peer: IpAddr) -> Auth {
        if req.query_token.is_some() {
            return Auth::InUrl;
        }
        let Some(given) = req.bearer else {
            return Auth::Missing;
        };
        let now = self.now();
        if let Err(wait) = self.failures().before(peer, now) {
            return Auth::Limited(wait);
        }
        let h: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        if bool::from(h.ct_eq(&self.token_hash)) {
            Auth::Ok
        } else {
            self.failures().failed(peer, now);
            Auth::Wrong
        }
    }

    /// `Some(reason)` when B-10.2 forbids video now.
    fn battery_refusal(&self) -> Option<String> {
        match *self.battery.borrow() {
            None => Some("video unavailable: battery level not known yet\n".into()),
            Some(p) if p < self.min_battery => Some(format!(
                "video unavailable: battery at {p} %, below {} %; charge the lock\n",
                self.min_battery
            )),
            Some(_) => None,
        }
    }
}

/// One admitted connection: the TLS handshake (when configured) and the
/// request head share one [`HEAD_TIMEOUT`]; until the token is right the
/// connection may be evicted by a newer one (admission.rs).
async fn serve(
    sock: TcpStream,
    peer: IpAddr,
    shared: &Shared,
    ticket: Ticket,
) -> std::io::Result<()> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let Some(acceptor) = &shared.tls else {
        return serve_on(sock, peer, shared, ticket, deadline).await;
    };
    let tls = tokio::select! {
        biased;
        _ = ticket.evicted() => return Ok(()),
        r = tokio::time::timeout_at(deadline, acceptor.accept(sock)) => match r {
            // No TLS session, so no HTTP answer is possible: just close.
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
            Ok(r) => r?,
        },
    };
    serve_on(tls, peer, shared, ticket, deadline).await
}

/// What an authenticated request asks for.
enum Wants {
    Stream,
    Snapshot,
}

async fn serve_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    peer: IpAddr,
    shared: &Shared,
    mut ticket: Ticket,
    deadline: Instant,
) -> std::io::Result<()> {
    let wants = tokio::select! {
        biased;
        _ = ticket.evicted() => return Ok(()),
        r = authenticate(&mut sock, peer, shared, deadline) => r?,
    };
    // Refused and answered.
    let Some(wants) = wants else { return Ok(()) };
    ticket.authenticated();
    if let Some(reason) = shared.battery_refusal() {
        return respond(&mut sock, "503 Service Unavailable", "", &reason).await;
    }
    let Ok(_viewer) = shared.viewers.try_acquire() else {
        return respond(
            &mut sock,
            "503 Service Unavailable",
            "Retry-After: 10\r\n",
            "too many viewers; try again later\n",
        )
        .await;
    };
    match wants {
        Wants::Stream => serve_stream(sock, shared).await,
        Wants::Snapshot => serve_snapshot(sock, shared).await,
    }
}

/// Read and check the request up to the token. `None`: refused (the
/// answer is sent).
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    sock: &mut S,
    peer: IpAddr,
    shared: &Shared,
    deadline: Instant,
) -> std::io::Result<Option<Wants>> {
    let head = match tokio::time::timeout_at(deadline, read_head(sock)).await {
        Err(_) => {
            return respond(sock, "408 Request Timeout", "", "request head too slow\n")
                .await
                .map(|()| None)
        }
        Ok(Err(HeadError::TooLarge)) => {
            return respond(
                sock,
                "431 Request Header Fields Too Large",
                "",
                "request head too large\n",
            )
            .await
            .map(|()| None)
        }
        Ok(Err(HeadError::Malformed(what))) => {
            return respond(
                sock,
                "400 Bad Request",
                "",
                &format!("bad request: {what}\n"),
            )
            .await
            .map(|()| None)
        }
        Ok(Ok(h)) => h,
    };
    let req = match parse_head(&head) {
        Ok(r) => r,
        Err(HeadError::Malformed(what)) => {
            return respond(
                sock,
                "400 Bad Request",
                "",
                &format!("bad request: {what}\n"),
            )
            .await
            .map(|()| None)
        }
        Err(HeadError::TooLarge) => {
            return respond(sock, "431 Request Header Fields Too Large", "", "")
                .await
                .map(|()| None)
        }
    };
    if req.method != "GET" {
        return respond(
            sock,
            "405 Method Not Allowed",
            "Allow: GET\r\n",
            "GET only\n",
        )
        .await
        .map(|()| None);
    }
    let wants = match req.path {
        "/stream.mjpg" | "/" => Wants::Stream,
        "/snapshot.jpg" => Wants::Snapshot,
        _ => {
            return respond(
                sock,
                "404 Not Found",
                "",
                "try /stream.mjpg or /snapshot.jpg\n",
            )
            .await
            .map(|()| None)
        }
    };
    // Authentication before anything else, so the battery state is not
    // told to strangers.
    const CHALLENGE: &str = "WWW-Authenticate: Bearer realm=\"latchd video\"\r\n";
    let refusal = match shared.authorise(&req, peer) {
        Auth::Ok => return Ok(Some(wants)),
        Auth::Missing | Auth::Wrong => (
            "401 Unauthorized",
            CHALLENGE.to_owned(),
            "a valid token is needed: Authorization: Bearer <token>\n",
        ),
        Auth::InUrl => (
            "401 Unauthorized",
            CHALLENGE.to_owned(),
            "?token= is not accepted (URLs end up in proxy and browser logs); \
             send Authorization: Bearer <token>\n",
        ),
        Auth::Limited(wait) => {
            tracing::debug!(%peer, "video token check refused: too many wrong tokens");
            (
                "429 Too Many Requests",
                format!(
                    "Retry-After: {}\r\n",
                    wait.as_millis().div_ceil(1000).max(1)
                ),
                "too many wrong tokens; try again later\n",
            )
        }
    };
    let (status, extra, body) = refusal;
    respond(sock, status, &extra, body).await.map(|()| None)
}

/// The frame's JPEG, encoded on the blocking pool (it is cached in the
/// frame, so later viewers of the same frame pay nothing).
async fn jpeg_of(frame: &Arc<Frame>) -> Option<Arc<Frame>> {
    let f = frame.clone();
    let ok = tokio::task::spawn_blocking(move || match f.jpeg() {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(seq = f.seq, "frame not served: {e}");
            false
        }
    })
    .await
    .unwrap_or(false);
    ok.then(|| frame.clone())
}

async fn write_timed<S: AsyncWrite + Unpin>(sock: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, sock.write_all(bytes))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

async fn serve_snapshot<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut frames = shared.ring.subscribe();
    let frame = match shared.ring.latest() {
        Some(f) => Some(f),
        None => tokio::time::timeout(shared.frame_wait, frames.next())
            .await
            .ok()
            .flatten(),
    };
    let Some(frame) = frame else {
        return respond(
            &mut sock,
            "503 Service Unavailable",
            "",
            "the camera has no picture yet\n",
        )
        .await;
    };
    let Some(frame) = jpeg_of(&frame).await else {
        return respond(
            &mut sock,
            "500 Internal Server Error",
            "",
            "the camera's frame could not be encoded\n",
        )
        .await;
    };
    let Ok(jpeg) = frame.jpeg() else {
        return respond(
            &mut sock,
            "500 Internal Server Error",
            "",
            "encode failed\n",
        )
        .await;
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        jpeg.len()
    );
    write_timed(&mut sock, head.as_bytes()).await?;
    write_timed(&mut sock, &jpeg).await?;
    sock.shutdown().await
}

async fn serve_stream<S: AsyncWrite + Unpin>(mut sock: S, shared: &Shared) -> std::io::Result<()> {
    let mut frames = shared.ring.subscribe();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\nCache-Control: no-store\r\nPragma: no-cache\r\nConnection: close\r\n\r\n"
    );
    write_timed(&mut sock, head.as_bytes()).await?;
    // Start with the newest frame so a viewer sees a picture at once.
    let mut next = shared.ring.latest();
    loop {
        let frame = match next.take() {
            Some(f) => f,
            None => match frames.next().await {
                Some(f) => f,
                None => break,
            },
        };
        if shared.battery_refusal().is_some() {
            tracing::info!("video stream ended: battery below the video limit");
            break;
        }
        let Some(frame) = jpeg_of(&frame).await else {
            continue;
        };
        let Ok(jpeg) = frame.jpeg() else { continue };
        let part = format!(
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        );
        write_timed(&mut sock, part.as_bytes()).await?;
        write_timed(&mut sock, &jpeg).await?;
        write_timed(&mut sock, b"\r\n").await?;
    }
    sock.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query_and_bearer_tokens() {
        let r = parse_head(b"GET /stream.mjpg?a=1&token=abc HTTP/1.1\r\nHost: x").expect("ok");
        assert_eq!(r.path, "/stream.mjpg");
        assert_eq!(r.query_token, Some("abc"));
        assert_eq!(r.bearer, None);
        let r = parse_head(b"GET /snapshot.jpg HTTP/1.1\r\nauthorization:  Bearer  xyz \r\n")
            .expect("ok");
        assert_eq!(r.bearer, Some("xyz"));
    }

    #[test]
    fn refuses_malformed_heads() {
        for bad in [
            &b"GET /\r\n"[..],
            b"GET / HTTP/2\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nno colon here",
            b"GET / HTTP/1.1\r\n\xff: x",
            // Found by fuzz/fuzz_targets/http_head.rs: a bare CR (or LF)
            // joined two header lines into one bearer token.
            b"GET /snapshot.jpg HTTP/1.0\r\nAuthorization: Bearer 0123456789abcdef\r0User-Agent: x",
            b"GET /snapshot.jpg HTTP/1.1\r\nHost: a\nAuthorization: Bearer 0123456789abcdef",
            b"GET /snapshot.jpg HTTP/1.1\r\nHost: a\r\nX: \0",
            b"GET / HTTP/1.1\r",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn config_refuses_weak_tokens() {
        assert!(StreamConfig::new("short").validate().is_err());
        assert!(StreamConfig::new("0123456789abcdef0123/")
            .validate()
            .is_err());
        assert!(StreamConfig::new("0123456789abcdef").validate().is_ok());
    }
}
