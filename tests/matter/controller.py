"""Home Assistant's Matter controller, driven line by line by a test.

Starts python-matter-server (the Open Home Foundation server Home Assistant
talks to, with the CHIP controller from home-assistant-chip-core) as a
child process, connects to it with its own websocket client (the one Home
Assistant uses), and then answers one JSON command per stdin line with one
JSON reply per stdout line:

    {"id": 1, "cmd": "commission", "code": "34970112332"}
    {"id": 1, "ok": {"node_id": 1, "seconds": 4.2}}

Commands:
    commission {code, ble}                 commission with a manual or QR code,
                                           on the network, or also over BLE
                                           (needs --bluetooth-adapter)
    wifi {ssid, password}                  Wi-Fi credentials for BLE commissioning
    read {node, path}                      read "endpoint/cluster/attribute"
    write {node, path, value}
    invoke {node, endpoint, command, args, timed_ms, cluster}
                                           a command of `cluster` (default
                                           DoorLock), e.g. "UnlockDoor" with
                                           {"PINCode": "..."} (bytes as text,
                                           sent as UTF-8)
    wait_event {node, cluster, event, timeout, match}
                                           wait for (and consume) a node event
                                           received by the subscription
    wait_attribute {node, path, value, timeout}
                                           wait until the subscription reports
                                           the attribute with this value
    fabrics {node}                         the node's fabrics, as read back
    remove {node}                          remove the node (RemoveFabric)
    stop                                   stop the server and exit

The driver never decides a test's verdict: it reports what the controller
saw, errors included, and the test asserts.
"""

import argparse
import asyncio
import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from chip.clusters import Objects as Clusters
from matter_server.client import MatterClient
from matter_server.common.models import EventType


def free_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]



PR_SET_PDEATHSIG = 1


