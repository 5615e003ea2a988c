"""Local decisions at the edge: the agent decides window by window exactly as the runner (and so the
server's pipeline and rules) decides over the whole series, opens on a fault, clears after it, and a
restart continues the episode instead of raising it again."""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import SimpleNamespace

import numpy as np

from connectivity.ot_sources import state_of
from connectivity.points import Sample, SampleStatus
from detection import quality, wording
from detection.bundle import load_bundle, pack_bundle
from detection.explain import explain, typical_ranges
from edge import decide as decide_module
from edge.decide import AssetDecider, decide_all
from edge.model import EdgeModel
from edge.runner import score_series
from edge.sources import LocalPublisher
from tests.edge.conftest import (
    STEP_S,
    TAG,
    TRAIN_S,
    WINDOW_S,
    samples_of,
    sensors,
    series_of,
    set_back_episodes,
    simulator,
)

FAULT_AT = TRAIN_S + 600.0


def decider(bundle) -> AssetDecider:
    return AssetDecider(TAG, EdgeModel(load_bundle(str(bundle.path))), {k: r for r, k in sensors().items()})


def feed(d: AssetDecider, sim, t0: float, t1: float, chunk: float = 5.0) -> list:
    events = []
    t = t0
    while t < t1:
        d.add(samples_of(sim, t, min(t + chunk, t1)))
        events += d.decide()
        t += chunk
    return events


def test_deciding_as_readings_arrive_gives_the_runners_alerts_over_the_whole_series(bundle):
    sim = simulator(fault_at=FAULT_AT)
    t0, t1 = TRAIN_S, FAULT_AT + 1_200.0
    d = decider(bundle)
    events = feed(d, sim, t0, t1, chunk=7.0)

    # A second simulator of the same pump: a simulator's steps must be consecutive.
    rows = score_series(load_bundle(str(bundle.path)), series_of(simulator(fault_at=FAULT_AT), t0, t1))
    expected, alert = [], False
    for row in rows:
        if row["alert"] != alert:
            alert = row["alert"]
            expected.append(
                ("opened" if alert else "cleared", datetime.fromisoformat(row["window_end"]).timestamp())
            )
    assert expected and expected[0][0] == "opened"
    assert [(e.kind, e.at) for e in events] == expected
    assert FAULT_AT < events[0].at < FAULT_AT + 600
    assert sum(r["score"] is not None for r in rows) > 100


def test_a_quiet_pump_raises_nothing_and_a_fault_raises_one_keyed_event(bundle):
    d = decider(bundle)
    assert feed(d, simulator(), TRAIN_S, TRAIN_S + 900.0) == []
    assert not d.in_alert


def test_the_alert_clears_after_the_fault_ends(bundle):
    faulty, healthy = simulator(fault_at=FAULT_AT), simulator()
    d = decider(bundle)
    events = feed(d, faulty, TRAIN_S, FAULT_AT + 900.0)
    events += feed(d, healthy, FAULT_AT + 900.0, FAULT_AT + 1_800.0)
    assert [e.kind for e in events] == ["opened", "cleared"]
    assert events[0].key != events[1].key and events[0].first == events[1].first
    assert not d.in_alert


def test_a_restarted_decider_continues_the_episode(bundle):
    sim = simulator(fault_at=FAULT_AT)
    first = decider(bundle)
    events = feed(first, sim, TRAIN_S, FAULT_AT + 400.0)
    assert [e.kind for e in events] == ["opened"]
    saved = first.state_json()

    again = decider(bundle)
    assert again.restore(saved)
    # The restarted agent gets its buffer back from the readings after its last decision.
    more = feed(again, sim, FAULT_AT + 400.0 - 120.0, FAULT_AT + 900.0)
    assert more == [] and again.in_alert


def test_an_episode_decided_again_after_a_restart_has_the_same_keys(bundle):
    """A kill after the opening was queued but before the state was saved: the restarted decider decides the
    opening again from the earlier saved state, and its resend must stay a duplicate on the server."""
    sim = simulator(fault_at=FAULT_AT)
    first = decider(bundle)
    feed(first, sim, TRAIN_S, FAULT_AT - 60.0)
    saved = first.state_json()
    opened = feed(first, sim, FAULT_AT - 60.0, FAULT_AT + 400.0)
    assert [e.kind for e in opened] == ["opened"]

    again = decider(bundle)
    assert again.restore(saved)
    replayed = simulator(fault_at=FAULT_AT)
    replayed.step(TRAIN_S, FAULT_AT - 60.0 - 120.0)
    assert feed(again, replayed, FAULT_AT - 60.0 - 120.0, FAULT_AT + 400.0) == opened
    assert again.state_event().key == opened[0].key  # the state republished at start, too


