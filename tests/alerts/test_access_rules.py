"""The pages, the nav bar, the noise count and the WebSocket follow plant.access's one site and role rules."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from alerts.broadcast import site_group
from alerts.consumers import _connect_state
from plant.models import Site
from tests.alerts.builders import bare_champion, make_alert
from tests.alerts.test_noise_views import noisy  # noqa: F401  (a fixture)
from tests.alerts.test_noise import base  # noqa: F401  (a fixture)
from tests.conftest import make_user


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root", password="x")


@pytest.fixture
def two_site_alerts(asset, other_asset):
    version = bare_champion(asset.asset_type)
    return [make_alert(asset, version), make_alert(other_asset, version)]


def board_ids(client) -> set[int]:
    html = client.get(reverse("alerts:board")).content.decode()
    return {int(pk) for pk in re.findall(r'<article id="alert-(\d+)"', html)}


@pytest.mark.parametrize("who", ["technician", "outsider", "both", "superuser"])
def test_the_websocket_joins_the_sites_and_knows_the_cards_the_board_page_shows(
    client, who, request, site, other_site, two_site_alerts, superuser
):
    if who == "both":
        user = make_user("bea", "engineer", site, other_site)
    else:
        user = superuser if who == "superuser" else request.getfixturevalue(who)
    client.force_login(user)

    site_ids, on_board = _connect_state(user)

    shown = board_ids(client)
    assert shown and on_board == shown
    sites_of_cards = set(Site.objects.filter(assets__alerts__pk__in=shown).values_list("pk", flat=True))
    assert {site_group(pk) for pk in site_ids} >= {site_group(pk) for pk in sites_of_cards}
    assert len(site_ids) == (2 if who in ("both", "superuser") else 1)


def test_the_nav_lists_every_site_for_a_superuser_as_the_home_page_does(client, site, other_site, superuser):
    client.force_login(superuser)

    home = client.get(reverse("plant:home"))
    html = client.get(reverse("alerts:board")).content.decode()

    assert set(home.context["sites"]) == {site, other_site}
    for shown in (site, other_site):
        assert f'href="{shown.get_absolute_url()}"' in html


def test_an_engineer_without_staff_status_sees_the_noise_count_the_noise_page_lists(
    client,
    site,
    noisy,  # noqa: F811
):
    engineer = make_user("nina", "engineer", site)
    User.objects.filter(pk=engineer.pk).update(is_staff=False)
    client.force_login(engineer)

    assert f'id="noise-{noisy}"' in client.get(reverse("alerts:noise")).content.decode()
    assert "1 noise suggestion<" in client.get(reverse("alerts:board")).content.decode()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("models_registry:index", "This page is for engineers."),
        ("alerts:noise", "This page is for engineers."),
        ("alerts:health", "The alert health page is for engineers and supervisors."),
    ],
)
def test_a_refused_page_says_why(client, technician, url, reason):
    client.force_login(technician)

    response = client.get(reverse(url))

    assert response.status_code == 403 and reason in response.content.decode()
