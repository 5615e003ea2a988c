"""manage.py replay: a recorded run posted through POST /api/v1/readings (the Django test client behind an
httpx transport), with timestamps shifted so the run ends now, into a live asset created on the gateway's site."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from plant import simulator_client
from plant.datasets import skab
from plant.datasets import replay as replay_module
from plant.datasets.replay import ReplayRun, shift_for
from plant.models import Asset, Gateway, Label, Reading
from demo.supervisor import Supervisor
from tests.conftest import make_asset
from tests.plant.mock_transport import django_ingest, route_simulator_client

ROWS = 120


def need_skab() -> None:
    try:
        skab.data_dir()
    except skab.DatasetMissing as exc:
        pytest.fail(f"{exc}; these tests need the SKAB files (VIGIL_DATA_DIR=../shared/data)")


@pytest.fixture
def api(monkeypatch, db):
    """Route the replay's HTTP client into the real ingestion view; returns the list of request paths."""
    paths: list[str] = []
    route_simulator_client(monkeypatch, django_ingest(paths))
    return paths


@pytest.fixture
def uncapped(monkeypatch):
    """Lift the wall-clock cap (a replay after an earlier one would otherwise go on in real time); the API
    still accepts the few seconds ahead of now that this produces."""
    monkeypatch.setattr(replay_module, "wall_clock", lambda: time.time() + 3600)


def replay(*args: str) -> str:
    out = io.StringIO()
    call_command("replay", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_a_skab_run_is_stored_through_the_api_with_its_timestamps_shifted_to_end_now(
    api, site, gateway_token
):
    need_skab()
    (recorded,) = skab.read_units(["valve1/3"], limit_rows=ROWS)
    before = time.time()
    out = replay("skab/valve1/3", "--speed", "1000", "--limit-rows", str(ROWS), "--token", gateway_token,
                 "--batch-seconds", "0.01")  # fmt: skip

    asset = Asset.objects.get(site=site, tag="replay-skab-valve1-3")
    assert asset.asset_type.slug == "skab-testbed" and asset.sensors.count() == 8
    assert set(api) == {"/api/v1/readings"}
    flow = asset.sensors.get(role__key="flow")
    stored = list(Reading.objects.filter(sensor=flow).order_by("ts").values_list("ts", "value"))
    assert len(stored) == ROWS and Reading.objects.filter(sensor__asset=asset).count() == 8 * ROWS
    stamps = np.array([ts.timestamp() for ts, _ in stored])
    # Same spacing as recorded, one constant shift, and the last row lands at (about) the end of the replay.
    assert np.allclose(np.diff(stamps), np.diff(recorded.ts), atol=1e-3)
    assert abs(stamps[-1] - time.time()) < 30 and stamps[-1] >= before - 5
    assert np.allclose([value for _, value in stored], recorded.values["flow"], atol=1e-4)
    # The replayed part's dataset labels are recorded on the live asset, shifted the same way.
    (normal,) = asset.labels.all()
    assert normal.source == "dataset" and abs(normal.start.timestamp() - stamps[0]) < 1e-3
    assert "replay finished" in out and f"accepted {8 * ROWS}" in out


def test_a_second_replay_starts_after_the_first_instead_of_writing_over_it(
    api, site, gateway_token, uncapped
):
    need_skab()
    args = ("skab/valve1/3", "--speed", "1000", "--limit-rows", "30", "--token", gateway_token)
    replay(*args, "--batch-seconds", "0.01")
    asset = Asset.objects.get(tag="replay-skab-valve1-3")
    first_end = Reading.objects.filter(sensor__asset=asset).order_by("-ts").first().ts

    out = replay(*args, "--batch-seconds", "0.01")
    second = Reading.objects.filter(sensor__asset=asset, ts__gt=first_end)
    assert second.count() == 8 * 30 and Reading.objects.filter(sensor__asset=asset).count() == 8 * 60
    assert "starts after it" in out
    assert Label.objects.filter(asset=asset, source="dataset").count() == 2


def test_without_a_token_the_replay_uses_a_gateway_of_the_dataset_site_and_reuses_it(api, uncapped):
    need_skab()
    replay("skab/valve1/0", "--speed", "1000", "--limit-rows", "5", "--batch-seconds", "0.01")
    replay("skab/valve1/0", "--speed", "1000", "--limit-rows", "5", "--batch-seconds", "0.01")
    assert Gateway.objects.filter(site__slug="skab", name="dataset-replay").count() == 1
    assert (
        Reading.objects.filter(
            sensor__asset__site__slug="skab", sensor__asset__tag="replay-skab-valve1-0"
        ).count()
        == 80
    )


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_token_is_refused_and_leaves_the_replay_gateway_as_it_was(api, uncapped, monkeypatch, empty):
    """An empty --token (an unset variable in a script) was read as "no token": the replay rotated the
    replay gateway's token under whoever was replaying with it (or issued a new gateway)."""
    need_skab()
    monkeypatch.delenv("GATEWAY_TOKEN", raising=False)
    replay("skab/valve1/0", "--speed", "1000", "--limit-rows", "5", "--batch-seconds", "0.01")
    before = list(Gateway.objects.values_list("pk", "token_hash"))
    readings = Reading.objects.count()
    with pytest.raises(CommandError, match="--token is empty: give a gateway token, or leave the option out"):
        replay("skab/valve1/0", "--speed", "1000", "--limit-rows", "5", "--token", empty)
    assert list(Gateway.objects.values_list("pk", "token_hash")) == before
    assert Reading.objects.count() == readings


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("skab/valve9/1",), "valid subsets"),
        (("nothing/valve1/1",), "give <dataset>/<run>"),
        (("skab/valve1",), "names 16 runs"),
        (("skab/valve1/1", "--speed", "0"), "--speed must be positive"),
        (("skab/valve1/1", "--token", "vgl_not-a-token"), "token is unknown or revoked"),
        # Negative retries never posted: an AssertionError traceback once the asset and a gateway existed.
        (("skab/valve1/1", "--max-retries", "-1"), r"--max-retries must be >= 0 \(got -1\)"),
        (("skab/valve1/1", "--url", "http://[::1"), r"--url: 'http://\[::1' is not a URL"),
        # It slept before its first request, for ever, with the asset and the replay gateway made.
        (
            ("skab/valve1/1", "--speed", "1e-300"),
            r"--speed 1e-300 replays skab/valve1/1's \d+ recorded seconds",
        ),
    ],
)
def test_bad_replay_input_is_a_command_error(api, args, message):
    need_skab()
    with pytest.raises(CommandError, match=message):
        replay(*args)
    assert not Reading.objects.exists()
    assert not Asset.objects.filter(tag__startswith="replay-").exists()


