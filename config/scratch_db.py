"""Scratch PostgreSQL databases next to the one in DATABASE_URL, for the e2e world and the benches.

Like config/embedded_redis.py, it serves the tooling around the product, not the product: a bench or the
e2e world drops and re-creates `<db><suffix>` on the same server, never touching `<db>` itself.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def with_db(url: str, name: str) -> str:
    """`url` with its database name replaced by `name`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def prepare_postgres(url: str, suffix: str, keep: bool = False) -> str:
    """Drop and re-create `<db><suffix>` next to the database of `url` (never touching that one); with
    `keep`, an existing one is kept as it is. Returns its URL."""
    import psycopg

    name = (urlsplit(url).path.lstrip("/") or "postgres") + suffix
    admin = with_db(url, "postgres").replace("postgresql://", "postgres://", 1)
    with psycopg.connect(admin.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and keep:
            return with_db(url, name)
        if exists:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
            conn.execute(f'DROP DATABASE "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_db(url, name)
