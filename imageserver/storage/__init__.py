"""Storage backends behind one contract (`base.Store`); `build_store` picks one from the settings."""
from __future__ import annotations

from .base import Store
from .local import NoRemoteStore


def build_store(settings) -> Store:
    return NoRemoteStore()
