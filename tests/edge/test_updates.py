"""Model updates at the edge: only the server's signed bundle is installed, the switch is atomic under
kill -9, a candidate that would raise 10× the alerts is not approved, and a switched model that floods is
rolled back."""

from __future__ import annotations

import asyncio
import json
import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from detection.bundle import load_bundle, pack_bundle, signed_message
from edge.agent import Agent
from edge.config import AgentConfig, AssetConfig
from edge.model import EdgeModel
from edge.queue import LocalQueue
from edge.updater import Updater
from edge.updates import (
    ModelStore,
    ShadowTrial,
    SwitchWatch,
    UpdateError,
    load_public_key,
    verify_bundle,
)
from tests.edge.conftest import make_bundle, unreachable_server_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def signer():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def public_pem(signer) -> bytes:
    return signer.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def signed(signer, data: bytes, asset: str = "p-101") -> tuple[str, bytes]:
    sha = hashlib.sha256(data).hexdigest()
    return sha, signer.sign(signed_message(asset, sha))


def test_a_signed_bundle_verifies_and_loads(bundle, signer, public_pem):
    sha, signature = signed(signer, bundle.zip_bytes)
    model = verify_bundle(bundle.zip_bytes, "p-101", sha, signature, load_public_key(public_pem))
    assert isinstance(model, EdgeModel)


def test_corrupt_unsigned_or_misdirected_bundles_are_refused(bundle, signer, public_pem):
    key = load_public_key(public_pem)
    sha, signature = signed(signer, bundle.zip_bytes)
    damaged = bytearray(bundle.zip_bytes)
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(UpdateError, match="sha256"):
        verify_bundle(bytes(damaged), "p-101", sha, signature, key)
    with pytest.raises(UpdateError, match="signature"):
        verify_bundle(bundle.zip_bytes, "p-101", sha, Ed25519PrivateKey.generate().sign(b"x"), key)
    with pytest.raises(UpdateError, match="signature"):  # signed for another asset
        verify_bundle(bundle.zip_bytes, "p-102", sha, signature, key)
    # Signed, checksummed, but not a model this agent can run.
    broken = pack_bundle(b"not onnx", dict(load_bundle(str(bundle.path)).spec))
    sha_b, sig_b = signed(signer, broken)
    with pytest.raises(UpdateError, match="does not load"):
        verify_bundle(broken, "p-101", sha_b, sig_b, key)


def test_install_switch_and_rollback(tmp_path: Path, bundle):
    store = ModelStore(tmp_path / "models")
    other = make_bundle(tmp_path, open_factor=2.0).zip_bytes
    a, b = hashlib.sha256(bundle.zip_bytes).hexdigest(), hashlib.sha256(other).hexdigest()
    store.install("p-101", a, bundle.zip_bytes)
    store.install("p-101", a, bundle.zip_bytes)  # idempotent
    with pytest.raises(UpdateError, match="not installed"):
        store.switch("p-101", b)
    store.switch("p-101", a)
    assert store.current("p-101") == a and store.previous("p-101") is None
    store.install("p-101", b, other)
    store.switch("p-101", b)
    assert (store.current("p-101"), store.previous("p-101")) == (b, a)
    assert store.rollback("p-101") == a
    assert (store.current("p-101"), store.previous("p-101")) == (a, b)
    assert store.load("p-101").spec == load_bundle(str(bundle.path)).spec


UPDATER = """
import hashlib, shutil, sys
from pathlib import Path
from edge.updates import ModelStore
root, first, second = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes(), Path(sys.argv[3]).read_bytes()
store = ModelStore(root)
shas = [hashlib.sha256(d).hexdigest() for d in (first, second)]
i = 0
while True:
    data = (first, second)[i % 2]
    store.install("p-101", shas[i % 2], data)
    store.switch("p-101", shas[i % 2])
    print(i, flush=True)
    i += 1
    if i % 7 == 0:  # re-install the next (not current) model from scratch, so kills land inside an install
        shutil.rmtree(root / "p-101" / shas[i % 2], ignore_errors=True)
"""


