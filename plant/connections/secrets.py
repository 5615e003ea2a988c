"""Connection passwords at rest: Fernet-encrypted with a key from the environment, never shown back.

The key is VIGIL_CONNECTION_KEY (a Fernet key) when set, else derived from SECRET_KEY, so a database dump
alone does not reveal a broker's password. Changing the key makes stored passwords unreadable: the bridge
then says so on the connection's status and the password has to be typed again.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from plant.models import Connection


class SecretError(Exception):
    """A stored password cannot be read (the key changed) or its environment variable is not set."""


def _fernet() -> Fernet:
    key = settings.VIGIL_CONNECTION_KEY
    if not key:
        digest = hashlib.sha256(b"vigil.connections:" + settings.SECRET_KEY.encode()).digest()
        key = base64.urlsafe_b64encode(digest).decode()
    return Fernet(key)


def encrypt(password: str) -> str:
    return _fernet().encrypt(password.encode()).decode()


def decrypt(stored: str, what: str = "password") -> str:
    """A value stored by ``encrypt`` in clear; SecretError (naming ``what``) when the key changed since."""
    try:
        return _fernet().decrypt(stored.encode()).decode()
    except InvalidToken:
        raise SecretError(
            f"the stored {what} cannot be decrypted (SECRET_KEY or VIGIL_CONNECTION_KEY changed): "
            "enter it again"
        ) from None


def set_password(connection: Connection, password: str) -> None:
    """Store `password` encrypted (an empty one clears it); the environment-variable name is left as is."""
    connection.password_encrypted = encrypt(password) if password else ""


def password_of(connection: Connection) -> str | None:
    """The connection's password in clear (from its environment variable, else decrypted), or None."""
    return read_secret(connection.password_env, connection.password_encrypted, "password")


def read_secret(env_name: str, encrypted: str, what: str = "secret") -> str | None:
    """A secret stored the connections' way: read from the environment variable `env_name` when named,
    else decrypted from `encrypted`; None when neither is set. SecretError says why it cannot be read."""
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise SecretError(f"environment variable {env_name} is not set")
        return value
    if not encrypted:
        return None
    return decrypt(encrypted, what)
