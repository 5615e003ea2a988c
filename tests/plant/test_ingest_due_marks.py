"""mark_due as one upsert: new marks, kept first-due times, throttled wake-ups, many assets at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import scheduling
from alerts.models import ScoringDue
from alerts.scheduling import mark_due
from tests.conftest import make_asset

pytestmark = pytest.mark.django_db


def test_a_first_mark_creates_a_due_row_with_seq_one_and_wakes_the_asset(asset):
    before = timezone.now()

    assert mark_due([asset.pk, asset.pk]) == [asset.pk]

    mark = ScoringDue.objects.get(asset=asset)
    assert (mark.seq, mark.due, mark.scored_seq) == (1, True, 0)
    assert mark.marked_at >= before and mark.enqueued_at == mark.marked_at


def test_a_due_asset_keeps_the_time_it_first_became_due_and_its_recent_task_time(asset):
    mark_due([asset.pk])
    first = ScoringDue.objects.get(asset=asset)

    assert mark_due([asset.pk]) == []

    again = ScoringDue.objects.get(asset=asset)
    assert again.seq == 2
    assert (again.marked_at, again.enqueued_at) == (first.marked_at, first.enqueued_at)


def test_an_asset_that_was_scored_becomes_due_again_with_a_new_time_and_a_task(asset):
    mark_due([asset.pk])
    long_ago = timezone.now() - timedelta(hours=1)
    ScoringDue.objects.filter(asset=asset).update(due=False, marked_at=long_ago, enqueued_at=timezone.now())

    assert mark_due([asset.pk]) == [asset.pk]

    mark = ScoringDue.objects.get(asset=asset)
    assert mark.due and mark.seq == 2 and mark.marked_at > long_ago


def test_a_due_asset_whose_task_time_was_never_set_is_woken(asset):
    ScoringDue.objects.create(asset=asset, seq=5, due=True, marked_at=timezone.now(), enqueued_at=None)

    assert mark_due([asset.pk]) == [asset.pk]
    assert ScoringDue.objects.get(asset=asset).seq == 6


def test_many_assets_are_marked_across_chunks_and_only_the_stale_ones_woken(site, asset, monkeypatch):
    monkeypatch.setattr(scheduling, "_MARK_CHUNK", 2)
    others = [make_asset(site, tag=f"p-{n}") for n in range(102, 106)]
    ids = sorted([asset.pk, *(other.pk for other in others)])
    mark_due(ids[:3])
    stale = timezone.now() - timedelta(hours=1)
    ScoringDue.objects.filter(asset_id=ids[0]).update(enqueued_at=stale)

    assert mark_due(reversed(ids)) == [ids[0], *ids[3:]]

    seqs = dict(ScoringDue.objects.values_list("asset_id", "seq"))
    assert seqs == {ids[0]: 2, ids[1]: 2, ids[2]: 2, ids[3]: 1, ids[4]: 1}


def test_no_assets_mark_nothing(asset):
    assert mark_due([]) == []
    assert not ScoringDue.objects.exists()