def test_an_episode_after_the_clock_was_set_back_gets_its_own_keys(bundle, monkeypatch):
    """Readings on a regular grid and a clock set back by whole hours: the second episode's first window has
    the first window's time of an earlier episode. It is another episode, so other keys (the server and
    the local queue drop a key they hold), while the keys of each episode stay as they were."""
    events = set_back_episodes(bundle.path, monkeypatch)
    assert [e.kind for e in events] == ["opened", "cleared", "opened"]
    assert events[2].first == events[0].first  # the case: the same first window, a new episode
    assert events[2].key not in {events[0].key, events[1].key}


def test_the_episode_count_survives_a_model_changed_while_stopped_and_starts_at_0_from_an_older_agent(bundle):
    counted = decider(bundle)
    counted.episodes = 4
    other_model = {**counted.state_json(), "model_sha256": "cd" * 32}
    older_agent = {k: v for k, v in counted.state_json().items() if k != "episodes"}

    d = decider(bundle)
    assert not d.restore(other_model) and d.episodes == 4  # its rule state is not this model's, its count is
    d = decider(bundle)
    assert d.restore(older_agent) and d.episodes == 0


def test_bad_and_foreign_samples_are_gaps_not_values(bundle):
    d = decider(bundle)
    key = sensors()["vibration"]
    taken = d.add(
        [
            Sample(key, 10.0, 1.0),
            Sample(key, 11.0, None, SampleStatus.BAD),
            Sample(key, 12.0, 99.0, SampleStatus.STALE),
            Sample("demo.p-999.vibration", 13.0, 5.0),
        ]
    )
    assert taken == 3
    buffered = d._buffers["vibration"]
    assert buffered.ts == [10.0] and buffered.values == [1.0]
    assert np.isfinite(buffered.series()[1]).all()


def test_a_resent_reading_keeps_the_first_value_as_the_server_stores(bundle):
    """The server keeps the first of a repeated (sensor, ts) (plant.ingest.service); a source that resends a
    reading with another value (a redelivered MQTT message after a reconnect) must not make the agent
    decide on a value the server never holds."""
    d = decider(bundle)
    key = sensors()["vibration"]
    d.add([Sample(key, 10.0, 1.0), Sample(key, 11.0, 2.0), Sample(key, 12.0, 3.0)])
    d.add([Sample(key, 11.0, 20.0), Sample(key, 12.0, 30.0), Sample(key, 10.5, 1.5)])
    buffered = d._buffers["vibration"]
    assert buffered.ts == [10.0, 10.5, 11.0, 12.0]
    assert buffered.values == [1.0, 1.5, 2.0, 3.0]


def test_deciding_many_assets_in_one_batch_equals_deciding_each(bundle):
    """The agent's batch (edge.decide.decide_all: one windows build and one onnxruntime call for the assets
    of one model) decides exactly what each asset's own decide() does."""

    def deciders() -> list[AssetDecider]:
        model = EdgeModel(load_bundle(str(bundle.path)))
        return [AssetDecider(f"{TAG}-{i}", model, {k: r for r, k in sensors().items()}) for i in range(3)]

    sims = [simulator(fault_at=FAULT_AT) if i == 1 else simulator() for i in range(3)]
    sims_again = [simulator(fault_at=FAULT_AT) if i == 1 else simulator() for i in range(3)]
    together, alone = deciders(), deciders()
    events_together, events_alone = [], []
    t = TRAIN_S
    while t < FAULT_AT + 900:
        for d, d2, sim, sim2 in zip(together, alone, sims, sims_again, strict=True):
            d.add(samples_of(sim, t, t + 5))
            d2.add(samples_of(sim2, t, t + 5))
        events_together += decide_all(together)
        for d2 in alone:
            events_alone += d2.decide()
        t += 5
    assert [(e.asset, e.kind, e.at) for e in events_together] == [
        (e.asset, e.kind, e.at) for e in events_alone
    ]
    assert {e.asset for e in events_together} == {f"{TAG}-1"}


