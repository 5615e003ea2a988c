"""Response headers: a Content-Security-Policy without inline or eval'd script, a Permissions-Policy, and
defaults that keep the demo working on plain http (no HTTPS redirect, no secure-only cookies)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import override_settings

ROOT = Path(__file__).resolve().parent.parent
# A <script> element with its code inline: no src attribute and not a JSON data block.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.IGNORECASE)


def _directives(policy: str) -> dict[str, list[str]]:
    parts = (part.split() for part in policy.split(";") if part.strip())
    return {name: values for name, *values in parts}


@pytest.mark.django_db
def test_pages_carry_a_strict_content_security_policy(client):
    response = client.get("/accounts/login/")

    policy = _directives(response["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"], "no inline script, no eval, no other origin"
    assert policy["connect-src"] == ["'self'"]  # the board's WebSocket to the same host
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["style-src"] and "'unsafe-eval'" not in str(policy)


@pytest.mark.django_db
def test_pages_deny_framing_powerful_features_and_cross_origin_referrers(client):
    response = client.get("/accounts/login/")

    features = dict(item.split("=", 1) for item in response["Permissions-Policy"].split(", "))
    for feature in ("camera", "microphone", "geolocation", "usb", "payment"):
        assert features[feature] == "()"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_the_defaults_serve_plain_http_for_the_demo(client):
    response = client.get("/accounts/login/")

    assert response.status_code == 200, "no redirect to https"
    assert "Strict-Transport-Security" not in response
    assert not response.cookies["csrftoken"]["secure"]


@pytest.mark.django_db
def test_behind_a_tls_proxy_the_forwarded_scheme_counts_as_https(client):
    with override_settings(
        SECURE_SSL_REDIRECT=True, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")
    ):
        assert client.get("/accounts/login/").status_code == 301
        assert client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https").status_code == 200


def test_no_template_has_an_inline_script():
    templates = [*ROOT.glob("templates/**/*.html"), *ROOT.glob("*/templates/**/*.html")]
    assert templates
    offenders = [str(path.relative_to(ROOT)) for path in templates if INLINE_SCRIPT.search(path.read_text())]
    assert offenders == [], f"inline <script> blocks violate the CSP; move them to static/js/: {offenders}"
