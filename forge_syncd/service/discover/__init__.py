"""Containers found rather than configured: the `discover:` sources (`sources.py`)."""