def test_an_opened_alert_is_explained_in_the_boards_words_for_the_hmi(bundle):
    """The agent says why an alert opened without the server: the sensor that pushed the opening window's
    score most (exact SHAP of the bundle's ONNX file against its background) in detection.wording's
    sentence; the local write-back payload carries it as the server's does (top_sensor_text)."""
    d = decider(bundle)
    events = feed(d, simulator(fault_at=FAULT_AT), TRAIN_S, FAULT_AT + 900.0)
    opened = next(e for e in events if e.kind == "opened")
    assert opened.reason == "" and d._opening_inputs  # decided without the words: they never delay it
    told = d.explained(opened)
    assert told.key == opened.key and told.body() == opened.body()  # the server gets the same event
    # Bearing wear shows on the vibration first (plant.simulator); the sentence names it with its unit.
    assert told.sensor == "Vibration RMS" and "mm/s" in told.reason
    # The same words as explaining that window's input directly with the server's functions.
    model = d.model
    scored = model.score(series_of(simulator(fault_at=FAULT_AT), TRAIN_S, FAULT_AT + 900.0))
    x = scored.inputs[int(np.flatnonzero(scored.ends == opened.at)[0])]
    background = np.asarray(bundle.spec["background"])
    result = explain(model.bundle.model, x, background, model.spec["feature_names"], model.output_spec)
    roles = {k: tuple(v) for k, v in bundle.spec["role_words"].items()}
    top = wording.reasons(
        result,
        typical_ranges(background, model.spec["feature_names"]),
        roles,
        open_threshold=model.rule_params.open_threshold,
        top=1,
    )[0]
    assert (told.sensor, told.reason) == (top.sensor, top.sentence)
    assert d.explained(opened) is opened  # explained once; the input is not kept

    publisher = LocalPublisher({"publish": {"protocol": "mqtt", "endpoint": "mqtt://127.0.0.1:1883"}}, "demo")
    asyncio.run(publisher.publish(told))
    payload = publisher._pending.get_nowait().payload
    assert payload["top_sensor_text"] == told.reason and payload["category_label"] == "Vibration RMS"
    assert payload["text"].startswith("p-101 Vibration RMS alert, ")


def test_a_bundle_without_a_background_opens_alerts_without_words(bundle, tmp_path):
    spec = {k: v for k, v in bundle.spec.items() if k not in ("background", "role_words")}
    path = tmp_path / "plain.zip"
    path.write_bytes(pack_bundle(load_bundle(str(bundle.path)).model, spec))
    d = AssetDecider(TAG, EdgeModel(load_bundle(str(path))), {k: r for r, k in sensors().items()})
    opened = next(e for e in feed(d, simulator(fault_at=FAULT_AT), TRAIN_S, FAULT_AT + 900.0))
    told = d.explained(opened)
    assert told.reason == told.sensor == "" and told.body() == opened.body()
    # Where to look first still comes with it: the gate's provisional answer (no flags here: the machine).
    assert told.category == "machine_fault" and told.what == ""


def test_a_model_switched_mid_episode_decides_at_once_and_clears_the_episode_instead_of_raising_it_again(
    bundle,
):
    faulty, healthy = simulator(fault_at=FAULT_AT), simulator()
    old = decider(bundle)
    events = feed(old, faulty, TRAIN_S, FAULT_AT + 400.0)
    assert [e.kind for e in events] == ["opened"]
    new = decider(bundle)  # the switched-to model (the agent's switch and rollback both take over)
    new.take_over(old)
    assert feed(new, faulty, FAULT_AT + 400.0, FAULT_AT + 405.0) == [] and new.last_scored  # no window's wait
    more = feed(new, faulty, FAULT_AT + 405.0, FAULT_AT + 900.0)
    more += feed(new, healthy, FAULT_AT + 900.0, FAULT_AT + 1_800.0)
    assert [e.kind for e in more] == ["cleared"] and more[0].first == events[0].first
    assert more[0].key == events[0].key.replace("/opened", "/cleared")  # the same episode's number
    assert not new.in_alert


def _with_quality(bundle, tmp_path, **sensor_settings) -> AssetDecider:
    """The test bundle as models_registry.bundle exports it for an asset: with the ingest's quality rules
    (the settings' defaults) and each sensor's valid range and sample period (1 s, the simulator's)."""
    settings = {key: [None, None, 1.0] for key in sensors().values()} | sensor_settings
    rules = {"spike_mads": 8.0, "stuck_samples": 20, "gap_factor": 3.0, "window": 30}
    spec = bundle.spec | {"quality": {"rules": rules, "sensors": settings}}
    path = tmp_path / "quality.zip"
    path.write_bytes(pack_bundle(load_bundle(str(bundle.path)).model, spec))
    return AssetDecider(TAG, EdgeModel(load_bundle(str(path))), {k: r for r, k in sensors().items()})


