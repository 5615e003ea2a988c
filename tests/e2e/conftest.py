"""Browser-test fixtures: one live Vigil (bench/world.py) and the system Chromium, driven by Playwright.

Playwright's sync API marks its own event loop as the running loop of the thread that calls it, which
would make every later Django ORM call (SynchronousOnlyOperation) and every pytest-asyncio test in the same
thread fail. So all browser work runs on one dedicated thread: tests hand a function to `browser.run(...)`
and get its result (or its exception) back. These tests fail, never skip, when Chromium is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from bench.browser import CHROMIUM, CHROMIUM_ARGS, card_of, open_board  # noqa: F401 - used by the tests
from bench.world import ROOT, World, start_world

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SMALL_PHONE = {"width": 360, "height": 740}
TABLET = {"width": 820, "height": 1180}

# p-101 … p-112: p-101 … p-106 for the board, verdict and wording tests, p-107 … p-111 for the escalation,
# the sensor faults and the re-sync race, p-112 for the phone board (each test injects into assets of its
# own: an asset has one timeline).
WORLD_ASSETS = 12

T = TypeVar("T")


class BrowserThread:
    """The Playwright driver and one Chromium, owned by a single worker thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright")
        self._playwright: Any = None
        self.browser: Any = None

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call fn(browser, *args, **kwargs) on the browser thread and return its result (or raise)."""
        return self._executor.submit(lambda: fn(self.browser, *args, **kwargs)).result()

    def start(self) -> None:
        def launch() -> None:
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
            self.browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        self._executor.submit(launch).result()

    def stop(self) -> None:
        def close() -> None:
            if self.browser is not None:
                self.browser.close()
            if self._playwright is not None:
                self._playwright.stop()

        try:
            self._executor.submit(close).result(timeout=60)
        finally:
            self._executor.shutdown(wait=True)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A running Vigil with its own database, Redis, web server and worker (see bench/world.py)."""
    # Retrain stages last at least 1 s (one poll) in this world, so the progress page's poll sees them move.
    live = start_world(
        tmp_path_factory.mktemp("e2e-world"),
        assets=WORLD_ASSETS,
        extra_env={"E2E_RETRAIN_STAGE_S": "1.0"},
        demo_script=Path(__file__).with_name("slow_retrain.py"),
    )
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserThread]:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's `chromium` package (CI does, in .ci/run) "
            "or point VIGIL_CHROMIUM at a Chromium binary",
            pytrace=False,
        )
    thread = BrowserThread()
    try:
        thread.start()
    except Exception as exc:
        thread.stop()
        pytest.fail(f"could not launch {CHROMIUM}: {exc}", pytrace=False)
    yield thread
    thread.stop()


@pytest.fixture(scope="session")
def screenshots_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


# --- helpers the scenarios use (they run on the browser thread) ------------------------------------------


# htmx's own error logs of a swap that went wrong (an out-of-band fragment or a target not in the page).
HTMX_SWAP_ERRORS = ("htmx:oobErrorNoTarget", "htmx:targetError", "htmx:swapError")


def watch_for_browser_errors(context: Any) -> list[str]:
    """Collect the CSP violations Chromium reports, htmx's swap errors and the uncaught script errors of every
    page of `context`."""
    errors: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and (
            "Content Security Policy" in message.text or message.text.startswith(HTMX_SWAP_ERRORS)
        ):
            errors.append(f"{message.location.get('url', '?')}: {message.text}")

    def on_page(page: Any) -> None:
        page.on("pageerror", lambda error: errors.append(f"{page.url}: uncaught {error}"))

    context.on("console", on_console)
    context.on("page", on_page)
    return errors


@contextmanager
def logged_in(
    browser: Any, world: World, username: str, viewport: dict | None = None, touch: bool = False
) -> Iterator[Any]:
    """A fresh browser context logged in as `username` through the login form; yields its page. With
    `touch`, the browser is a mobile one with a touch screen (a coarse pointer, touch events).

    A scenario that ends normally fails if any of its pages violated the Content-Security-Policy, logged an
    htmx swap error or threw an uncaught script error.
    """
    context = browser.new_context(
        viewport=viewport or DESKTOP, base_url=world.base_url, has_touch=touch, is_mobile=touch
    )
    context.set_default_timeout(15_000)
    errors = watch_for_browser_errors(context)
    try:
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", world.passwords[username])
        with page.expect_navigation():
            page.click("button[type=submit]")
        if "/accounts/login/" in page.url:
            raise AssertionError(f"logging in as {username} failed (still on {page.url})")
        yield page
        page.wait_for_timeout(200)  # console messages of the last page arrive asynchronously
        assert not errors, "CSP violations or script errors in the browser:\n" + "\n".join(errors)
    finally:
        context.close()


# Pages rendered by Django's test client in the test's own database, served to the browser at this origin.
SERVED = "http://vigil.test"


def serve_rendered(page: Any, responses: dict[str, Any]) -> None:
    """Answer `page`'s requests to SERVED: a path of `responses` with that test-client response (its status,
    headers and body: the Content-Security-Policy too), /static/ from the worktree's static/ folder, anything
    else 404. A page rendered from the test's data then runs its real scripts."""
    static = ROOT / "static"

    def answer(route: Any) -> None:
        path = urlsplit(route.request.url).path
        file = static / path.removeprefix("/static/")
        if path.startswith("/static/") and file.is_file():
            route.fulfill(path=str(file))
        elif path in responses:
            response = responses[path]
            route.fulfill(status=response.status_code, headers=dict(response.items()), body=response.content)
        else:
            route.fulfill(status=404, body=f"{path} is not served by this test")

    page.route(f"{SERVED}/**", answer)


def alert_id_of(card: Any) -> int:
    return int(card.get_attribute("id").removeprefix("alert-"))


@pytest.fixture(scope="session")
def explained_alert(browser: BrowserThread, world: World) -> int:
    """The id of an open alert on p-105, raised through the API and shown on tech1's board."""

    def raise_alert(b: Any) -> int:
        with logged_in(b, world, "tech1") as page:
            open_board(page)
            world.post_readings(world.fault_readings("p-105"))
            card = card_of(page, world.assets["p-105"].name)
            card.wait_for(state="visible", timeout=20_000)
            return alert_id_of(card)

    return browser.run(raise_alert)
