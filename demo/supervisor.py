"""A small process supervisor: start named children, prefix their output, stop them all on the way out.

`manage.py demo` uses it to run Redis, the web server, the Celery worker and the simulator from one
command. Each child runs in its own session so that a Ctrl-C in the terminal reaches only the supervisor,
which then stops the children in order (simulator and worker before the Redis they talk to) instead of
letting every process race to handle the same SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO


def web_server_command(host: str, port: int, *options: str) -> list[str]:
    """The command line of Vigil's web process: uvicorn serving config.asgi (demo, bench, live-server tests).

    uvicorn calls the app once a request's headers are in and streams the body, so config.asgi can refuse a
    gateway POST before reading it. Channels has no lifespan handler. Proxy headers are ignored, as daphne
    did: behind a proxy, the deployment adds `--proxy-headers --forwarded-allow-ips ...` itself.
    """
    argv = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", str(port)]
    return argv + ["--lifespan", "off", "--no-proxy-headers", *options]


class ChildDied(Exception):
    """A supervised child exited while it was meant to be running."""

    def __init__(self, child: Child) -> None:
        self.child = child
        super().__init__(f"{child.name} exited unexpectedly with code {child.returncode}")


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived while the supervisor was waiting for something."""


@dataclass
class Child:
    """One supervised process and the thread that copies its output."""

    name: str
    argv: list[str]
    process: subprocess.Popen
    stop_last: bool = False
    stop_first: bool = False  # a client of the others (simulator, replay): stopped before the servers
    stop_early: bool = False  # a client of the stop_first ones (the bridge and the edge agent read the
    # simulator's PLCs): stopped before them, so a reader never sees its device vanish
    may_exit: bool = False  # a job that ends (e.g. a dataset replay): exit code 0 is not a failure
    reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def signal_group(self, signum: int) -> None:
        # The child leads its own process group, so this also reaches what it forked (e.g. Celery's beat).
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class Supervisor:
    """Starts children, watches them, and stops every one of them exactly once."""

    def __init__(self, out: TextIO | None = None, stop_timeout: float = 10.0) -> None:
        self.out = out or sys.stdout
        self.stop_timeout = stop_timeout
        self.children: list[Child] = []
        self.stop_event = threading.Event()
        self.stop_signal: int | None = None
        self._out_lock = threading.Lock()
        self._width = 10  # fits the demo's names (simulator) so columns do not shift mid-run

    # --- signals -------------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """Turn SIGINT/SIGTERM into a stop request (a second one is ignored: we are already stopping)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        self.stop_event.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    # --- output --------------------------------------------------------------------------------------
    def say(self, message: str, name: str = "demo") -> None:
        with self._out_lock:
            for line in message.splitlines() or [""]:
                self.out.write(f"{name:<{self._width}}| {line}\n")
            self.out.flush()

    def _copy_output(self, child: Child) -> None:
        assert child.process.stdout is not None
        for raw in iter(child.process.stdout.readline, b""):
            self.say(raw.decode("utf-8", "replace").rstrip("\r\n"), child.name)
        child.process.stdout.close()

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        stop_last: bool = False,
        stop_first: bool = False,
        may_exit: bool = False,
        stop_early: bool = False,
    ) -> Child:
        """Start `argv` as a child named `name`; its stdout and stderr are printed with the name as prefix.

        A `may_exit` child may finish with exit code 0 without stopping the others (any other code still does).
        """
        if self.stopping:
            raise StopRequested
        process = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(
            name,
            list(argv),
            process,
            stop_last=stop_last,
            stop_first=stop_first,
            may_exit=may_exit,
            stop_early=stop_early,
        )
        child.reader = threading.Thread(
            target=self._copy_output, args=(child,), name=f"out-{name}", daemon=True
        )
        child.reader.start()
        self.children.append(child)
        self._width = max(self._width, len(name) + 1)
        self.say(f"started {name} (pid {process.pid})")
        return child

    def dead_child(self) -> Child | None:
        """The first child that has exited, if any (a `may_exit` child that finished cleanly does not count)."""
        return next(
            (
                child
                for child in self.children
                if child.returncode is not None and not (child.may_exit and child.returncode == 0)
            ),
            None,
        )

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
        """Poll `ready` until it is true; a stop request or a dead child interrupts the wait."""
        deadline = time.monotonic() + timeout
        while True:
            if self.stopping:
                raise StopRequested
            if (child := self.dead_child()) is not None:
                raise ChildDied(child)
            if ready():
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what} was not ready within {timeout:.0f} s")
            self.stop_event.wait(interval)

    def run_until_stopped(self, interval: float = 0.5) -> Child | None:
        """Block until a stop request (returns None) or until a child exits (returns that child)."""
        while not self.stop_event.wait(interval):
            if (child := self.dead_child()) is not None:
                return child
        return None

    def stop_all(self) -> None:
        """Stop every child: SIGTERM, wait, then SIGKILL, in rounds — stop_early children (readers of the
        stop_first ones' devices), stop_first children (clients,
        so no request of theirs is cut off inside a server that is shutting down), then the rest, then
        stop_last ones (what the others depend on, e.g. Redis)."""
        early = [child for child in self.children if child.stop_early]
        first = [child for child in self.children if child.stop_first and not child.stop_early]
        middle = [
            child for child in self.children if not (child.stop_first or child.stop_last or child.stop_early)
        ]
        last = [child for child in self.children if child.stop_last and not child.stop_early]
        for group in (early, first, middle, last):
            self._stop_group(group)
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=2)

    def _stop_group(self, children: list[Child]) -> None:
        running = [child for child in children if child.returncode is None]
        for child in reversed(running):
            self.say(f"stopping {child.name} (pid {child.pid})")
            child.process.terminate()
        deadline = time.monotonic() + self.stop_timeout
        for child in running:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {self.stop_timeout:.0f} s; killing it")
                child.signal_group(signal.SIGKILL)
                child.process.wait()
        # Whatever a child forked and left behind in its group (worker pool processes) goes too.
        for child in children:
            child.signal_group(signal.SIGKILL)
