#!/usr/bin/env python3
"""Write the seed inputs of every fuzz target to fuzz/seeds/<target>/.

Valid examples, a few per target, so libFuzzer starts from inputs that
reach deep into each parser (a whole handshake, a valid board file). The
files are committed; run this again after a wire format changes:

    python3 fuzz/seeds.py
"""
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent
REPO = ROOT.parent
OUT = ROOT / "seeds"


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# ── ZFM / R30x (src/biometrics/fingerprint/frame.rs) ──────────────────────
def zfm(pid, payload, address=0xFFFFFFFF):
    length = len(payload) + 2
    s = (pid + (length >> 8) + (length & 0xFF) + sum(payload)) & 0xFFFF
    return b"\xEF\x01" + struct.pack(">IBH", address, pid, length) + bytes(payload) + struct.pack(">H", s)


def ack(*payload):
    return zfm(0x07, list(payload))


def segments(*answers, before=b""):
    """A driver target's script: what the module sent before the first
    request, then one answer per request (see fuzz_targets/common/script.rs)."""
    out = bytes([len(before)]) + before
    for a in answers:
        assert len(a) < 0xFF
        out += bytes([len(a)]) + a
    return out


SYSPARA = ack(0, 0, 0, 0, 0, 0, 200, 0, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0, 3, 0, 6)  # capacity 200
INDEX_EMPTY = ack(0, *([0] * 32))
INDEX_SOME = ack(0, 0b1010_0001, *([0] * 31))

write("zfm_frame", "ack", b"\x00" + ack(0, 0, 3))
write("zfm_frame", "noise-power-on", b"\x03" + b"\x00\x55\xEF" + ack(0) + zfm(0x01, [0x1D]) + zfm(0x08, [1, 2, 3]))
write("zfm_frame", "syspara-split", b"\x04" + SYSPARA + INDEX_SOME)

# Driver targets: mode, op1, op2, arg, then the script. Mode: read size
# 64 (0x3f), Verify; ops: identify, occupied slots.
write("zfm_driver", "identify", bytes([0x3F, 0, 2, 5]) + segments(ack(0), SYSPARA, ack(0), ack(0), ack(0, 0, 5, 0, 180), INDEX_SOME))
# enrol two touches into slot 0, then count
write(
    "zfm_driver",
    "enroll",
    bytes([0x07, 1, 3, 0]) + segments(
        ack(0), SYSPARA, INDEX_EMPTY,
        ack(0), ack(0), ack(2), ack(0), ack(0), ack(0), ack(9), ack(0), ack(0, 0, 1),
    ),
)
# AdoptFactory: wrong password, factory 0 ok, SetPwd, VfyPwd, then delete and empty
write("zfm_driver", "adopt", bytes([0x40 | 0x10, 4, 5, 7]) + segments(ack(0x13), ack(0), ack(0), ack(0), SYSPARA, ack(0), ack(0)))
write("zfm_driver", "foreign", bytes([0x7F, 0, 0, 0]) + segments(ack(0x13), ack(0x13)))
# the module restarts during an enrolment (0x55, then "password required")
write(
    "zfm_driver",
    "reset-mid-enroll",
    bytes([0x01, 1, 0, 3]) + segments(ack(0), SYSPARA, INDEX_EMPTY, ack(0), b"\x55" + ack(0), ack(0x21), ack(0), ack(0)),
)
# a late answer waiting before the first request, then silence
write("zfm_driver", "late-then-silent", bytes([0x20, 3, 3, 0]) + segments(ack(0), SYSPARA, before=ack(0, 0, 7)))


# ── LPV/1 palm (src/biometrics/palm/frame.rs) ──────────────────────────────
def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def lpv(kind, cmd, seq, payload):
    body = bytes([kind, cmd, seq]) + struct.pack(">H", len(payload)) + bytes(payload)
    return b"\x5A\xA5" + body + struct.pack(">H", crc16(body))


def reply(cmd, seq, *payload):
    return lpv(0x02, cmd, seq, list(payload))


def note(cmd, seq, *payload):
    return lpv(0x03, cmd, seq, list(payload))


INFO = reply(0x01, 1, 0, 1, 0, 100, 0, 2, 3, 3, *b"fw1")

write("palm_frame", "reply", b"\x00" + INFO)
write("palm_frame", "notes-noise", b"\x05" + b"\x5A\x00" + note(0x10, 2, 1, 1, 3) + note(0x00, 0) + reply(0x14, 3, 0, 0, 2, 0, 1, 0, 7))

