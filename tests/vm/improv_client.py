"""Home Assistant's Improv client against the real latchd, in the VM rig.

Run by tests/vm/vm_ble.rs (`guest_daemon_improv_client`) with the venv of
tests/vm/improv-venv.sh, on the central controller (hci1) while latchd
advertises on hci0. Everything that talks Improv here is the library's own:
discovery is `improv_ble_client.device_filter` over bleak's advertisement
data, commands go through `ImprovBLEClient`, as in Home Assistant's
`improv_ble` integration. This script only sequences the steps and prints
what it saw, one `KEY value` line each, for the Rust side to check:

    ADV <state> <capabilities> filter=<bool>   the service data seen in a scan
    NEED_AUTHORIZATION <bool>
    CAPABILITIES <flags>
    DEVICE_INFO <firmware>|<version>|<hardware>|<device name>
    IDENTIFY sent
    WAIT_SET                                   then one line on stdin: SET is held
    SCAN <ssid>|<rssi>|<auth> ...
    STATE <name>                               state notifications while provisioning
    PROVISIONED redirect=<url or None>
    FIGURE discovery_to_provisioned_s <seconds>
    DONE

Usage: improv_client.py --adapter hci1 --name latchd-00BE --ssid home --psk PSK
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from improv_ble_client import (
    SERVICE_DATA_UUID,
    ImprovBLEClient,
    ImprovServiceData,
    device_filter,
)
from improv_ble_client.models import DisconnectReason
from improv_ble_client.protocol import State

# Only turns a hang into a failure with output; nothing is timed by it.
SCAN_DEADLINE_S = 120


def say(line: str) -> None:
    print(line, flush=True)


async def scan_for(
    adapter: str, name: str, want: State
) -> tuple[BLEDevice, AdvertisementData]:
    """Scan until the lock named `name` advertises Improv state `want`."""
    found: asyncio.Future[tuple[BLEDevice, AdvertisementData]] = (
        asyncio.get_running_loop().create_future()
    )
    last: list[bytes | None] = [None]

    def seen(device: BLEDevice, adv: AdvertisementData) -> None:
        if adv.local_name != name and device.name != name:
            return
        data = adv.service_data.get(SERVICE_DATA_UUID)
        if data != last[0]:
            last[0] = data
            if data is not None and len(data) == 6:
                sd = ImprovServiceData.from_bytes(data)
                say(
                    f"ADV {sd.state.name} {int(sd.capabilities)} "
                    f"filter={device_filter(adv)} raw={data.hex()}"
                )
            else:
                say(f"ADV none filter={device_filter(adv)} raw={data!r}")
        if data is not None and data[:1] == bytes([want]) and not found.done():
            found.set_result((device, adv))

    async with BleakScanner(detection_callback=seen, bluez={"adapter": adapter}):
        return await asyncio.wait_for(found, SCAN_DEADLINE_S)


async def disconnect(client: ImprovBLEClient) -> None:
    # What the client's own 90 s idle timer does (it has no public call):
    # the lock advertises again only once the central has left.
    await client._execute_disconnect(DisconnectReason.TIMEOUT)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--adapter", default="hci1")
    ap.add_argument("--name", required=True)
    ap.add_argument("--ssid", required=True)
    ap.add_argument("--psk", required=True)
    args = ap.parse_args()

    # Outside pairing mode: discovered by HA's filter, authorization needed.
    t0 = time.monotonic()
    device, adv = await scan_for(args.adapter, args.name, State.AUTHORIZATION_REQUIRED)
    say(f"DISCOVERED {device.address} filter={device_filter(adv)} uuids={adv.service_uuids}")
    client = ImprovBLEClient(device, adv)
    say(f"NEED_AUTHORIZATION {await client.need_authorization()}")
    say(f"CAPABILITIES {int(client.capabilities)}")
    info = await client.get_device_info()
    say(
        "DEVICE_INFO "
        + "|".join(
            s.decode()
            for s in (
                info.firmware_name,
                info.firmware_version,
                info.hardware_chip,
                info.device_name,
            )
        )
    )
    await client.identify()
    say("IDENTIFY sent")
    await disconnect(client)

    # The owner holds SET: the advertisement says authorized.
    say("WAIT_SET")
    if sys.stdin.readline().strip() != "go":
        say("ABORTED")
        return 1
    t_discovery = time.monotonic()
    device, adv = await scan_for(args.adapter, args.name, State.AUTHORIZED)
    say(f"DISCOVERED {device.address} filter={device_filter(adv)}")
    client = ImprovBLEClient(device, adv)
    say(f"NEED_AUTHORIZATION {await client.need_authorization()}")
    networks = await client.scan_wifi()
    say(
        "SCAN "
        + " ".join(
            f"{s.decode()}|{r.decode()}|{a.decode()}" for s, r, a in networks.networks
        )
    )
    url = await client.provision(
        args.ssid, args.psk, lambda state: say(f"STATE {state.name}")
    )
    t_provisioned = time.monotonic()
    say(f"PROVISIONED redirect={url}")
    say(f"FIGURE discovery_to_provisioned_s {t_provisioned - t_discovery:.2f}")
    await disconnect(client)

    # Provisioned: still advertised, and HA's filter no longer offers it.
    device, adv = await scan_for(args.adapter, args.name, State.PROVISIONED)
    say(f"AFTER filter={device_filter(adv)} total_s={time.monotonic() - t0:.1f}")
    say("DONE")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
