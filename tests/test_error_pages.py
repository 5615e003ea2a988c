"""The error pages (403, 404, CSRF failure, 500) wear the site's layout and offer a way back; the favicon is
served."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.test import Client
from django.urls import reverse


def assert_styled_with_a_way_back(html: str) -> None:
    assert "css/vigil.css" in html and 'class="topbar"' in html
    assert f'href="{reverse("alerts:board")}"' in html and f'href="{reverse("plant:home")}"' in html


def test_a_missing_page_is_the_styled_not_found_page_with_a_way_back(client, technician):
    client.force_login(technician)
    response = client.get("/alerts/999999999/")
    html = response.content.decode()
    assert response.status_code == 404
    assert 'data-status="404"' in html and "Not found" in html
    assert_styled_with_a_way_back(html)


def test_a_forbidden_page_is_the_styled_not_allowed_page_with_a_way_back(client, technician):
    client.force_login(technician)
    response = client.get(reverse("models_registry:index"))  # engineers only
    html = response.content.decode()
    assert response.status_code == 403
    assert 'data-status="403"' in html and "Not allowed" in html
    assert_styled_with_a_way_back(html)


@pytest.mark.django_db
def test_a_csrf_failure_is_the_styled_page_that_says_nothing_was_changed(technician):
    client = Client(enforce_csrf_checks=True)
    client.force_login(technician)
    response = client.post(reverse("logout"))
    html = response.content.decode()
    assert response.status_code == 403
    assert "Nothing was changed" in html
    assert_styled_with_a_way_back(html)


def test_the_server_error_page_renders_without_a_request_and_offers_a_way_back():
    # Django's server_error renders 500.html with an empty context: no request, no user.
    html = render_to_string("500.html")
    assert 'data-status="500"' in html
    assert_styled_with_a_way_back(html)


@pytest.mark.django_db
def test_the_favicon_is_linked_and_its_conventional_address_redirects_to_the_static_icon(client):
    page = client.get(reverse("login")).content.decode()
    assert f'rel="icon" href="{static("favicon.ico")}"' in page
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == static("favicon.ico")
    data = (settings.BASE_DIR / "static" / "favicon.ico").read_bytes()
    assert data[:4] == b"\x00\x00\x01\x00" and len(data) < 2_000  # an ICO header, and small


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("get", "/alerts/1/feedback/", "POST"),  # require_POST
        ("post", "/healthz", "GET"),  # require_GET
        ("get", "/accounts/logout/", "POST, OPTIONS"),  # a class-based view
    ],
)
def test_a_wrong_method_on_a_page_is_a_405_that_names_the_allowed_methods(
    client, technician, method, url, allowed
):
    client.force_login(technician)
    response = getattr(client, method)(url)
    assert response.status_code == 405 and response["Allow"] == allowed
    assert response.content.decode() == f"method {method.upper()} not allowed: use {allowed}"


@pytest.mark.django_db
def test_a_wrong_method_on_an_api_url_is_a_json_405(client):
    response = client.post(reverse("api:openapi"))
    assert response.status_code == 405 and response["Allow"] == "GET"
    assert response.json() == {"error": "method POST not allowed: use GET"}