# mode: read size 128, 3 captures (mode % 3 == 2 → 3); identify, list
write("palm_driver", "identify-list", bytes([0x7F, 0, 2, 9]) + segments(INFO, reply(0x11, 2, 0, 0, 9, 0, 200), reply(0x14, 3, 0, 0, 2, 0, 1, 0, 7)))
# enrol id 4 with 3 captures, then status
write(
    "palm_driver",
    "enroll",
    bytes([0x02 + 3 * 5, 1, 5, 4]) + segments(
        INFO,
        note(0x10, 2, 1, 1, 3) + note(0x10, 2, 2, 1, 3) + note(0x10, 2, 3, 1)
        + note(0x10, 2, 1, 2, 3) + note(0x10, 2, 2, 2, 3) + note(0x10, 2, 3, 2)
        + note(0x10, 2, 1, 3, 3) + note(0x10, 2, 2, 3, 3) + reply(0x10, 2, 0),
        reply(0x02, 3, 0, 0),
    ),
)
write("palm_driver", "reset-and-stale", bytes([0x03, 0, 3, 1]) + segments(INFO, reply(0x11, 9, 0, 0, 1, 0, 1) + note(0x00, 0), reply(0x12, 3, 0)))
write("palm_driver", "silent-identify", bytes([0x10, 0, 0, 0]) + segments(INFO, note(0x11, 2, 1)))

# ── MQTT one-shot and challenge topic (src/remote) ────────────────────────
write("remote_oneshot", "challenge", "00112233445566778899aabbccddeeff\n")
write("remote_oneshot", "fresh-request", bytes([0x01, 0x01, 0x01]))
write("remote_oneshot", "bare-request", bytes([0x00, 0x01, 0x02]))
write("remote_oneshot", "envelope", bytes([0x03, 0x52, 0x01]) + bytes(16) + bytes([0x01, 0x03]))

# ── video HTTP head (src/video/http.rs) ────────────────────────────────────
write("http_head", "query", "GET /stream.mjpg?a=1&token=0123456789abcdef HTTP/1.1\r\nHost: lock\r\n\r\n")
write("http_head", "bearer", "GET /snapshot.jpg HTTP/1.0\r\nHost: lock\r\nAuthorization: Bearer 0123456789abcdef\r\nUser-Agent: ffmpeg\r\n\r\n")

# ── control socket (src/control.rs, docs/control-socket.md) ───────────────
for i, line in enumerate([
    '{"cmd":"press","keys":"123456✓"}',
    '{"cmd":"set","long":true}',
    '{"cmd":"battery","percent":15,"external":false}',
    '{"cmd":"face","person":null}',
    '{"cmd":"events","n":20}',
]):
    write("control_json", f"line{i}", line)

# ── latchd.toml and the board file (src/config.rs, board file) ────────────
write("config_files", "latchd.toml", b"\x00" + (REPO / "config/latchd.toml").read_bytes())
write("config_files", "board-example.toml", b"\x01" + (REPO / "config/board-example.toml").read_bytes())
write(
    "config_files",
    "secrets.toml",
    '\x00[lock]\nverification_code = "ABCDEFGHIJKLMNOPQRSTUVWX"\n[remote]\nenabled = true\nhost = "localhost"\ntls = false\nusername = "lock"\npassword = "correct-horse-battery"\n',
)

# Found in CI's run: masking one secret spelled another ("line 5, c[secret]").
write(
    "config_files",
    "masks-spell-a-secret.toml",
    '\x00[lock]\nverification_code = "c[secret]"\n[remote]\npassword = "olumn"\n!\n',
)

# ── store rows (src/store/fuzzing.rs; see the target for the byte format) ─
# user 1 admin; owner app key id 3 of admin 1 with a sealed 32-byte key;
# a lock_state row; an event.
user = bytes([0, 3, 0, 1, 0, 0, 0])
app_key = bytes([3, 3, 0, 3, 0, 3, 0, 1, 3]) + bytes(range(32)) + bytes([0, 0]) + b"\x05phone"
state = bytes([5, 1, 2]) + b"{}"
event = bytes([7, 3, 0, 1, 0, 3, 0, 5, 0]) + b"\x04boot" + b"\x0e{\"type\":\"boot\"}"
password = bytes([8, 4, 4, 1, 2, 3, 4])
write("store_rows", "owner", user + app_key + state + event + password)
write("store_rows", "moved-key", user + bytes([3, 3, 0, 3, 0, 3, 0, 1, 2, 32]) + bytes(32))
