"""Fixtures for the reliability tests: the end-to-end ``relaunch`` fixture, reused."""

from __future__ import annotations

from ..e2e.conftest import relaunch

__all__ = ["relaunch"]
