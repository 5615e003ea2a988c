"""Login throttling (django-axes): failures are counted per username and per client address, on the login
page and the admin's; a lockout is a 429 page with the reason, lasts the cool-off and can be lifted sooner."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import PASSWORD

LIMIT = 5
LOCKED = "Too many failed logins"


@pytest.fixture(autouse=True)
def throttling(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


def post_login(
    client: Client, username: str, password: str, ip: str = "10.0.0.1", url: str = "/accounts/login/", **extra
):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip, **extra)


def fail(client: Client, username: str, times: int, ip: str = "10.0.0.1", url: str = "/accounts/login/"):
    for _ in range(times):
        response = post_login(client, username, "wrong-password", ip, url)
    return response


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_wrong_passwords_up_to_the_limit_lock_the_login_with_a_429_page(client, technician):
    before = fail(client, "tess", LIMIT - 1)
    assert before.status_code == 200 and LOCKED not in before.content.decode()

    response = post_login(client, "tess", "wrong-password")

    assert response.status_code == 429
    page = response.content.decode()
    assert LOCKED in page and "Try again in 15 minutes" in page and f"after {LIMIT} failed attempts" in page
    assert response["Retry-After"] == str(15 * 60)
    assert "<html" in page, "a whole page in the site's layout, not a bare error"


def test_the_right_password_is_refused_while_locked(client, technician):
    fail(client, "tess", LIMIT)

    response = post_login(client, "tess", PASSWORD)

    assert response.status_code == 429 and LOCKED in response.content.decode()
    assert not logged_in(client)


def test_a_locked_username_is_locked_from_every_address(client, technician):
    fail(client, "tess", LIMIT, ip="10.0.0.1")

    assert post_login(client, "tess", PASSWORD, ip="10.0.0.2").status_code == 429
    assert not logged_in(client)


def test_a_locked_address_is_locked_for_every_username(client, technician, engineer):
    for i in range(LIMIT):  # a spray: one guess at each of many usernames
        post_login(client, f"user{i}", "guess", ip="10.0.0.1")

    assert post_login(client, "enzo", PASSWORD, ip="10.0.0.1").status_code == 429
    assert post_login(client, "enzo", PASSWORD, ip="10.0.0.2").status_code == 302
    assert logged_in(client)


def test_other_users_and_addresses_are_not_affected(client, technician, engineer):
    fail(client, "tess", LIMIT, ip="10.0.0.1")

    assert post_login(client, "enzo", PASSWORD, ip="10.0.0.2").status_code == 302
    assert logged_in(client)


def test_the_lock_ends_after_the_cool_off(client, technician, monkeypatch):
    fail(client, "tess", LIMIT)
    later = timezone.now() + timedelta(minutes=15, seconds=1)
    # axes stamps each request with its clock; moving it past the cool-off is the time passing.
    monkeypatch.setattr("axes.handlers.proxy.now", lambda: later)

    assert post_login(client, "tess", PASSWORD).status_code == 302
    assert logged_in(client)


def test_attempts_while_locked_do_not_extend_the_cool_off(client, technician, monkeypatch):
    fail(client, "tess", LIMIT)
    start = timezone.now()
    monkeypatch.setattr("axes.handlers.proxy.now", lambda: start + timedelta(minutes=10))
    assert post_login(client, "tess", "wrong-password").status_code == 429

    monkeypatch.setattr("axes.handlers.proxy.now", lambda: start + timedelta(minutes=15, seconds=1))
    assert post_login(client, "tess", PASSWORD).status_code == 302


def test_a_successful_login_clears_the_usernames_failures(client, technician):
    fail(client, "tess", LIMIT - 1)
    assert post_login(client, "tess", PASSWORD).status_code == 302
    client.logout()

    assert fail(client, "tess", LIMIT - 1).status_code == 200
    assert post_login(client, "tess", PASSWORD).status_code == 302


def test_a_successful_login_keeps_the_addresss_failures_at_other_usernames(client, technician):
    for i in range(LIMIT - 1):
        post_login(client, f"victim{i}", "guess")
    # An attacker's own valid account must not reset the count of the address it sprays from.
    assert post_login(client, "tess", PASSWORD).status_code == 302
    client.logout()

    assert post_login(client, "victim9", "guess").status_code == 429


def test_the_admin_login_is_throttled_the_same_way(client, engineer):
    url = reverse("admin:login")
    assert fail(client, "enzo", LIMIT - 1, url=url).status_code == 200

    response = post_login(client, "enzo", "wrong-password", url=url)

    assert response.status_code == 429 and LOCKED in response.content.decode()
    assert post_login(client, "enzo", PASSWORD, url=url).status_code == 429
    assert post_login(client, "enzo", PASSWORD, ip="10.9.9.9").status_code == 429, "the same count"


def test_a_superuser_unlocks_a_user_in_the_console(client, technician):
    fail(client, "tess", LIMIT)
    root = User.objects.create_superuser("root", password="root-password-1")
    console = Client()
    console.force_login(root)
    changelist = console.get(reverse("admin:axes_accessattempt_changelist"))
    assert changelist.status_code == 200 and "tess" in changelist.content.decode()

    attempt = AccessAttempt.objects.get(username="tess")
    deleted = console.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})

    assert deleted.status_code == 302 and not AccessAttempt.objects.exists()
    assert post_login(client, "tess", PASSWORD).status_code == 302


def test_engineers_cannot_unlock_logins(client, engineer):
    client.force_login(engineer)
    assert client.get(reverse("admin:axes_accessattempt_changelist")).status_code == 403


def test_the_reset_command_unlocks_a_username(client, technician):
    fail(client, "tess", LIMIT)

    call_command("axes_reset_username", "tess")

    assert post_login(client, "tess", PASSWORD).status_code == 302


def test_a_forwarded_address_is_ignored_unless_its_header_is_configured(client, technician, settings):
    fail(client, "nobody", LIMIT, ip="10.0.0.1")
    forged = {"HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    assert post_login(client, "tess", PASSWORD, ip="10.0.0.1", **forged).status_code == 429

    settings.VIGIL_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    AccessAttempt.objects.all().delete()
    proxy = "192.168.0.10"
    for _ in range(LIMIT):
        post_login(client, "nobody", "guess", ip=proxy, HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.7")

    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}
    behind_the_same_proxy = {"HTTP_X_FORWARDED_FOR": "198.51.100.2"}
    assert post_login(client, "tess", PASSWORD, ip=proxy, **behind_the_same_proxy).status_code == 302


@pytest.fixture
def plain_user(transactional_db) -> User:
    """A user with no role (the role groups are gone after an earlier transactional test's flush)."""
    return User.objects.create_user("tess", password=PASSWORD)


async def test_the_lockout_page_is_served_by_the_async_handler_too(async_client, plain_user):
    for _ in range(LIMIT):
        response = await async_client.post(
            "/accounts/login/", {"username": "tess", "password": "wrong-password"}, REMOTE_ADDR="10.0.0.1"
        )

    # The view's ORM calls ran in asgiref's worker thread: close its connection so the test database
    # can be dropped (CONN_MAX_AGE would keep it open).
    await sync_to_async(connections.close_all)()
    assert response.status_code == 429 and LOCKED in response.content.decode()


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_a_username_longer_than_the_attempt_table_holds_is_a_failed_login_not_a_500(client, db, url):
    """Django's login forms pass any username to authenticate; axes stored it whole, which PostgreSQL
    refuses past 255 characters (a 500). The count is kept under the name cut to 255 characters."""
    response = post_login(client, "x" * 5000, "wrong-password", url=url)
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()
    assert AccessAttempt.objects.get().username == "x" * 255
    for _ in range(LIMIT - 1):
        response = post_login(client, "x" * 5000, "wrong-password", url=url)
    assert response.status_code == 429
