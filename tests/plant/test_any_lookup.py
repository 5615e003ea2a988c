"""``field__any=ids`` (plant.lookups): the rows ``__in`` gives, with the ids as one parameter on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from plant.models import Asset, Sensor
from tests.conftest import make_asset

pytestmark = pytest.mark.django_db


def test_any_selects_what_in_selects_on_ids_and_foreign_keys(site):
    assets = [make_asset(site, tag=f"p-{i}") for i in range(3)]
    ids = [assets[2].pk, assets[0].pk, assets[0].pk]

    assert set(Asset.objects.filter(pk__any=ids)) == set(Asset.objects.filter(pk__in=ids))
    assert set(Sensor.objects.filter(asset_id__any=ids)) == set(Sensor.objects.filter(asset_id__in=ids))
    assert set(Sensor.objects.filter(asset__any=ids)) == set(Sensor.objects.filter(asset__in=ids))
    assert list(Asset.objects.filter(pk__any=[])) == []
    assert Asset.objects.exclude(pk__any=[assets[1].pk]).count() == 2


def test_any_sends_one_parameter_whatever_the_number_of_ids(site):
    asset = make_asset(site)
    with CaptureQueriesContext(connection) as captured:
        assert list(Asset.objects.filter(pk__any=[asset.pk, *range(10**6, 10**6 + 500)])) == [asset]
    sql = captured.captured_queries[0]["sql"]
    if connection.vendor == "postgresql":
        assert "= ANY(" in sql and " IN (" not in sql  # the ids travel as one array literal
    else:
        assert " IN (" in sql
