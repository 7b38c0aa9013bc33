"""Wiring and lifecycle: builds the app from a Config and drains it."""