def test_a_replay_with_missing_data_names_the_path_and_vigil_data_dir(api, settings, tmp_path):
    settings.VIGIL_DATA_DIR = tmp_path
    with pytest.raises(CommandError, match=f"SKAB data not found at {tmp_path}.*VIGIL_DATA_DIR"):
        replay("skab/valve1/3")


def test_the_stream_never_stamps_a_reading_after_the_wall_clock():
    need_skab()
    (unit,) = skab.read_units(["valve1/3"], limit_rows=100)
    sent: list[float] = []

    class Sender:
        def send(self, keys, ts, values) -> None:
            sent.extend(ts.tolist())

    clock = {"real": 0.0}
    wall0 = 1_800_000_000.0
    # A shift that starts the run at the wall clock: at 10x it may only go as fast as real time.
    run = ReplayRun(
        unit,
        {"flow": "k"},
        Sender(),
        speed=10.0,
        shift=wall0 - unit.ts[0],
        monotonic=lambda: clock["real"],
        sleep=lambda s: clock.__setitem__("real", clock["real"] + max(s, 0.5)),
        wall=lambda: wall0 + clock["real"],
    )
    run.run()
    assert len(sent) == 100 and clock["real"] >= unit.ts[-1] - unit.ts[0] - 1
    assert shift_for(unit, 10.0, wall0) + unit.ts[-1] == pytest.approx(
        wall0 + (unit.ts[-1] - unit.ts[0]) / 10
    )


def test_demo_with_skab_data_fails_clearly_when_the_data_directory_is_missing(
    settings, tmp_path, monkeypatch
):
    settings.VIGIL_DATA_DIR = tmp_path
    # The check runs before anything starts; keep pytest's own Ctrl-C handling.
    monkeypatch.setattr(Supervisor, "install_signal_handlers", lambda self: None)
    with pytest.raises(CommandError, match=r"--data skab: SKAB data not found .*run plain `make demo`"):
        call_command("demo", "--data", "skab", "--port", "8799", stdout=io.StringIO())


def test_a_supervised_job_that_finishes_cleanly_does_not_stop_the_others():
    supervisor = Supervisor(out=io.StringIO())
    try:
        job = supervisor.start("job", ["true"], may_exit=True)
        crash = supervisor.start("crash", ["false"], may_exit=True)
        job.process.wait()
        crash.process.wait()
        assert supervisor.dead_child() is crash
    finally:
        supervisor.stop_all()


def test_the_simulator_leaves_a_replayed_skab_asset_alone(api, site, gateway_token):
    need_skab()
    make_asset(site, "p-101")
    replay("skab/valve1/3", "--speed", "1000", "--limit-rows", "3", "--token", gateway_token)
    assets, skipped = simulator_client.sim_assets(site)
    assert [a.tag for a in assets] == ["p-101"] and skipped == ["replay-skab-valve1-3"]
