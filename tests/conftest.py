"""Shared fixtures: named users per role and bulk builders for sites, assets, sensors and readings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, User
from django.http import HttpRequest
from django.test import Client, RequestFactory

from plant.builders import make_asset, make_pump_type, make_site  # noqa: F401 - re-exported for the tests
from plant.models import Asset, Gateway, Sensor, Site
from plant.roles import sync_role_permissions

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=dt_timezone.utc)
PASSWORD = "correct-horse-battery"


def login_request(ip: str = "127.0.0.1") -> HttpRequest:
    """A login POST from `ip`: axes' backend counts failures per request and refuses authenticate() without one."""
    return RequestFactory().post("/accounts/login/", REMOTE_ADDR=ip)


class LoginClient(Client):
    """Django's test client whose login() authenticates with a request, as the login page does."""

    def login(self, **credentials) -> bool:
        user = authenticate(login_request(), **credentials)
        if user is None:
            return False
        self._login(user)
        return True


@pytest.fixture(autouse=True)
def fast_password_hasher(settings) -> None:
    """Every test hashes with MD5: the real hasher costs ~0.3 s per user and the role fixtures make many."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def client() -> Client:
    """pytest-django's `client`, but `client.login(...)` goes through login throttling like a real login."""
    return LoginClient()


def make_user(username: str, role: str, *sites: Site) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=(role == "engineer"))
    group = Group.objects.filter(name=role).first()
    if group is None:  # a transactional test before this one flushed the groups plant's migration 0002 made
        group = Group.objects.create(name=role)
        sync_role_permissions()  # the roles' permissions, as every migrate sets them
    user.groups.add(group)
    for site in sites:
        site.members.add(user)
    return user


@pytest.fixture
def site(db) -> Site:
    return make_site("north")


@pytest.fixture
def other_site(db) -> Site:
    return make_site("south")


@pytest.fixture
def asset(site) -> Asset:
    return make_asset(site)


@pytest.fixture
def other_asset(other_site) -> Asset:
    return make_asset(other_site, tag="p-201")


@pytest.fixture
def technician(site) -> User:
    return make_user("tess", "technician", site)


@pytest.fixture
def engineer(site) -> User:
    return make_user("enzo", "engineer", site)


@pytest.fixture
def outsider(other_site) -> User:
    return make_user("otto", "technician", other_site)


@pytest.fixture
def gateway_token(site) -> str:
    return Gateway.issue(site, "edge-1")[1]


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def make_readings(
    sensor: Sensor,
    start: datetime,
    values,
    *,
    period_s: float = 1.0,
    quality=None,
) -> int:
    """Bulk-create one reading per value, `period_s` apart from `start`; `quality` is an int or a sequence."""
    from plant.models import Reading

    values = list(values)
    qualities = [quality or 0] * len(values) if quality is None or isinstance(quality, int) else list(quality)
    Reading.objects.bulk_create(
        (
            Reading(sensor=sensor, ts=start + timedelta(seconds=i * period_s), value=float(v), quality=int(q))
            for i, (v, q) in enumerate(zip(values, qualities, strict=True))
        ),
        batch_size=5000,
    )
    return len(values)
