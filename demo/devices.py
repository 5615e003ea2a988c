"""`python -m demo.devices`: one simulated pump over OPC UA and one over Modbus TCP on loopback, fed by the
plant simulator at 1 Hz (the servers are plant.simulator_devices'; the demo itself serves its pumps from the
simulator, `manage.py simulate --opcua-device/--modbus-device`).

    python -m demo.devices --opcua-port 4840 --modbus-port 5020 [--opcua-tag P-102] [--modbus-tag P-103]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from plant.simulator import ROLES, PlantSimulator, SimAsset
from plant.simulator_devices import MODBUS_UNIT, feed, start_modbus_device, start_opcua_device


async def serve(
    opcua_port: int, modbus_port: int, opcua_tag: str = "P-101", modbus_tag: str = "P-101"
) -> None:
    """Run both devices, fed by the simulator at 1 Hz, until cancelled."""
    tags = dict.fromkeys([opcua_tag, modbus_tag])
    simulator = PlantSimulator(
        [SimAsset(tag, {role: f"{tag}.{role}" for role in ROLES}) for tag in tags], seed=0, origin=time.time()
    )
    # Each device serves the current sample from its first client on, never its start-up zeros.
    now = float(int(time.time()))
    frame = simulator.signals(now, now + 1.0)
    first = {tag: {role: float(series[0]) for role, series in frame.values[tag].items()} for tag in tags}
    opcua = await start_opcua_device(opcua_port, opcua_tag, initial=first[opcua_tag], initial_ts=now)
    modbus = await start_modbus_device(modbus_port, modbus_tag, initial=first[modbus_tag])
    print(f"OPC UA {opcua_tag} at {opcua.endpoint} (node ids {opcua.node_id('<role>')})", flush=True)
    print(f"Modbus TCP {modbus_tag} at 127.0.0.1:{modbus_port} unit {MODBUS_UNIT}", flush=True)
    try:
        await feed(simulator, opcua, modbus)
    finally:
        await modbus.stop()
        await opcua.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.devices", description=__doc__.split("\n\n")[0])
    parser.add_argument("--opcua-port", type=int, required=True)
    parser.add_argument("--modbus-port", type=int, required=True)
    parser.add_argument("--opcua-tag", default="P-101")
    parser.add_argument("--modbus-tag", default="P-101")
    args = parser.parse_args(argv)
    for port in (args.opcua_port, args.modbus_port):
        if not 0 < port < 65536:
            parser.error(f"port {port} is out of range 1-65535")
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.opcua_port, args.modbus_port, args.opcua_tag, args.modbus_tag))


if __name__ == "__main__":
    main()
