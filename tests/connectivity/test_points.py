"""The protocol clients' shared vocabulary (no Django: tests/test_django_free_packages.py)."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

from connectivity.ot_sources import _write_back
from connectivity.points import BIRTH, ConnectionStatus, PointError, backoff_delays, failed_try, finite
from connectivity.protocols import OutgoingState

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "detection", "plant", "alerts", "models_registry", "config", "demo")


def test_backoff_doubles_to_its_cap_with_bounded_jitter():
    delays = backoff_delays(first=1.0, cap=8.0, jitter=0.2)
    got = [next(delays) for _ in range(7)]
    for nominal, delay in zip([1, 2, 4, 8, 8, 8, 8], got, strict=True):
        assert nominal * 0.8 <= delay <= nominal * 1.2


def test_a_device_that_is_back_is_tried_again_within_about_ten_seconds_however_long_it_was_down():
    """The bridge's and the edge agent's default reconnection delays: a device read again at the next try
    loses what it sent in between, so the wait between tries stays short after hours of outage."""
    delays = backoff_delays()
    waited = [next(delays) for _ in range(200)]
    assert max(waited) <= 10.0 * 1.2
    assert sum(waited[:4]) < 20.0  # the first tries come quickly: about 1 + 2 + 4 + 8 s


def test_only_finite_numbers_are_values():
    assert finite(3) == 3.0 and finite(-2.5) == -2.5
    for bad in (math.nan, math.inf, -math.inf, True, "3", None, [1]):
        assert finite(bad) is None


def test_status_keeps_the_last_errors_and_names_their_source():
    status = ConnectionStatus()
    for i in range(ConnectionStatus.MAX_RECENT + 5):
        status.error(PointError("not a number", source=f"plant/p{i}"), at=float(i))
    assert status.errors == ConnectionStatus.MAX_RECENT + 5
    assert len(status.recent_errors) == ConnectionStatus.MAX_RECENT
    assert status.last_error == f"plant/p{ConnectionStatus.MAX_RECENT + 4}: not a number"


def test_a_try_that_never_reached_its_server_says_not_reachable_and_a_lost_one_connection_lost():
    """The bridge's status line and log, and the edge agent's log, for a device that is not up yet (a PLC
    booting after a power cut) were "disconnected: disconnected: ConnectionRefusedError ..."."""
    status = ConnectionStatus()
    before = status.connects
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 4840)")
    assert failed_try(refused, status.connects > before) == (
        "not reachable: ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 4840)"
    )
    status.connected = True
    status.connected = True  # set again while connected: still one connect
    status.connected = False
    assert status.connects == 1 and not status.connected
    lost = ConnectionError("OPC UA connection to opc.tcp://plc:4840 lost")
    assert failed_try(lost, status.connects > before) == (
        "connection lost: ConnectionError: OPC UA connection to opc.tcp://plc:4840 lost"
    )


def test_a_sparkplug_nodes_error_is_over_once_that_node_is_born_and_no_other():
    node = "spBv1.0/plant/edge1"
    status = ConnectionStatus()
    status.error(PointError("no answer to 3 rebirth requests", source=node, node=node), 100.0)
    assert (status.last_error_resolved_by, status.last_error_resolved_at) == (BIRTH, None)
    status.born("spBv1.0/plant/edge2", 101.0)  # another node's birth says nothing of this one
    status.born(node, 99.0)  # a birth before the error did not end it
    assert status.last_error_resolved_at is None
    status.born(node, 102.0)
    status.born(node, 103.0)  # the first birth after it ended it
    assert status.last_error_resolved_at == 102.0
    status.error(PointError("value is not a finite number", point="p1", source="plant/p1"), 104.0)
    assert (status.last_error_resolved_by, status.last_error_resolved_at) == ("", None)
    status.born(node, 105.0)  # a point's error: no birth ends it
    assert status.last_error_resolved_at is None


def test_a_sparkplug_devices_error_is_over_once_that_device_or_its_node_is_born():
    node = "spBv1.0/plant/edge1"
    status = ConnectionStatus()
    status.error(PointError("metric alias 7 has no birth certificate", node=f"{node}/pump2"), 100.0)
    status.born(f"{node}/pump3", 101.0)  # another device of the node
    status.born("spBv1.0/plant/edge10", 101.0)  # a node whose name starts alike
    assert status.last_error_resolved_at is None
    status.born(f"{node}/pump2", 102.0)  # its DBIRTH binds its aliases again
    assert status.last_error_resolved_at == 102.0
    status.error(PointError("metric alias 7 has no birth certificate", node=f"{node}/pump2"), 103.0)
    status.born(node, 104.0)  # its node's NBIRTH: the devices' births follow it
    assert status.last_error_resolved_at == 104.0
    # A node's own error (its rebirth requests unanswered) is not answered by a device's birth.
    status.error(PointError("no answer to 3 rebirth requests", source=node, node=node), 105.0)
    status.born(f"{node}/pump2", 106.0)
    assert status.last_error_resolved_at is None


def test_a_connect_is_timed_on_the_wall_clock_once_per_connect():
    status = ConnectionStatus()
    before = time.time()
    status.connected = True
    first = status.connected_at
    assert first is not None and before <= first <= time.time()
    status.connected = True  # still the same connection
    assert status.connected_at == first and status.connects == 1


async def test_a_refused_write_back_is_recorded_at_its_wall_clock_time():
    # The write-back's per-target errors were stamped with the event loop's monotonic clock: the site page
    # then dated them to 1970 plus the machine's uptime.
    class Client:
        @staticmethod
        async def write_alert_states(cfg, targets, states):
            return [PointError("refused by the PLC", source="p-101")]

    taken = []

    async def take():
        if taken:
            await asyncio.Event().wait()  # nothing more to write: wait to be cancelled
        taken.append(1)
        return [OutgoingState(7, "north/p-101", {"asset": "p-101", "state": "open"})]

    async def confirm(ids):
        pass

    status = ConnectionStatus()
    before = time.time()
    task = asyncio.create_task(_write_back(Client, None, [], take, confirm, status))
    while not status.errors:
        await asyncio.sleep(0.01)
    task.cancel()
    assert before <= status.last_error_at <= time.time()
