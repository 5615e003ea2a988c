"""Fixtures of the notification tests: a site with rules and channels, the built-in inbox, the queued
sends captured (and run by hand), and alerts raised through the real lifecycle."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache

from alerts import broadcast
from notify import tasks
from notify.delivery import send_notification
from notify.models import Channel, Notification, Rule
from notify.services import notified_assets
from plant.connections.secrets import encrypt
from tests.alerts.builders import bare_champion
from tests.alerts.conftest import OPEN, score, windows


@pytest.fixture(autouse=True)
def notify_settings(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.VIGIL_ALERT_OPEN_WINDOWS = 3
    settings.VIGIL_ALERT_CLEAR_WINDOWS = 6
    settings.VIGIL_NOTIFY_BACKOFF_S = 30.0
    settings.VIGIL_NOTIFY_RETRIES = 2
    settings.VIGIL_PUBLIC_URL = "https://vigil.example.com"
    cache.clear()
    broadcast.reset()
    notified_assets.forget()
    yield settings
    notified_assets.forget()
    broadcast.reset()


@pytest.fixture
def queued(monkeypatch) -> list[int]:
    """The ids the send task was queued with, in order (no broker: the tests run them by hand)."""
    calls: list[int] = []
    monkeypatch.setattr(tasks.send_notification_task, "delay", lambda pk: calls.append(pk))
    monkeypatch.setattr(
        tasks.send_notification_task, "apply_async", lambda args, countdown=None: calls.append(args[0])
    )
    return calls


def run_queued(queued: list[int]) -> None:
    """Run every queued send once, as a worker would (retries are queued again, not run)."""
    pending, queued[:] = list(queued), []
    for pk in pending:
        send_notification(pk)


def make_channel(site, name: str, url: str, **fields) -> Channel:
    return Channel.objects.create(site=site, name=name, url_encrypted=encrypt(url), **fields)


@pytest.fixture
def version(asset):
    return bare_champion(asset.asset_type)


@pytest.fixture
def inbox(site) -> Channel:
    return make_channel(site, "technicians", f"vigil://{site.slug}/technicians")


@pytest.fixture
def supervisor(site) -> Channel:
    return make_channel(site, "supervisor", f"vigil://{site.slug}/supervisor")


@pytest.fixture
def ladder(site, inbox, supervisor) -> list[Rule]:
    """High alerts to the technicians at once, to the supervisor when unacknowledged after 15 minutes;
    everything else to the technicians only."""
    return [
        Rule.objects.create(
            site=site,
            name="high",
            min_severity="high",
            tier=1,
            channel=inbox,
            escalate_after=timedelta(minutes=15),
        ),
        Rule.objects.create(site=site, name="all", min_severity="low", tier=1, channel=inbox),
        Rule.objects.create(site=site, name="supervisor", min_severity="high", tier=2, channel=supervisor),
    ]


def raise_alert(asset, version, django_capture_on_commit_callbacks, first: int = 0, peak: float = OPEN + 1):
    """Score three anomalous windows through the real lifecycle, running its on-commit callbacks."""
    with django_capture_on_commit_callbacks(execute=True):
        score(asset, version, windows(first, [peak] * 3))


def notifications(**lookup) -> list[Notification]:
    return list(Notification.objects.filter(**lookup).order_by("pk"))


@pytest.fixture(autouse=True)
def no_explanation_queue(monkeypatch):
    """Alerts of a bare champion have no explanation: their completion task is not queued (no broker)."""
    from alerts import tasks as alert_tasks

    monkeypatch.setattr(alert_tasks.complete_explanation_task, "delay", lambda pk: None)
