"""The Score table has no database foreign keys (the sweep's high-volume rows are not checked row by row at
commit): the ORM's cascades must still remove an asset's and a model version's scores."""

from __future__ import annotations

from django.db import connection

from alerts.models import Score
from alerts.scoring import score_assets
from tests.conftest import make_asset
from tests.scoring.conftest import START_S, ingest, vibration_model


def _sweep(site):
    assets = [make_asset(site, tag=f"p-{i}") for i in range(2)]
    champion = vibration_model(assets[0].asset_type)
    shadow = vibration_model(assets[0].asset_type, shadow=True, name="pump-vib-shadow")
    for asset in assets:
        ingest(asset, START_S, 120)
    score_assets([a.pk for a in assets])
    return assets, champion, shadow


def _counts(assets, versions) -> dict[tuple[int, int], int]:
    return {
        (a.pk, v.pk): Score.objects.filter(asset=a, model_version=v).count() for a in assets for v in versions
    }


def test_deleting_an_asset_or_a_model_version_deletes_its_scores(site):
    assets, champion, shadow = _sweep(site)
    versions = [champion, shadow]
    windows = len(range(30, 120, 10))
    assert set(_counts(assets, versions).values()) == {windows}  # the sweep stored both versions' rows

    gone = assets[0].pk
    assets[0].delete()
    assert not Score.objects.filter(asset_id=gone).exists()
    assert _counts(assets[1:], versions) == {(assets[1].pk, v.pk): windows for v in versions}

    shadow_pk = shadow.pk
    shadow.delete()
    assert not Score.objects.filter(model_version_id=shadow_pk).exists()
    assert _counts(assets[1:], [champion]) == {(assets[1].pk, champion.pk): windows}


def test_the_score_table_has_no_foreign_key_constraints_nor_an_asset_only_index(db):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Score._meta.db_table)

    assert [name for name, c in constraints.items() if c["foreign_key"]] == []
    indexed = sorted(tuple(c["columns"]) for c in constraints.values() if c["index"] or c["unique"])
    assert ("asset_id",) not in indexed
    assert ("asset_id", "model_version_id", "window_end") in indexed
    assert ("model_version_id",) in indexed  # a version's cascade and per-version counts still use one