def die_with_parent():
    """In the forked server, before exec: SIGKILL when this script dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")

class Driver:
    def __init__(self, args):
        self.args = args
        self.server = None
        self.client = None
        self.session = None
        self.listen_task = None
        self.events = []
        self.event_added = asyncio.Event()

    async def start(self):
        storage = Path(self.args.storage)
        storage.mkdir(parents=True, exist_ok=True)
        paa = storage / "paa"
        paa.mkdir(exist_ok=True)
        # The server fetches PAA roots from the DCL unless it did within
        # the last day; this machine has no internet, and the test's node
        # carries rs-matter's development DAC, which chains to the CHIP
        # test PAA given here. A fresh `.version` says "fetched just now".
        for cert in self.args.paa:
            shutil.copy(cert, paa / Path(cert).name)
        (paa / ".version").write_text("1")
        port = free_port()
        log = open(storage / "matter-server.log", "ab")
        cmd = [
            sys.executable,
            "-m",
            "matter_server.server",
            "--storage-path",
            str(storage),
            "--port",
            str(port),
            "--listen-address",
            "::1",
            "--paa-root-cert-dir",
            str(paa),
            "--log-level",
            "info",
            "--log-level-sdk",
            self.args.sdk_log,
        ]
        if self.args.primary_interface:
            cmd += ["--primary-interface", self.args.primary_interface]
        if self.args.bluetooth_adapter is not None:
            cmd += ["--bluetooth-adapter", str(self.args.bluetooth_adapter)]
        # The server dies with this script even when the test kills it
        # (a panicking test drops the controller with SIGKILL, which this
        # script cannot catch): without it one server outlived a failed run.
        self.server = subprocess.Popen(
            cmd, stdout=log, stderr=log, preexec_fn=die_with_parent
        )
        self.session = aiohttp.ClientSession()
        url = f"ws://[::1]:{port}/ws"
        deadline = time.monotonic() + self.args.start_timeout
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(
                    f"matter-server exited with {self.server.returncode}; see {storage}/matter-server.log"
                )
            try:
                self.client = MatterClient(url, self.session)
                await self.client.connect()
                break
            except Exception:  # the server is still starting
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        ready = asyncio.Event()
        self.listen_task = asyncio.create_task(self.client.start_listening(ready))
        await asyncio.wait_for(ready.wait(), self.args.start_timeout)
        self.client.subscribe_events(self.on_event, EventType.NODE_EVENT)

    def on_event(self, _event, data):
        self.events.append(data)
        self.event_added.set()

    async def stop(self):
        if self.client is not None:
            await self.client.disconnect()
        if self.listen_task is not None:
            self.listen_task.cancel()
        if self.session is not None:
            await self.session.close()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                self.server.kill()

    # ----- commands -----

    async def cmd_commission(self, code, ble=False):
        started = time.monotonic()
        node = await self.client.commission_with_code(code, network_only=not ble)
        return {"node_id": node.node_id, "seconds": time.monotonic() - started}

    async def cmd_wifi(self, ssid, password):
        return await self.client.set_wifi_credentials(ssid, password)

    async def cmd_read(self, node, path):
        values = await self.client.read_attribute(node, path)
        return values.get(path)

    async def cmd_write(self, node, path, value):
        return await self.client.write_attribute(node, path, value)

    async def cmd_invoke(self, node, endpoint, command, args=None, timed_ms=None, cluster="DoorLock"):
        cls = getattr(getattr(Clusters, cluster).Commands, command)
        fields = {}
        for k, v in (args or {}).items():
            # PINs and credential data are octet strings.
            fields[k] = v.encode() if isinstance(v, str) and k in ("PINCode", "credentialData") else v
        if command == "SetCredential" and "credential" in fields:
            c = fields["credential"]
            fields["credential"] = Clusters.DoorLock.Structs.CredentialStruct(
                credentialType=c["credentialType"], credentialIndex=c["credentialIndex"]
            )
        if command in ("GetCredentialStatus", "ClearCredential") and isinstance(
            fields.get("credential"), dict
        ):
            c = fields["credential"]
            fields["credential"] = Clusters.DoorLock.Structs.CredentialStruct(
                credentialType=c["credentialType"], credentialIndex=c["credentialIndex"]
            )
        started = time.monotonic()
        result = await self.client.send_device_command(
            node, endpoint, cls(**fields), timed_request_timeout_ms=timed_ms
        )
        return {"result": jsonable(result), "seconds": time.monotonic() - started}

    async def cmd_wait_event(self, node, cluster, event, timeout=30, match=None):
        deadline = time.monotonic() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.node_id == node and e.cluster_id == cluster and e.event_id == event:
                    data = jsonable(e.data)
                    if match and any(data.get(k) != v for k, v in match.items()):
                        continue
                    del self.events[: i + 1]
                    return {"data": data, "event_number": e.event_number}
            self.event_added.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [(e.cluster_id, e.event_id, jsonable(e.data)) for e in self.events]
                raise TimeoutError(f"no event {cluster}/{event} in {timeout}s; pending: {seen}")
            try:
                await asyncio.wait_for(self.event_added.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def cmd_wait_attribute(self, node, path, value, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                current = self.client.get_node(node).get_attribute_value(
                    *[int(p) for p in path.split("/")]
                )
            except Exception:
                current = None
            if current == value:
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} is {current!r}, not {value!r}, after {timeout}s")
            await asyncio.sleep(0.1)

    async def cmd_fabrics(self, node):
        fabrics = await self.client.get_matter_fabrics(node)
        return [jsonable(f) for f in fabrics]

    async def cmd_remove(self, node):
        await self.client.remove_node(node)
        return None


def jsonable(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if hasattr(v, "__dataclass_fields__"):
        return {k: jsonable(getattr(v, k)) for k in v.__dataclass_fields__}
    if hasattr(v, "value"):  # enums
        return v.value
    return str(v)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--storage", required=True)
    p.add_argument("--paa", action="append", default=[])
    p.add_argument("--primary-interface")
    p.add_argument("--sdk-log", default="error")
    p.add_argument("--bluetooth-adapter", type=int)
    # Seconds the server may take to start (minutes in an emulated VM).
    p.add_argument("--start-timeout", type=float, default=60)
    args = p.parse_args()
    driver = Driver(args)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    try:
        await driver.start()
        reply({"ready": True, "pid": os.getpid()})
        while line := await reader.readline():
            req = json.loads(line)
            rid, cmd = req.pop("id", None), req.pop("cmd")
            if cmd == "stop":
                reply({"id": rid, "ok": None})
                break
            try:
                result = await getattr(driver, "cmd_" + cmd)(**req)
                reply({"id": rid, "ok": result})
            except Exception as e:  # reported to the test, which decides
                reply({"id": rid, "error": f"{type(e).__name__}: {e}"})
    finally:
        await driver.stop()


if __name__ == "__main__":
    asyncio.run(main())