def _stuck_from(sim, t0: float, t1: float, stuck_at: float, key: str, chunk: float = 5.0):
    """The simulator's samples from t0 to t1 in chunks, ``key``'s value frozen from ``stuck_at`` on."""
    frozen = None
    t = t0
    while t < t1:
        batch = []
        for s in samples_of(sim, t, min(t + chunk, t1)):
            if s.point == key and s.ts >= stuck_at:
                frozen = s.value if frozen is None else frozen
                s = s._replace(value=frozen)
            batch.append(s)
        yield batch
        t += chunk


def test_a_stuck_sensor_alert_tells_the_hmi_to_check_the_sensor_as_the_servers_write_back_does(
    bundle, tmp_path
):
    """The agent flags its readings with the ingest's rules (detection.quality, the bundle's settings) and
    files its alert by the server's quality gate (detection.gate): a vibration sensor stuck on one value
    opens an alert driven by that sensor, which the HMI hears as a sensor fault, in the server's words
    ("<sensor> sensor alert") and with the server's category field."""
    d = _with_quality(bundle, tmp_path)
    key = sensors()["vibration"]
    events = []
    for batch in _stuck_from(simulator(), TRAIN_S, TRAIN_S + 1_200.0, TRAIN_S + 300.0, key):
        d.add(batch)
        events += d.decide()
    opened = next(e for e in events if e.kind == "opened")
    assert opened.at > TRAIN_S + 300.0
    flags = d._opening_flags[opened.key]
    assert flags["vibration"] & quality.STUCK and not flags["flow"]  # the ingest's STUCK flag
    told = d.explained(opened)
    assert told.sensor == "Vibration RMS" and told.category == "sensor_fault"
    assert told.what == "Vibration RMS sensor"

    publisher = LocalPublisher({"publish": {"protocol": "mqtt", "endpoint": "mqtt://127.0.0.1:1883"}}, "demo")
    asyncio.run(publisher.publish(told))
    payload = publisher._pending.get_nowait().payload
    assert payload["category"] == "sensor_fault" and payload["category_label"] == "Vibration RMS sensor"
    assert payload["text"].startswith("p-101 Vibration RMS sensor alert, ")
    # What the HMI's clients write (the OPC UA text node, the MQTT message): the server's AlertState.
    assert state_of(f"demo/{TAG}", payload).text.startswith("p-101 Vibration RMS sensor alert, ")

    # The same readings through a bundle exported before the rules were shipped: unflagged, the machine.
    plain, found = decider(bundle), []
    for batch in _stuck_from(simulator(), TRAIN_S, TRAIN_S + 1_200.0, TRAIN_S + 300.0, key):
        plain.add(batch)
        found += [e for e in plain.decide() if e.kind == "opened"]
    assert found and plain.explained(found[0]).category == "machine_fault"


def test_a_clock_jump_seen_long_before_this_assets_next_readings_is_still_followed(bundle, monkeypatch):
    """The agent sees the gateway's clock set back an hour (another source's batch) while this asset's
    source is silent for two minutes (reconnecting); its readings then come dated by the set-back clock.
    Before, the jump was forgotten 30 s after it was seen: the readings fell behind the windows decided and
    nothing was decided for the hour. Now the grace runs from the asset's first reading after the jump."""
    steady = SimpleNamespace(now=0.0)
    monkeypatch.setattr(decide_module, "time", SimpleNamespace(monotonic=lambda: steady.now))
    d, sim = decider(bundle), simulator()

    def feed_dated(t0: float, t1: float, dated: float) -> list[float]:
        deciding = []
        for t in np.arange(t0, t1, 5.0):
            steady.now = t
            d.add([s._replace(ts=s.ts + dated) for s in samples_of(sim, t, t + 5.0)])
            d.decide()
            if d.last_scored:
                deciding.append(float(t))
        return deciding

    feed_dated(TRAIN_S, TRAIN_S + 600.0, 0.0)
    steady.now = TRAIN_S + 600.0
    d.clock_jumped(-3_600.0)
    sim.step(TRAIN_S + 600.0, TRAIN_S + 720.0)  # this asset's readings of those two minutes never come
    deciding = feed_dated(TRAIN_S + 720.0, TRAIN_S + 1_200.0, -3_600.0)
    # Decisions again once a window holds enough readings, then every step.
    assert deciding and deciding[0] <= TRAIN_S + 720.0 + WINDOW_S, deciding
    settled = [t for t in deciding if t >= TRAIN_S + 720.0 + WINDOW_S]
    assert max(np.diff(settled)) <= STEP_S and deciding[-1] >= TRAIN_S + 1_200.0 - STEP_S
    assert d.last_end is not None and d.last_end <= TRAIN_S + 1_200.0 - 3_600.0  # on the set-back time line


