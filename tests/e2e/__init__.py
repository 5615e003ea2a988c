"""Browser tests: Playwright driving the system Chromium against a live Vigil (see conftest.py)."""
