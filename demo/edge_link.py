"""The demo edge agent's network link to the server, which a user can cut: a TCP relay from a local port
to the web server that refuses connections (and drops open ones) while a flag file exists.

    python -m demo.edge_link --listen 8471 --to 127.0.0.1:8000 --flag var/demo/edge-offline

`make edge-offline` creates the flag (the agent keeps deciding and publishing locally, and queues), `make
edge-online` removes it (the agent forwards its queue: the board shows its alerts with their original
times). Only the demo uses it; a real plant cuts its own cables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

CHECK_S = 0.5


class Link:
    def __init__(self, listen: int, host: str, port: int, flag: Path) -> None:
        self.listen, self.host, self.port, self.flag = listen, host, port, flag
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def cut(self) -> bool:
        return self.flag.exists()

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()
            self.writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def watch(self) -> None:
        """Drop the open connections as soon as the link is cut (a keep-alive would outlive the cut)."""
        while True:
            if self.cut:
                for writer in list(self.writers):
                    writer.close()
                self.writers.clear()
            await asyncio.sleep(CHECK_S)

    async def serve(self) -> None:
        server = await asyncio.start_server(self.relay, "127.0.0.1", self.listen)
        async with server:
            await asyncio.gather(server.serve_forever(), self.watch())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.edge_link", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--to", required=True, help="host:port of the web server")
    parser.add_argument("--flag", type=Path, required=True, help="while this file exists the link is cut")
    args = parser.parse_args(argv)
    host, _, port = args.to.rpartition(":")
    if not host or not port.isdecimal():  # isdigit() takes "²", which int() refuses
        print(f"edge_link: --to must be host:port, got {args.to!r}", file=sys.stderr)
        return 2
    try:
        asyncio.run(Link(args.listen, host, int(port), args.flag).serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"edge_link: cannot listen on {args.listen}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
