"""Settings come from typed environment variables; a bad value is a one-line error naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_url

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


def test_env_bool_rejects_a_bad_value_naming_the_variable(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match=r"DEBUG='maybe' is not a boolean"):
        env_bool("DEBUG", False)


def test_env_int_rejects_a_non_integer_limit_naming_the_variable(monkeypatch):
    monkeypatch.setenv("VIGIL_INGEST_MAX_READINGS", "lots")
    with pytest.raises(ImproperlyConfigured, match=r"VIGIL_INGEST_MAX_READINGS='lots' is not an integer"):
        env_int("VIGIL_INGEST_MAX_READINGS", 10)


def test_env_int_enforces_its_minimum(monkeypatch):
    monkeypatch.setenv("VIGIL_INGEST_MAX_READINGS", "0")
    with pytest.raises(ImproperlyConfigured, match=r"VIGIL_INGEST_MAX_READINGS=0 must be at least 1"):
        env_int("VIGIL_INGEST_MAX_READINGS", 10, minimum=1)


def test_env_int_and_float_use_the_default_when_unset(monkeypatch):
    monkeypatch.delenv("VIGIL_X", raising=False)
    assert env_int("VIGIL_X", 7) == 7
    assert env_float("VIGIL_X", 2.5) == 2.5


def test_env_float_rejects_text_naming_the_variable(monkeypatch):
    monkeypatch.setenv("VIGIL_INGEST_MAX_FUTURE_S", "soon")
    with pytest.raises(ImproperlyConfigured, match=r"VIGIL_INGEST_MAX_FUTURE_S='soon' is not a number"):
        env_float("VIGIL_INGEST_MAX_FUTURE_S", 300.0)


def test_env_url_rejects_an_unsupported_database_scheme(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://root@localhost/vigil")
    with pytest.raises(
        ImproperlyConfigured, match=r"DATABASE_URL='mysql://root@localhost/vigil' must be a URL"
    ):
        env_url("DATABASE_URL", "sqlite:///x", schemes=("sqlite", "postgres"))


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", " vigil.example.com, ,localhost ")
    assert env_list("ALLOWED_HOSTS", []) == ["vigil.example.com", "localhost"]


def _manage_check(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess:
    env = {
        key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL", "DEBUG"}
    }
    env.update(VIGIL_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings", **overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://root@localhost/vigil"),
        ("VIGIL_INGEST_MAX_READINGS", "lots"),
        ("REDIS_URL", "http://127.0.0.1:6379"),
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