def test_two_jumps_before_this_assets_next_reading_are_followed_as_one(bundle, monkeypatch):
    steady = SimpleNamespace(now=0.0)
    monkeypatch.setattr(decide_module, "time", SimpleNamespace(monotonic=lambda: steady.now))
    d, sim = decider(bundle), simulator()
    for t in np.arange(TRAIN_S, TRAIN_S + 300.0, 5.0):
        steady.now = t
        d.add(samples_of(sim, t, t + 5.0))
        d.decide()
    d.clock_jumped(-3_600.0)  # set back an hour, then NTP steps it forward ten minutes of it
    d.clock_jumped(600.0)
    deciding = []
    for t in np.arange(TRAIN_S + 300.0, TRAIN_S + 600.0, 5.0):
        steady.now = t
        d.add([s._replace(ts=s.ts - 3_000.0) for s in samples_of(sim, t, t + 5.0)])
        d.decide()
        deciding += [float(t)] if d.last_scored else []
    assert deciding and max(np.diff(deciding)) <= STEP_S and deciding[0] <= TRAIN_S + 300.0 + STEP_S


def test_readings_missing_in_the_opening_window_tell_the_hmi_to_check_the_data_link(bundle, tmp_path):
    """The vibration's link drops for 8 s every minute while the bearing wears: the opening window's driving
    sensor has gaps (the ingest's GAP flag), so the HMI hears "check the data link", in the server's words
    (alerts.services.board.data_link_words without stored gaps: detection.gate.went_missing)."""
    d = _with_quality(bundle, tmp_path)
    key = sensors()["vibration"]
    sim = simulator(fault_at=FAULT_AT)
    events = []
    for t in np.arange(TRAIN_S, FAULT_AT + 900.0, 5.0):
        batch = samples_of(sim, t, t + 5.0)
        d.add([s for s in batch if not (s.point == key and s.ts >= FAULT_AT and int(s.ts) % 60 < 8)])
        events += d.decide()
    opened = next(e for e in events if e.kind == "opened")
    assert d._opening_flags[opened.key]["vibration"] & quality.GAP
    told = d.explained(opened)
    assert (told.category, told.sensor, told.what) == (
        "data_link",
        "Vibration RMS",
        "vibration rms data link",
    )
    assert told.reason.startswith("Readings of the vibration rms sensor went missing in this alert's window")

    publisher = LocalPublisher({"publish": {"protocol": "mqtt", "endpoint": "mqtt://127.0.0.1:1883"}}, "demo")
    asyncio.run(publisher.publish(told))
    payload = publisher._pending.get_nowait().payload
    assert payload["category"] == "data_link" and payload["top_sensor_text"] == told.reason
    assert state_of(f"demo/{TAG}", payload).text.startswith("p-101 vibration rms data link alert, ")


def test_a_slow_sensor_keeps_the_readings_the_quality_rules_look_back_on_and_is_flagged_as_on_the_server(
    bundle, tmp_path
):
    """A vibration transmitter sampled every 10 s, stuck for 10 minutes. The buffer was trimmed to the next
    window and a few steps (100 s: 10 of its readings), so its run never reached the 20 the stuck rule asks
    for: the agent never flagged it, while the server (30 stored readings of context) did from the 20th.
    Now each role keeps the readings the rules look back on, however old, and every buffered reading
    carries the flags the whole stream gives it (detection.quality)."""
    key = sensors()["vibration"]
    d = _with_quality(bundle, tmp_path, **{key: [None, None, 10.0]})
    sim, frozen, kept = simulator(), None, []
    for t in np.arange(TRAIN_S, TRAIN_S + 1_200.0, 5.0):
        batch = []
        for s in samples_of(sim, t, t + 5.0):
            if s.point == key:
                if int(s.ts) % 10:
                    continue
                if s.ts >= TRAIN_S + 600.0:
                    frozen = s.value if frozen is None else frozen
                    s = s._replace(value=frozen)
                kept.append(s)
            batch.append(s)
        d.add(batch)
        d.decide()
    ts = np.array([s.ts for s in kept])
    values = np.array([s.value for s in kept])
    whole = quality.flag_series(
        ts,
        values,
        0,
        valid_min=None,
        valid_max=None,
        sample_period_s=10.0,
        spike_mads=8.0,
        stuck_samples=20,
        gap_factor=3.0,
    )
    buffered = d._buffers["vibration"]
    at = np.searchsorted(ts, buffered.ts)
    assert np.array_equal(ts[at], buffered.ts) and buffered.ts[-1] == ts[-1]
    assert np.asarray(buffered.quality)[-1] & quality.STUCK
    np.testing.assert_array_equal(buffered.quality, whole[at])
