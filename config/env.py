"""Typed reading of environment variables, with errors that name the variable at fault."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of: {', '.join(choices)}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """A comma-separated list of CIDRs (a bare address is a /32 or /128); [] when unset."""
    networks = []
    for item in env_list(name, []):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an address or a CIDR network") from None
    return networks


def env_url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = os.environ.get(name, default)
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in schemes:
        raise ImproperlyConfigured(
            f"{name}={value!r} must be a URL starting with one of: {', '.join(schemes)}://"
        )
    return value


_HEADER_NAME = re.compile(r"[A-Za-z0-9-]+")


def _meta_key(name: str, raw: str, header: str) -> str:
    header = header.strip()
    if not _HEADER_NAME.fullmatch(header):
        raise ImproperlyConfigured(f"{name}={raw!r} does not name an HTTP header (letters, digits and '-')")
    return "HTTP_" + header.upper().replace("-", "_")


def env_header(name: str) -> str | None:
    """An HTTP header name (`X-Forwarded-For`) as its request.META key (`HTTP_X_FORWARDED_FOR`); None if unset."""
    raw = os.environ.get(name, "").strip()
    return _meta_key(name, raw, raw) if raw else None


def env_header_value(name: str) -> tuple[str, str] | None:
    """A `Header: value` pair (`X-Forwarded-Proto: https`) as (request.META key, value); None if unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, colon, value = raw.partition(":")
    if not colon or not value.strip():
        raise ImproperlyConfigured(
            f"{name}={raw!r} must be 'Header-Name: value', e.g. 'X-Forwarded-Proto: https'"
        )
    return _meta_key(name, raw, header), value.strip()


def missing_settings_module() -> str:
    """The one-line error when DJANGO_SETTINGS_MODULE (which manage.py's --settings sets) names no module
    that can be found, else "". The entry points (manage.py, config.asgi, the Celery app) end with it instead
    of Django's import traceback; a settings module that is there but fails while importing keeps its
    traceback, which says where."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    try:
        if importlib.util.find_spec(module) is not None:
            return ""
        reason = f"no module named {module!r}"
    except Exception as exc:  # a missing or broken package on the way, a relative or an empty name
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
    return (
        f"Configuration error: cannot import the settings module {module!r} (--settings or "
        f"DJANGO_SETTINGS_MODULE): {reason}"
    )
