"""MQTT decoding alone: `Router.decode` of JSON messages as bench/bridges.py publishes them, in readings/s.

    python bench/bridges_decode.py [--messages 2000] [--per-message 100]

No broker, no database: the part of the bridge's hot path that is pure Python (payload → samples), best
of three passes, so a change to it can be measured without the rest of the machine's noise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from connectivity.mqtt import Router, parse_point  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--per-message", type=int, default=100)
    parser.add_argument("--sensors", type=int, default=100)
    args = parser.parse_args()
    address = {"items_path": "r", "value_path": "v", "ts_path": "t"}
    router = Router({f"s{i}": parse_point({"topic": f"bench/s{i}", **address}) for i in range(args.sensors)})
    t0 = float(int(time.time()))
    messages = [
        (
            f"bench/s{m % args.sensors}",
            orjson.dumps({"r": [{"t": t0 + i, "v": 50.0 + (i % 7)} for i in range(args.per_message)]}),
        )
        for m in range(args.messages)
    ]
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        count = sum(len(router.decode(topic, payload, t0)[0]) for topic, payload in messages)
        best = min(best, time.perf_counter() - started)
    print(f"{count:,} readings decoded in {best:.3f} s: {count / best:,.0f} readings/s")


if __name__ == "__main__":
    main()
