"""The handler's own keyed state, committed atomically with its outputs.

Reads see the writes made earlier in the same batch, including those of the
current event; the writes of an event that fails are discarded with it.
Values are bytes (a ``str`` is stored as UTF-8); :func:`get_json` and
:func:`set_json` store values as JSON.
"""

from __future__ import annotations

import json as _json
from typing import Any, Optional, Union

from . import _backend
from ._errors import Reject


def get(key: str) -> Optional[bytes]:
    """The value stored under ``key``, if any."""
    return _backend.state_get(key)


def set(key: str, value: Union[bytes, str]) -> None:  # noqa: A001 - the WIT name
    """Store ``value`` under ``key``."""
    _backend.state_set(key, value.encode() if isinstance(value, str) else bytes(value))


def delete(key: str) -> None:
    """Remove ``key``; removing a missing key does nothing."""
    _backend.state_delete(key)


def get_json(key: str, default: Any = None) -> Any:
    """The JSON value stored under ``key``, or ``default``. A stored value
    that is not JSON rejects the event (a retry would read the same bytes)."""
    raw = get(key)
    if raw is None:
        return default
    try:
        return _json.loads(raw)
    except ValueError as e:
        raise Reject(f"state key `{key}` does not hold JSON: {e}") from None


def set_json(key: str, value: Any) -> None:
    """Store ``value`` as JSON under ``key``."""
    from . import to_json

    set(key, to_json(value))
