"""The server's edge signing key: Ed25519, created on first use, signs every bundle assigned to an agent.

The private key lives in ``VIGIL_EDGE_SIGNING_KEY`` (a path; default ``<VIGIL_VAR_DIR>/edge-signing-key.pem``,
mode 0600). Agents carry the public key in their config (``manage.py edge_public_key`` prints it, the Edge
page shows it) and refuse any bundle it did not sign (``edge.updates.verify_bundle``; the signed message
is ``detection.bundle.signed_message``'s: the asset and the bundle's sha256).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from django.conf import settings

from detection.bundle import signed_message


def key_path() -> Path:
    return Path(settings.VIGIL_EDGE_SIGNING_KEY)


@lru_cache(maxsize=4)
def _private_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        key = load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    # Created with 0600 and never overwritten: two processes racing to create it keep the first key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _private_key.__wrapped__(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def public_key_pem() -> str:
    key = _private_key(key_path())
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def sign_bundle(asset_tag: str, sha256: str) -> bytes:
    return _private_key(key_path()).sign(signed_message(asset_tag, sha256))