def test_a_kill_9_at_any_moment_of_an_update_leaves_a_complete_current_model(tmp_path: Path, bundle):
    other = make_bundle(tmp_path, open_factor=2.0)
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    first.write_bytes(bundle.zip_bytes)
    second.write_bytes(other.zip_bytes)
    root = tmp_path / "models"
    for attempt in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", UPDATER, str(root), str(first), str(second)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one complete update
        time.sleep(0.01 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = ModelStore(root)
        current = store.current("p-101")
        assert current is not None
        EdgeModel(store.load("p-101"))  # complete and loadable
        assert hashlib.sha256(store.bundle_path("p-101").read_bytes()).hexdigest() == current


def test_a_candidate_raising_ten_times_the_alerts_is_not_approved():
    trial = ShadowTrial("p-101", "c" * 64)
    windows = [(float(t), float((t // 10) % 5)) for t in range(0, 3600, 10)]
    trial.record(windows, [(t, s * 2 + 0.1) for t, s in windows])
    trial.count_alerts(current=1, candidate=10)
    ok, why = trial.within(max_alert_factor=3.0, min_correlation=0.5, min_windows=100)
    assert not ok and "10 alerts" in why
    trial.alerts_candidate = 2
    assert trial.within(3.0, 0.5, 100) == (True, "within bounds")
    assert trial.report()["score_correlation"] == pytest.approx(1.0)
    assert trial.within(3.0, 0.5, 1000)[0] is False  # too few windows compared


def test_a_switched_model_that_floods_is_rolled_back_and_a_quiet_one_is_not():
    watch = SwitchWatch("p-101", expected_per_hour=0.5, factor=3.0)
    watch.observe([0.0, 3600.0], opened=2)
    assert watch.exceeded() is None  # 2 <= 3 × 0.5 × 1 h + 1
    watch.observe([7200.0], opened=10)
    reason = watch.exceeded()
    assert reason and "12 alerts in 2.00 h" in reason


def test_a_current_model_that_no_longer_loads_is_rolled_back_at_start_and_reported(tmp_path: Path, bundle):
    first = tmp_path / "first.zip"
    first.write_bytes(bundle.zip_bytes)
    config = AgentConfig(
        server_url="http://vigil.invalid",
        token="t",
        data_dir=tmp_path / "agent",
        queue_max_bytes=8 << 20,
        heartbeat_s=60,
        assets=(AssetConfig("p-101", first),),
        raw={},
    )
    Agent(config).queue.close()  # installs the first model
    other = make_bundle(tmp_path, open_factor=2.0).zip_bytes
    store = ModelStore(tmp_path / "agent" / "models")
    sha = hashlib.sha256(other).hexdigest()
    store.install("p-101", sha, other)
    store.switch("p-101", sha)
    queue = LocalQueue(tmp_path / "agent" / "queue.sqlite3", 8 << 20)
    queue.save_state("watches", {"p-101": SwitchWatch("p-101", 0.5, 3.0, assignment=7).state()})
    queue.close()
    (tmp_path / "agent" / "models" / "p-101" / sha / "bundle.zip").write_bytes(b"damaged on disk")

    agent = Agent(config)
    assert store.current("p-101") == hashlib.sha256(bundle.zip_bytes).hexdigest()  # back on the first
    assert agent.deciders["p-101"].model.spec == load_bundle(str(first)).spec
    [(tag, assignment, why)] = agent.load_failures
    assert (tag, assignment) == ("p-101", 7) and "failed to load" in why
    assert "p-101" not in agent.watches

    posted: list[dict] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/edge/outcomes":
            posted.append(json.loads(request.content))
            return httpx.Response(200, json={"results": []})
        return httpx.Response(200, json={"assignments": []})

    async def poll() -> None:
        async with httpx.AsyncClient(
            base_url="http://vigil.invalid", transport=httpx.MockTransport(answer)
        ) as client:
            await Updater(agent, client, Ed25519PrivateKey.generate().public_key()).poll_once()

    asyncio.run(poll())
    assert posted == [{"outcomes": [{"id": 7, "outcome": "rolled_back", "reason": why}]}]
    assert agent.load_failures == []
    agent.queue.close()


@pytest.mark.parametrize("unavailable", [503, 502, 429])
def test_a_bundle_download_the_server_cannot_answer_now_is_tried_again_not_refused(
    tmp_path: Path, bundle, signer, public_pem, unavailable: int
):
    # The server answers 503 + Retry-After while it has lost its database (config.middleware), a proxy 502
    # while the web process restarts: the update arrived during an outage. The agent refused it for good and
    # told the server "refused", which ended the rollout until an engineer assigned it again.
    first = tmp_path / "first.zip"
    first.write_bytes(bundle.zip_bytes)
    agent = Agent(unreachable_server_config(first, tmp_path / "agent", 8 << 20))
    candidate = make_bundle(tmp_path, open_factor=2.0).zip_bytes
    sha, signature = signed(signer, candidate)
    assignment = {
        "id": 11,
        "asset": "p-101",
        "sha256": sha,
        "signature": signature.hex(),
        "stage": "shadow",
        "bundle_url": "/api/v1/edge/bundles/11",
    }
    outcomes: list[dict] = []
    downloads = {"answered": 0}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/edge/outcomes":
            outcomes.append(json.loads(request.content))
            return httpx.Response(200, json={"results": []})
        if request.url.path == assignment["bundle_url"]:
            downloads["answered"] += 1
            if downloads["answered"] == 1:
                return httpx.Response(unavailable, json={"error": "database unavailable"})
            return httpx.Response(200, content=candidate)
        if request.url.path == "/api/v1/edge/shadow-reports":
            return httpx.Response(200, json={"results": []})
        return httpx.Response(200, json={"assignments": [assignment]})

    async def poll_twice() -> list[str]:
        async with httpx.AsyncClient(
            base_url="http://vigil.invalid", transport=httpx.MockTransport(answer)
        ) as client:
            updater = Updater(agent, client, load_public_key(public_pem))
            failures = []
            for _ in range(2):
                try:
                    await updater.poll_once()
                except httpx.HTTPError as exc:  # what Updater.run logs and retries at the next poll
                    failures.append(str(exc))
            return failures

    failures = asyncio.run(poll_twice())
    assert outcomes == [], "a passing outage was reported as a refused update"
    assert len(failures) == 1 and str(unavailable) in failures[0]
    assert downloads["answered"] == 2 and "p-101" in agent.shadows  # the next poll took it into shadow
    assert agent.shadows["p-101"][1].sha256 == sha
    agent.queue.close()
