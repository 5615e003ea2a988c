"""The system Chromium and the board's page helpers, shared by the dashboard bench (bench/dashboard.py) and
the browser tests (tests/e2e/ import them from here)."""

from __future__ import annotations

import os
from typing import Any

CHROMIUM = os.environ.get("VIGIL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]


def open_board(page: Any) -> None:
    """Go to the alert board and wait until its WebSocket is open (so live updates can arrive)."""
    page.goto("/alerts/")
    page.locator("#alert-board").wait_for()
    page.locator("body[data-ws-state=open]").wait_for(timeout=15_000)


def card_of(page: Any, asset_name: str) -> Any:
    return page.locator("#alert-list article.alert-card", has_text=asset_name)
