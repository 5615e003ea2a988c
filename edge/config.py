"""The agent's configuration file (TOML), checked as a whole before anything starts.

    [server]
    url = "https://vigil.example.com"      # the Vigil server
    token_env = "VIGIL_GATEWAY_TOKEN"       # the gateway token, from this environment variable (or token = "...")

    [agent]
    data_dir = "/var/lib/vigil-edge"        # the local queue and state
    queue_max_mb = 512                      # disk bound of the queue; the oldest readings go first
    heartbeat_s = 30

    [[assets]]
    tag = "p-101"
    bundle = "bundles/p-101.zip"            # relative paths are relative to the config file

Every mistake is a ``ConfigError`` naming the key (``python -m edge`` prints it and exits 2).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A configuration mistake; the message names the key and what is wrong."""


@dataclass(frozen=True)
class AssetConfig:
    tag: str
    bundle: Path


@dataclass(frozen=True)
class AgentConfig:
    server_url: str
    token: str
    data_dir: Path
    queue_max_bytes: int
    heartbeat_s: float
    assets: tuple[AssetConfig, ...]
    raw: dict[str, Any]  # the whole file, for the sections other modules read (sources, publishing)


def _table(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _number(table: dict[str, Any], section: str, key: str, default: float, minimum: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{section}.{key} must be a number of at least {minimum:g}, got {value!r}")
    return float(value)


def load_config(path: Path, environ: dict[str, str] | None = None) -> AgentConfig:
    environ = dict(os.environ if environ is None else environ)
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    base = path.resolve().parent

    server = _table(doc, "server")
    url = server.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"server.url must be an http(s) URL, got {url!r}")
    token = server.get("token")
    if token is None:
        name = server.get("token_env", "VIGIL_GATEWAY_TOKEN")
        token = environ.get(str(name))
        if not token:
            raise ConfigError(f"server.token is not set and the environment variable {name} is empty")
    if not isinstance(token, str) or not token.strip():
        raise ConfigError("server.token must be a non-empty string")

    agent = _table(doc, "agent")
    data_dir = agent.get("data_dir")
    if not isinstance(data_dir, str) or not data_dir:
        raise ConfigError("agent.data_dir must name a directory")
    queue_mb = _number(agent, "agent", "queue_max_mb", 512, 1)
    heartbeat = _number(agent, "agent", "heartbeat_s", 30, 1)

    assets = doc.get("assets", [])
    if not isinstance(assets, list) or not assets:
        raise ConfigError("at least one [[assets]] entry is needed")
    parsed = []
    for i, item in enumerate(assets):
        if not isinstance(item, dict) or not isinstance(item.get("tag"), str) or not item["tag"]:
            raise ConfigError(f"assets[{i}].tag must be a non-empty string")
        bundle = item.get("bundle")
        if not isinstance(bundle, str) or not bundle:
            raise ConfigError(f"assets[{i}].bundle must name the asset's bundle .zip")
        parsed.append(AssetConfig(item["tag"], (base / bundle).resolve()))
    tags = [a.tag for a in parsed]
    if len(set(tags)) != len(tags):
        raise ConfigError("each asset tag may appear once in [[assets]]")
    return AgentConfig(
        server_url=url.rstrip("/"),
        token=token.strip(),
        data_dir=(base / data_dir).resolve(),
        queue_max_bytes=int(queue_mb * 1024 * 1024),
        heartbeat_s=heartbeat,
        assets=tuple(parsed),
        raw=doc,
    )
