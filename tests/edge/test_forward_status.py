"""The edge forwarder sends each reading with what its source said of it (its status, the earlier reading a
held value carries on), as the server's bridge stores it."""

from __future__ import annotations

import asyncio
import json

import httpx

from edge.forward import Forwarder
from edge.queue import LocalQueue


def test_uncertain_and_bad_values_are_forwarded_with_their_status_and_stale_points_are_not(tmp_path):
    queue = LocalQueue(tmp_path / "queue.sqlite", 1 << 20)
    queue.put_readings(
        [
            ("north.p-101.vibration", 100.0, 1.0, "good"),
            ("north.p-101.vibration", 101.0, 1.1, "uncertain"),
            ("north.p-101.vibration", 102.0, 9.9, "bad"),  # the source sent a value and said it is bad
            ("north.p-101.vibration", 103.0, None, "stale"),  # the point went away: nothing to store
            ("north.p-101.vibration", 104.0, None, "bad"),  # an OPC UA Bad status with a null value
        ]
    )
    bodies: list[dict] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/readings":
            bodies.append(json.loads(request.content))
            return httpx.Response(200, json={"accepted": 3, "duplicates": 0, "rejected": []})
        return httpx.Response(200, json={})

    async def forward() -> None:
        forwarder = Forwarder(queue, "http://server", "token", transport=httpx.MockTransport(server))
        try:
            await forwarder.forward_once()
        finally:
            await forwarder.close()

    asyncio.run(forward())
    assert bodies == [
        {
            "readings": [
                {"sensor": "north.p-101.vibration", "ts": 100.0, "value": 1.0},
                {"sensor": "north.p-101.vibration", "ts": 101.0, "value": 1.1, "status": "uncertain"},
                {"sensor": "north.p-101.vibration", "ts": 102.0, "value": 9.9, "status": "bad"},
            ]
        }
    ]
    assert queue.readings_batch(10) == []  # all acknowledged


def test_a_held_value_is_forwarded_with_the_reading_it_continues(tmp_path):
    """The first value held after OPC UA's catch-up read carries the read on (connectivity.hold); the server
    flags no data gap between them only if the forwarded reading says so (plant.quality, GAP)."""
    queue = LocalQueue(tmp_path / "queue.sqlite", 1 << 20)
    queue.put_readings(
        [
            ("north.p-101.pressure", 70.0, 4.0, "good"),  # the read: steady since its own time
            ("north.p-101.pressure", 100.0, 4.0, "good", 70.0),  # held from the connection on
            ("north.p-101.pressure", 101.0, 4.0, "uncertain", 100.0),
        ]
    )
    bodies: list[dict] = []

    def server(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"accepted": 3, "duplicates": 0, "rejected": []})

    async def forward() -> None:
        forwarder = Forwarder(
            queue, "http://server", "token", heartbeat_s=3600.0, transport=httpx.MockTransport(server)
        )
        try:
            await forwarder.forward_once()
        finally:
            await forwarder.close()

    asyncio.run(forward())
    assert bodies[0]["readings"] == [
        {"sensor": "north.p-101.pressure", "ts": 70.0, "value": 4.0},
        {"sensor": "north.p-101.pressure", "ts": 100.0, "value": 4.0, "continues": 70.0},
        {
            "sensor": "north.p-101.pressure",
            "ts": 101.0,
            "value": 4.0,
            "status": "uncertain",
            "continues": 100.0,
        },
    ]
