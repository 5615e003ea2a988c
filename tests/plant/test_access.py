"""plant.access: the one site rule and the role checks every page, API, consumer and console share."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.http import Http404
from django.test import RequestFactory

from alerts.services import alerts_for_user
from plant.access import (
    get_asset_for_user,
    get_site_for_user,
    is_engineer,
    scope_to_sites,
    sees_all_sites_of,
    site_ids_for_user,
    sites_for_user,
)
from plant.models import Asset, Sensor, Site
from tests.conftest import make_user


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root", password="x")


def request_as(user) -> object:
    request = RequestFactory().get("/")
    request.user = user
    return request


def test_anonymous_users_see_no_site_and_no_row(asset):
    anonymous = AnonymousUser()

    assert site_ids_for_user(anonymous) == []
    assert not scope_to_sites(Sensor.objects.all(), anonymous, "asset__site").exists()
    # alerts_for_user used to filter on the anonymous user itself: a TypeError instead of nothing.
    assert list(alerts_for_user(anonymous)) == []
    with pytest.raises(Http404):
        get_asset_for_user(request_as(anonymous), asset.pk)


def test_members_see_their_sites_only_and_superusers_every_site(
    site, other_site, technician, outsider, superuser
):
    assert list(sites_for_user(technician)) == [site]
    assert site_ids_for_user(outsider) == [other_site.pk]
    assert set(sites_for_user(superuser)) == {site, other_site}
    assert sees_all_sites_of(superuser, Site.objects.all())
    assert not sees_all_sites_of(technician, Site.objects.all())
    assert sees_all_sites_of(technician, Site.objects.filter(pk=site.pk))


def test_another_sites_object_is_as_absent_as_a_missing_one(site, asset, other_asset, technician):
    request = request_as(technician)

    assert get_site_for_user(request, site.slug) == site
    assert get_asset_for_user(request, asset.pk) == asset
    for look_up in (
        lambda: get_site_for_user(request, other_asset.site.slug),
        lambda: get_asset_for_user(request, other_asset.pk),
        lambda: get_asset_for_user(request, 999_999),
    ):
        with pytest.raises(Http404):
            look_up()


def test_a_path_of_none_keeps_every_row_and_an_empty_path_scopes_sites_themselves(
    site, other_site, asset, other_asset, technician
):
    assert set(scope_to_sites(Asset.objects.all(), technician, None)) == {asset, other_asset}
    assert list(scope_to_sites(Site.objects.all(), technician, "")) == [site]


def test_is_engineer_asks_the_groups_once_per_user(
    site, engineer, technician, superuser, django_assert_num_queries
):
    with django_assert_num_queries(1):
        assert is_engineer(engineer) and is_engineer(engineer)
    with django_assert_num_queries(1):
        assert not is_engineer(technician) and not is_engineer(technician)
    with django_assert_num_queries(0):
        assert is_engineer(superuser) and not is_engineer(AnonymousUser())


def test_an_engineer_without_staff_status_is_still_an_engineer(site):
    user = make_user("nina", "engineer", site)
    User.objects.filter(pk=user.pk).update(is_staff=False)
    user.refresh_from_db()

    assert is_engineer(user)
