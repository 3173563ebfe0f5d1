#!/usr/bin/env python3
"""The peers latchd is compared with by scripts/bench-peers.sh: what a lock
maker would otherwise use. One figure per run, printed as

    peer-figure NAME cpu_ms=... wall_ms=... n=... [extrapolated]

with the medians over n single runs of the process's CPU time and of
wall-clock time, the same way benches/peers.rs measures latchd.

    peers.py face FRAME.png       OpenCV: FaceDetectorYN (YuNet, 320x320
                                  letterbox) + alignCrop + MobileFaceNet (cv2.dnn)
    peers.py detect FRAME.png     FaceDetectorYN alone, 320x320 letterbox
    peers.py detect-own FRAME.png FaceDetectorYN alone at the frame's own size
    peers.py embed CROP.png       MobileFaceNet alone on the aligned crop
    peers.py antipeep DIGITS      per-code Argon2id (argon2-cffi defaults):
                                  every window of the input against every code
    peers.py store-load DB        Python's sqlite3 reading what Store::load reads

Everything runs on one thread (cv2.setNumThreads(1)), except Argon2id,
whose library default is parallelism 4: its CPU time counts every lane.

The anti-peep check of the naive store costs windows x codes Argon2id
verifications (6250 for 32 digits, minutes per check), so by default it
times PEER_ARGON2_SAMPLES verifications and multiplies the median by that
count ("extrapolated"); PEER_ARGON2_FULL=1 runs whole checks instead.
"""
import json
import os
import sqlite3
import statistics
import sys
import time

MODELS = os.path.join(
    os.environ.get(
        "LATCHD_SHARED",
        os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared"),
    ),
    "models",
)
DETECTOR = os.path.join(MODELS, "yunet_n_320_320.onnx")
EMBEDDER = os.path.join(MODELS, "mobilefacenet.onnx")
# latchd's defaults (biometrics/face/detect.rs).
SCORE_THRESHOLD = 0.6
NMS_IOU = 0.3
SIDE = 320


def report(name, cpu, wall, note=""):
    print(
        f"peer-figure {name} cpu_ms={statistics.median(cpu):.6f} "
        f"wall_ms={statistics.median(wall):.6f} n={len(cpu)}{note}",
        flush=True,
    )


def measure(name, n, f):
    for _ in range(min(3, n)):
        f()
    cpu, wall = [], []
    for _ in range(n):
        c0, w0 = time.process_time_ns(), time.perf_counter_ns()
        f()
        c1, w1 = time.process_time_ns(), time.perf_counter_ns()
        cpu.append((c1 - c0) / 1e6)
        wall.append((w1 - w0) / 1e6)
    report(name, cpu, wall)


def opencv():
    import cv2

    cv2.setNumThreads(1)
    return cv2


def detector(cv2, size=(SIDE, SIDE)):
    return cv2.FaceDetectorYN.create(DETECTOR, "", size, SCORE_THRESHOLD, NMS_IOU, 5000)


def letterbox(cv2, frame):
    """The frame scaled into SIDE x SIDE, top-left, black elsewhere (what
    latchd's detector does); returns the canvas and the scale."""
    h, w = frame.shape[:2]
    scale = min(SIDE / w, SIDE / h)
    nw, nh = round(w * scale), round(h * scale)
    if (nw, nh) != (w, h):
        frame = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas = cv2.copyMakeBorder(frame, 0, SIDE - nh, 0, SIDE - nw, cv2.BORDER_CONSTANT, value=0)
    return canvas, scale


def embed(cv2, net, crop):
    import numpy as np

    # RGB, (x - 127.5) / 127.5, as latchd's embedder (biometrics/face/embed.rs).
    blob = cv2.dnn.blobFromImage(crop, 1 / 127.5, (112, 112), (127.5, 127.5, 127.5), swapRB=True)
    net.setInput(blob)
    e = net.forward().flatten()
    return e / np.linalg.norm(e)


def face(path):
    cv2 = opencv()
    det = detector(cv2)
    # FaceRecognizerSF is OpenCV's aligner: a similarity transform from
    # the 5 landmarks to the ArcFace template, bilinear warp to 112x112.
    # Its own feature() preprocesses for SFace, so the embedding runs in
    # cv2.dnn with MobileFaceNet's preprocessing.
    aligner = cv2.FaceRecognizerSF.create(EMBEDDER, "")
    net = cv2.dnn.readNetFromONNX(EMBEDDER)
    frame = cv2.imread(path)

    def observe():
        canvas, scale = letterbox(cv2, frame)
        _, faces = det.detect(canvas)
        out = []
        if faces is None:
            return out
        faces[:, :14] /= scale
        for f in faces:
            out.append(embed(cv2, net, aligner.alignCrop(frame, f)))
        return out

    assert len(observe()) == 1, "the bench frame must show one face"
    measure("face", 60, observe)


