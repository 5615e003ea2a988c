"""Helpers shared by the OPC UA and Modbus tests (which run against real servers on loopback)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from connectivity.points import Sample


class Collector:
    """A sink that keeps every batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []

    async def __call__(self, samples: list[Sample]) -> None:
        self.batches.append(list(samples))

    @property
    def samples(self) -> list[Sample]:
        return [s for batch in self.batches for s in batch]


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` holds, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
