"""The handler's deployment config: key/value pairs set by the operator."""

from __future__ import annotations

from typing import Dict, Optional

from . import _backend


def get(key: str) -> Optional[str]:
    """The value of ``key``, if it is set."""
    return _backend.config_get(key)


def get_or(key: str, default: str) -> str:
    """The value of ``key``, or ``default`` when it is not set."""
    value = get(key)
    return default if value is None else value


def get_all() -> Dict[str, str]:
    """Every pair."""
    return dict(_backend.config_all())
