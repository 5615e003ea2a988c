"""OPC UA and Modbus TCP clients at plant scale: what they cost the process that runs them.

    .venv/bin/python bench/bridges_ot.py [--seconds 20] [--items 1000] [--registers 500]

1. OPC UA: a server process (demo.devices' asyncua server) with ``--items`` Double variables, each
   written once a second with its source timestamp; this process runs `connectivity.opcua.run` with one
   monitored item per variable (1,000 ms sampling) into a sink that only counts. Reported: the client
   process's CPU share (of one core) over the measured window, samples/s received vs written, and the
   server process's CPU share.
2. Modbus TCP: a server process (demo.devices' pymodbus server) with ``--registers`` holding registers;
   this process runs `connectivity.modbus.run` polling all of them (uint16, so ``registers/125`` reads) at
   1 Hz. Reported: the time of each poll (p50/p95/max), the client's CPU share, samples/s.

Writes bench/results/bridges_ot.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, machine, write_results  # noqa: E402
from connectivity import modbus, opcua  # noqa: E402
from connectivity.points import ConnectionStatus, Sample  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bridges_ot.json"
WARM_UP_S = 3.0


async def serve_opcua(port: int, items: int) -> None:
    from plant.simulator_devices import start_opcua_device

    device = await start_opcua_device(port, roles=[f"v{i}" for i in range(items)])
    print("ready", flush=True)
    tick = 0
    while True:
        now = time.time()
        for i in range(items):
            await device.set(f"v{i}", float(tick + i), ts=now)
        tick += 1
        await asyncio.sleep(max(0.0, 1.0 - (time.time() - now)))


async def serve_modbus(port: int, registers: int) -> None:
    from plant.simulator_devices import start_modbus_device

    device = await start_modbus_device(port, registers=registers)
    await device.set_registers(0, [i % 65536 for i in range(registers)])
    print("ready", flush=True)
    await asyncio.Event().wait()


def start_server(kind: str, port: int, size: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port), "--size", str(size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit(f"bench: the {kind} server did not start")
    return proc


class Counter:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, samples: list[Sample]) -> None:
        self.count += len(samples)


async def measure(task_factory, seconds: float, server: subprocess.Popen[str]) -> dict[str, float]:
    """Run the client for a warm-up, then measure CPU of this process and of the server over ``seconds``."""
    me, other = psutil.Process(), psutil.Process(server.pid)
    counter = Counter()
    status = ConnectionStatus()
    task = asyncio.create_task(task_factory(counter, status))
    await asyncio.sleep(WARM_UP_S)
    if task.done():
        task.result()
    cpu0, other0, count0, wall0 = me.cpu_times(), other.cpu_times(), counter.count, time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, other1, count1, wall1 = me.cpu_times(), other.cpu_times(), counter.count, time.monotonic()
    task.cancel()
    wall = wall1 - wall0
    return {
        "seconds": round(wall, 2),
        "client_cpu_share": round((cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall, 4),
        "server_cpu_share": round((other1.user + other1.system - other0.user - other0.system) / wall, 4),
        "samples_per_s": round((count1 - count0) / wall, 1),
        "errors": status.errors,
    }


async def bench_opcua(items: int, seconds: float) -> dict[str, object]:
    port = free_port()
    server = start_server("opcua", port, items)
    try:
        cfg = opcua.OpcUaConfig(f"opc.tcp://127.0.0.1:{port}/vigil/", publishing_interval_ms=500)
        points = [opcua.OpcUaPoint(f"v{i}", f"ns=2;s=P-101.v{i}", 1000) for i in range(items)]
        result = await measure(lambda sink, status: opcua.run(cfg, points, sink, status), seconds, server)
    finally:
        server.terminate()
        server.wait(10)
    return {"protocol": "OPC UA", "items": items, "rate_hz": 1, **result}


async def bench_modbus(registers: int, seconds: float) -> dict[str, object]:
    port = free_port()
    server = start_server("modbus", port, registers)
    polls: list[float] = []
    original = modbus.poll

    async def timed_poll(client, reads, status):
        started = time.perf_counter()
        try:
            return await original(client, reads, status)
        finally:
            polls.append(time.perf_counter() - started)

    modbus.poll = timed_poll  # the bench's own stopwatch around the client's poll
    try:
        cfg = modbus.ModbusConfig("127.0.0.1", port, interval_s=1.0)
        points = [
            modbus.parse_point({"point": f"r{i}", "function": "hr", "address": str(i)})
            for i in range(registers)
        ]
        reads = len(modbus.plan_reads(points))
        result = await measure(lambda sink, status: modbus.run(cfg, points, sink, status), seconds, server)
    finally:
        modbus.poll = original
        server.terminate()
        server.wait(10)
    measured = sorted(polls[int(WARM_UP_S) :]) or sorted(polls)
    return {
        "protocol": "Modbus TCP",
        "items": registers,
        "rate_hz": 1,
        "reads_per_poll": reads,
        "poll_ms_p50": round(1000 * statistics.median(measured), 2),
        "poll_ms_p95": round(1000 * measured[int(0.95 * (len(measured) - 1))], 2),
        "poll_ms_max": round(1000 * measured[-1], 2),
        **result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--registers", type=int, default=500)
    parser.add_argument("--serve", choices=["opcua", "modbus"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "opcua":
        asyncio.run(serve_opcua(args.port, args.size))
        return
    if args.serve == "modbus":
        asyncio.run(serve_modbus(args.port, args.size))
        return
    load = psutil.getloadavg()[0]
    runs = [
        asyncio.run(bench_opcua(args.items, args.seconds)),
        asyncio.run(bench_modbus(args.registers, args.seconds)),
    ]
    print(
        "\n| protocol | points at 1 Hz | samples/s | client CPU (share of a core) | server CPU | poll p50 / p95 / max |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for run in runs:
        polls = (
            f"{run['poll_ms_p50']} / {run['poll_ms_p95']} / {run['poll_ms_max']} ms ({run['reads_per_poll']} reads)"
            if "poll_ms_p50" in run
            else "—"
        )
        print(
            f"| {run['protocol']} | {run['items']:,} | {run['samples_per_s']:,} | {run['client_cpu_share']:.1%} "
            f"| {run['server_cpu_share']:.1%} | {polls} |"
        )
    write_results(RESULTS, {"machine": machine(load_average_1m=load), "runs": runs})


if __name__ == "__main__":
    main()
