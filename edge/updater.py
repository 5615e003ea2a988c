"""The agent's side of a staged rollout: poll the server's assignments and carry each through
download → verify → install → shadow → (approved) atomic switch → watch → (if needed) rollback.

Every step that fails leaves the current model running and is reported to the server with its reason
(``/api/v1/edge/outcomes``: refused, rolled_back); a switch is reported as active. A server that cannot
answer now (unreachable, a 5xx such as its 503 while the database is away, 429) is no reason to refuse:
the step is tried again at the next poll. The shadow trial's
record is sent on every poll (``/api/v1/edge/shadow-reports``) so the rollout page stays current.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from detection.bundle import load_bundle
from edge.agent import Agent
from edge.model import EdgeModel
from edge.updates import UpdateError, verify_bundle

logger = logging.getLogger("edge.updater")

# Answers to a bundle download that say "not now" (besides every 5xx): the update waits for the next poll.
RETRY_LATER = frozenset({408, 425, 429})


@dataclass(frozen=True)
class UpdatePolicy:
    """How a switched model is watched: roll back past ``rollback_factor`` × the shadow alert rate."""

    rollback_factor: float = 3.0


class Updater:
    def __init__(
        self,
        agent: Agent,
        client: httpx.AsyncClient,
        public_key: Ed25519PublicKey,
        policy: UpdatePolicy | None = None,
    ) -> None:
        self.agent = agent
        self.client = client
        self.public_key = public_key
        self.policy = policy or UpdatePolicy()
        self.trials: dict[str, int] = {}  # asset -> assignment id in shadow
        self.switched: dict[str, int] = {  # asset -> assignment id being watched (also after a restart)
            tag: watch.assignment for tag, watch in agent.watches.items() if watch.assignment is not None
        }
        self.refused: set[int] = set()

    async def poll_once(self) -> None:
        # Models that failed to load at the agent's start were rolled back by it: say so first.
        while self.agent.load_failures:
            tag, assignment, why = self.agent.load_failures[0]
            if assignment is not None:
                self.refused.add(assignment)
                await self._outcome(assignment, "rolled_back", why)
            self.agent.load_failures.pop(0)
        response = await self.client.get("/api/v1/edge/assignments")
        response.raise_for_status()
        for assignment in response.json().get("assignments", []):
            tag = assignment["asset"]
            if tag not in self.agent.deciders or assignment["id"] in self.refused:
                continue
            try:
                await self._step(assignment)
            except UpdateError as exc:
                self.refused.add(assignment["id"])
                self.agent.shadows.pop(tag, None)
                logger.warning("update %s for %s refused: %s", assignment["id"], tag, exc)
                await self._outcome(assignment["id"], "refused", str(exc))
        await self._watch()
        await self._report_trials()

    async def _step(self, assignment: dict[str, Any]) -> None:
        tag, sha, stage = assignment["asset"], assignment["sha256"], assignment["stage"]
        store = self.agent.store
        if stage == "active":
            return
        if store.current(tag) == sha:
            if stage == "approved":
                # Switched on disk, but the agent stopped (a kill, a power cut) before reporting it: the
                # server would wait for the outcome forever. Report it now; a failed report is retried
                # at the next poll, as the assignment is still approved.
                await self._outcome(assignment["id"], "active", "switched (reported after a restart)")
            return
        if not store.installed(tag, sha):
            download = await self.client.get(assignment["bundle_url"])
            if download.status_code in RETRY_LATER or download.status_code >= 500:
                # The server (or a proxy before it) cannot answer now: an outage, not a bad bundle. Raised as
                # an httpx error, so the poll is tried again later and nothing is reported refused.
                download.raise_for_status()
            if download.status_code != 200:
                raise UpdateError(f"the bundle download answered HTTP {download.status_code}")
            model = verify_bundle(
                download.content, tag, sha, bytes.fromhex(assignment["signature"]), self.public_key
            )
            store.install(tag, sha, download.content)
        else:
            model = EdgeModel(load_bundle(str(store.bundle_path(tag, sha))))
        if stage == "shadow" and self.trials.get(tag) != assignment["id"]:
            self.agent.start_shadow(tag, model, sha)
            self.trials[tag] = assignment["id"]
        elif stage == "approved":
            trial = self.agent.shadows.get(tag, (None, None))[1]
            expected = trial.candidate_per_hour if trial is not None else 0.0
            share = trial.candidate_share if trial is not None else 0.0
            store.switch(tag, sha)
            self.agent.switch(
                tag,
                model,
                expected_per_hour=expected,
                expected_share=share,
                factor=self.policy.rollback_factor,
                assignment=assignment["id"],
            )
            self.trials.pop(tag, None)
            self.switched[tag] = assignment["id"]
            await self._outcome(assignment["id"], "active", "switched")

    async def _watch(self) -> None:
        for tag, watch in list(self.agent.watches.items()):
            reason = watch.exceeded()
            if reason is None:
                continue
            previous = self.agent.store.rollback(tag)
            self.agent.restore_model(
                tag, EdgeModel(load_bundle(str(self.agent.store.bundle_path(tag, previous))))
            )
            assignment = self.switched.pop(tag, None)
            logger.warning("rolled %s back to %s: %s", tag, previous[:12], reason)
            if assignment is not None:
                self.refused.add(assignment)
                await self._outcome(assignment, "rolled_back", reason)

    async def _report_trials(self) -> None:
        reports = []
        for tag, assignment in self.trials.items():
            shadow = self.agent.shadows.get(tag)
            if shadow is not None:
                reports.append({"id": assignment, **shadow[1].report()})
        if reports:
            await self.client.post("/api/v1/edge/shadow-reports", json={"reports": reports})

    async def _outcome(self, assignment: int, outcome: str, reason: str) -> None:
        try:
            await self.client.post(
                "/api/v1/edge/outcomes",
                json={"outcomes": [{"id": assignment, "outcome": outcome, "reason": reason[:300]}]},
            )
        except httpx.HTTPError as exc:  # the next poll reports again what still differs
            logger.info("could not report %s of assignment %s: %s", outcome, assignment, exc)

    async def run(self, stop: asyncio.Event, poll_s: float = 30.0) -> None:
        while not stop.is_set():
            try:
                await self.poll_once()
            except (httpx.HTTPError, ValueError) as exc:
                logger.info("update poll failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=poll_s)
            except TimeoutError:
                pass
