"""The demo's notifications: the seed configures the inbox page's boxes, and an alert left alone reaches
the supervisor's box within the demo's minutes."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import time_machine

from demo.seed import DEMO_ESCALATE_AFTER, DEMO_SITE, seed_demo
from notify.models import Channel, InboxMessage, Rule
from notify.services import escalate_due
from plant.models import Asset
from tests.alerts.builders import bare_champion, make_alert
from tests.notify.conftest import run_queued


def test_the_demo_escalates_an_unacknowledged_alert_to_the_supervisors_box(
    db, tmp_path, queued, django_capture_on_commit_callbacks
):
    seed_demo(assets=1, credentials_path=tmp_path / "credentials.json")
    seed_demo(assets=1, credentials_path=tmp_path / "credentials.json")  # a second run changes nothing
    assert Channel.objects.count() == 2 and Rule.objects.count() == 2
    asset = Asset.objects.get(site__slug=DEMO_SITE[0])
    version = bare_champion(asset.asset_type)
    start = datetime(2026, 3, 2, 8, 0, tzinfo=dt_timezone.utc)
    with time_machine.travel(start, tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            make_alert(asset, version, opened=start)
        run_queued(queued)
    with time_machine.travel(start + DEMO_ESCALATE_AFTER + timedelta(seconds=30), tick=False):  # next sweep
        with django_capture_on_commit_callbacks(execute=True):
            escalate_due()
        run_queued(queued)
    boxes = list(InboxMessage.objects.order_by("at", "pk").values_list("box", "title"))
    assert [box for box, _ in boxes] == ["technicians", "supervisor"]
    assert boxes[1][1].startswith("Escalated: ")
