"""Alerts, their events and operator feedback (built by the scoring and dashboard issues)."""
