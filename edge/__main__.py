"""``python -m edge --config agent.toml``: run the edge agent (see edge/__init__.py and the README's
"Running Vigil at the edge"). ``--check`` validates the configuration and the bundles and exits.

Exit status: 0 stopped cleanly (SIGTERM / Ctrl-C), 2 configuration error (the message names it)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import httpx

from detection.bundle import BundleError
from edge.agent import Agent
from edge.config import ConfigError, load_config
from edge.queue import QueueError
from edge.sources import LocalPublisher, build_sources
from edge.updater import UpdatePolicy, Updater
from edge.updates import UpdateError, load_public_key


async def run(config_path: Path, check: bool) -> int:
    config = load_config(config_path)
    base = config_path.resolve().parent
    sources = build_sources(config.raw, base)
    server = config.raw.get("server", {})
    public_key = None
    if server.get("public_key_file"):
        try:
            public_key = load_public_key((base / str(server["public_key_file"])).read_bytes())
        except OSError as exc:
            raise ConfigError(f"server.public_key_file: {exc.strerror}") from None
    agent = Agent(config)
    site = next(iter(agent.deciders.values())).model.spec.get("asset", {}).get("site", "site")
    publisher = LocalPublisher(config.raw, site) if "publish" in config.raw else None
    agent.publisher = publisher.publish if publisher else None
    if check:
        print(f"edge: configuration OK: {len(agent.deciders)} asset(s), {len(sources)} source(s)")
        agent.queue.close()
        await agent.forwarder.close()
        return 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    extra = []
    if publisher is not None:
        extra.append(asyncio.create_task(publisher.run()))
    client = None
    if public_key is not None:
        client = httpx.AsyncClient(
            base_url=config.server_url, headers={"Authorization": f"Bearer {config.token}"}, timeout=30
        )
        policy = UpdatePolicy(rollback_factor=float(config.raw.get("agent", {}).get("rollback_factor", 3.0)))
        updater = Updater(agent, client, public_key, policy)
        extra.append(
            asyncio.create_task(
                updater.run(stop, float(config.raw.get("agent", {}).get("update_poll_s", 30)))
            )
        )
    print(
        f"edge: running {len(agent.deciders)} asset(s) from {len(sources)} source(s); server {config.server_url}",
        flush=True,
    )
    try:
        await agent.run(sources, stop)
    finally:
        for task in extra:
            task.cancel()
        await asyncio.gather(*extra, return_exceptions=True)
        if client is not None:
            await client.aclose()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge", description="The Vigil edge agent.")
    parser.add_argument("--config", required=True, type=Path, help="the agent's TOML file")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # One line per forwarded batch or protocol request would drown what the agent itself reports.
    for name, level in (
        ("httpx", logging.WARNING),
        ("asyncua", logging.WARNING),
        ("pymodbus", logging.ERROR),
    ):
        logging.getLogger(name).setLevel(level)
    try:
        return asyncio.run(run(args.config, args.check))
    except (ConfigError, BundleError, QueueError, UpdateError) as exc:
        print(f"edge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