def detect(path, own_size):
    cv2 = opencv()
    frame = cv2.imread(path)
    if own_size:
        h, w = frame.shape[:2]
        det = detector(cv2, (w, h))
        run = lambda: det.detect(frame)
    else:
        det = detector(cv2)
        run = lambda: det.detect(letterbox(cv2, frame)[0])
    _, faces = run()
    assert faces is not None and len(faces) == 1, "the bench frame must show one face"
    measure("detect_own" if own_size else "detect", 80, run)


def embed_only(path):
    cv2 = opencv()
    net = cv2.dnn.readNetFromONNX(EMBEDDER)
    crop = cv2.imread(path)
    measure("embed", 80, lambda: embed(cv2, net, crop))


def windows(n):
    """latchd's anti-peep windows (core/passcode.rs): lengths 10..6,
    longest first, then earliest."""
    return [(s, l) for l in range(min(10, n), 5, -1) for s in range(n - l + 1)]


def antipeep(digits):
    from argon2 import PasswordHasher
    from argon2.exceptions import VerifyMismatchError

    ph = PasswordHasher()  # the library's defaults
    # The codes and the input of benches/peers.rs (and benches/engine.rs).
    codes = ["%06d" % (246001 + i * 7919) for i in range(50)]
    full = os.environ.get("PEER_ARGON2_FULL") == "1"
    samples = int(os.environ.get("PEER_ARGON2_SAMPLES", "12"))
    # Hashing is as slow as verifying: a sampled run hashes only the codes
    # it verifies against (every code costs the same to check).
    hashes = [ph.hash(c) for c in (codes if full else codes[: min(samples, len(codes))])]
    typed = "".join(str((i * 7 + 3) % 10) for i in range(digits))
    wins = [typed[s : s + l] for s, l in windows(digits)]
    assert not any(w in codes for w in wins), "the input must match no code"

    def verify(h, w):
        try:
            return ph.verify(h, w)
        except VerifyMismatchError:
            return False

    def check():
        for w in wins:
            for h in hashes:
                if verify(h, w):
                    return h
        return None

    name = f"antipeep{digits}"
    if full:
        measure(name, int(os.environ.get("PEER_ARGON2_CHECKS", "1")), check)
        return
    verify(hashes[0], wins[0])  # warm-up
    cpu, wall = [], []
    for i in range(samples):
        h, w = hashes[i % len(hashes)], wins[i % len(wins)]
        c0, w0 = time.process_time_ns(), time.perf_counter_ns()
        verify(h, w)
        c1, w1 = time.process_time_ns(), time.perf_counter_ns()
        cpu.append((c1 - c0) / 1e6)
        wall.append((w1 - w0) / 1e6)
    count = len(wins) * len(codes)
    report(
        name,
        [c * count for c in cpu],
        [x * count for x in wall],
        f" extrapolated verifications={count}",
    )


def store_load(db):
    # Read-only, like a second reader of latchd's WAL database.
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)

    def state(name):
        row = con.execute("SELECT value FROM lock_state WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def load():
        users = [
            {"number": n, "role": r, "valid_from": f, "valid_until": u}
            for n, r, f, u in con.execute(
                "SELECT number, role, valid_from, valid_until FROM users ORDER BY number"
            )
        ]
        creds = [
            {"id": i, "user": u, "kind": k, "secret_kind": sk, "slot": sl, "secret": bytes(s or b"")}
            for i, u, k, sk, sl, s in con.execute(
                "SELECT id, user, kind, secret_kind, slot, sealed FROM credentials ORDER BY id"
            )
        ]
        temp = con.execute(
            "SELECT id, sealed_mac, valid_from, valid_until, one_time FROM temp_passcodes ORDER BY id"
        ).fetchall()
        keys = con.execute(
            "SELECT id, role, admin, sealed_public_key, valid_from, valid_until, label "
            "FROM app_keys ORDER BY id"
        ).fetchall()
        invites = con.execute(
            "SELECT slot, code_id, sealed_secret, valid_from, valid_until, code_expires_at, attempts "
            "FROM guest_invites ORDER BY slot"
        ).fetchall()
        return (
            state("handing"),
            users,
            creds,
            state("settings"),
            state("lockout"),
            temp,
            keys,
            invites,
        )

    assert len(load()[1]) == 50, "run `peers store-make DIR` first"
    measure("store_load", 300, load)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "face":
        face(args[0])
    elif cmd == "detect":
        detect(args[0], own_size=False)
    elif cmd == "detect-own":
        detect(args[0], own_size=True)
    elif cmd == "embed":
        embed_only(args[0])
    elif cmd == "antipeep":
        antipeep(int(args[0]))
    elif cmd == "store-load":
        store_load(args[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
