"""The webhook signature: HMAC-SHA256 with the endpoint's secret over ``<timestamp>.<body>``.

Header ``Vigil-Signature: t=<unix seconds>,v1=<hex digest>``. A receiver recomputes the digest over the
timestamp it was given, a dot and the raw body bytes, compares in constant time, and refuses a timestamp
further than its replay window from its own clock (Vigil documents 300 s: README, "Signed webhooks").
A timestamp inside the signed text means a captured request cannot be replayed later with a new one.
``verify`` is what such a receiver runs (the tests' receiver runs it too).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Vigil-Signature"
DEFAULT_REPLAY_WINDOW_S = 300


class SignatureError(ValueError):
    """The signature header is missing, malformed, wrong, or its timestamp is outside the window."""


def digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The value of ``Vigil-Signature`` for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={digest(secret, timestamp, body)}"


def verify(
    secret: str, header: str | None, body: bytes, *, now: float, window_s: int = DEFAULT_REPLAY_WINDOW_S
) -> int:
    """Check a received ``Vigil-Signature`` header against the raw body; the signed timestamp, or
    SignatureError saying what is wrong."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: expected t=<seconds>,v1=<hex>") from None
    if abs(now - timestamp) > window_s:
        raise SignatureError(f"timestamp {timestamp} is outside the {window_s} s replay window")
    if not hmac.compare_digest(given, digest(secret, timestamp, body)):
        raise SignatureError("signature does not match the body")
    return timestamp
