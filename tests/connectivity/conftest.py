from __future__ import annotations

from tests.brokers import mosquitto  # noqa: F401 (fixture)
