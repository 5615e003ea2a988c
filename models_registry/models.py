"""Model versions and their history (built by the registry issue)."""
