"""Settings come from typed environment variables; a bad value is a one-line error naming the variable."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_header, env_header_value, env_int, env_list, env_url

ROOT = Path(__file__).resolve().parent.parent


def test_env_bool_accepts_the_usual_spellings(monkeypatch):
    for raw, expected in (
        ("1", True),
        ("Yes", True),
        ("on", True),
        ("0", False),
        ("FALSE", False),
        ("", False),
    ):
        monkeypatch.setenv("DEBUG", raw)
        assert env_bool("DEBUG", not expected) is expected


@pytest.mark.parametrize(
    ("name", "value", "read", "message"),
    [
        ("DEBUG", "maybe", lambda: env_bool("DEBUG", False), r"DEBUG='maybe' is not a boolean"),
        (
            "VIGIL_INGEST_MAX_READINGS",
            "lots",
            lambda: env_int("VIGIL_INGEST_MAX_READINGS", 10),
            r"VIGIL_INGEST_MAX_READINGS='lots' is not an integer",
        ),
        (
            "VIGIL_INGEST_MAX_FUTURE_S",
            "soon",
            lambda: env_float("VIGIL_INGEST_MAX_FUTURE_S", 300.0),
            r"VIGIL_INGEST_MAX_FUTURE_S='soon' is not a number",
        ),
        (
            "DATABASE_URL",
            "mysql://root@localhost/vigil",
            lambda: env_url("DATABASE_URL", "sqlite:///x", schemes=("sqlite", "postgres")),
            r"DATABASE_URL='mysql://root@localhost/vigil' must be a URL",
        ),
    ],
    ids=["bool", "int", "float", "url"],
)
def test_a_bad_value_is_rejected_naming_the_variable(monkeypatch, name, value, read, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=message):
        read()


def test_env_int_enforces_its_minimum(monkeypatch):
    monkeypatch.setenv("VIGIL_INGEST_MAX_READINGS", "0")
    with pytest.raises(ImproperlyConfigured, match=r"VIGIL_INGEST_MAX_READINGS=0 must be at least 1"):
        env_int("VIGIL_INGEST_MAX_READINGS", 10, minimum=1)


def test_env_int_and_float_use_the_default_when_unset(monkeypatch):
    monkeypatch.delenv("VIGIL_X", raising=False)
    assert env_int("VIGIL_X", 7) == 7
    assert env_float("VIGIL_X", 2.5) == 2.5


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", " vigil.example.com, ,localhost ")
    assert env_list("ALLOWED_HOSTS", []) == ["vigil.example.com", "localhost"]


def test_env_header_gives_the_request_meta_key_of_a_header(monkeypatch):
    monkeypatch.setenv("VIGIL_CLIENT_IP_HEADER", " X-Forwarded-For ")
    assert env_header("VIGIL_CLIENT_IP_HEADER") == "HTTP_X_FORWARDED_FOR"
    monkeypatch.setenv("VIGIL_CLIENT_IP_HEADER", "")
    assert env_header("VIGIL_CLIENT_IP_HEADER") is None


def test_env_header_rejects_what_is_not_a_header_name(monkeypatch):
    monkeypatch.setenv("VIGIL_CLIENT_IP_HEADER", "X Forwarded For")
    with pytest.raises(ImproperlyConfigured, match=r"VIGIL_CLIENT_IP_HEADER='X Forwarded For' does not name"):
        env_header("VIGIL_CLIENT_IP_HEADER")


def test_env_header_value_reads_a_header_line(monkeypatch):
    monkeypatch.setenv("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto: https")
    assert env_header_value("SECURE_PROXY_SSL_HEADER") == ("HTTP_X_FORWARDED_PROTO", "https")
    monkeypatch.delenv("SECURE_PROXY_SSL_HEADER")
    assert env_header_value("SECURE_PROXY_SSL_HEADER") is None


@pytest.mark.parametrize("raw", ["https", "X-Forwarded-Proto:", "X Forwarded Proto: https"])
def test_env_header_value_rejects_a_malformed_pair(monkeypatch, raw):
    monkeypatch.setenv("SECURE_PROXY_SSL_HEADER", raw)
    with pytest.raises(ImproperlyConfigured, match=r"SECURE_PROXY_SSL_HEADER="):
        env_header_value("SECURE_PROXY_SSL_HEADER")


def _manage_check(tmp_path: Path, *args: str, **overrides: str) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}
        and not key.startswith(("SECURE_", "SESSION_", "CSRF_"))
    }
    env.update(VIGIL_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings", **overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://root@localhost/vigil"),
        ("VIGIL_INGEST_MAX_READINGS", "lots"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
        ("SECURE_HSTS_SECONDS", "a-year"),
        ("SECURE_HSTS_SECONDS", "-1"),
        ("SECURE_SSL_REDIRECT", "sometimes"),
        ("SESSION_COOKIE_SECURE", "2"),
        ("SECURE_PROXY_SSL_HEADER", "https"),
        ("VIGIL_CLIENT_IP_HEADER", "X Forwarded For"),
        ("VIGIL_LOGIN_FAILURE_LIMIT", "0"),
        ("VIGIL_LOGIN_COOLOFF_MINUTES", "soon"),
    ],
)
def test_manage_py_exits_with_a_configuration_error_and_no_traceback(tmp_path, variable, value):
    result = _manage_check(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert "Configuration error" in result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_manage_py_check_passes_on_the_embedded_defaults(tmp_path):
    result = _manage_check(tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secret_key").exists(), "the per-checkout SECRET_KEY is kept in the var dir"


PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(64),
    "DEBUG": "0",
    "ALLOWED_HOSTS": "vigil.example.com",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
}


def test_check_deploy_passes_with_production_settings_from_the_environment(tmp_path):
    result = _manage_check(tmp_path, "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_names_each_https_setting_left_unset(tmp_path):
    result = _manage_check(
        tmp_path, "--deploy", "--fail-level", "WARNING", SECRET_KEY=PRODUCTION["SECRET_KEY"]
    )
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr
