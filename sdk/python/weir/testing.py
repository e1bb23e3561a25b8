"""Run handler logic natively under pytest: state, config and log lines are
in-memory, and :func:`event` builds events.

    import weir, weir.testing as t
    from app import handle

    def test_counts():
        t.reset()
        t.set_config("output_topic", "tally")
        out = handle(t.event("in", {"n": 1}, key="a"))
        assert out[0].topic == "tally"
        assert t.state_snapshot() == {"count/a": b"1"}

Call :func:`reset` at the start of each test (the template's ``conftest.py``
does it for every test).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

from . import Event, _backend, to_json


def reset() -> None:
    """Clear state, config and captured logs, and restart event numbering."""
    _backend.MEMORY.__init__()


def set_config(key: str, value: str) -> None:
    """Set a config pair, as an operator would at deploy time."""
    _backend.MEMORY.config[key] = value


def state_snapshot() -> Dict[str, bytes]:
    """A copy of the state, sorted by key."""
    return dict(sorted(_backend.MEMORY.state.items()))


def logs() -> List[Tuple[str, str]]:
    """The ``(level, message)`` lines logged so far, oldest first."""
    return list(_backend.MEMORY.logs)


def event(
    topic: str,
    payload: Union[bytes, str, Any],
    *,
    id: Optional[str] = None,  # noqa: A002 - the event's field name
    key: Optional[str] = None,
    headers: Optional[List[Tuple[str, str]]] = None,
    partition: int = 0,
    timestamp_ms: int = 1_700_000_000_000,
) -> Event:
    """A test event on ``topic``: ``payload`` as bytes, a ``str`` as UTF-8,
    anything else as JSON. Defaults: ID ``test-<n>`` and offset ``n``,
    counting the events built since the last :func:`reset`."""
    n = _backend.MEMORY.events
    _backend.MEMORY.events += 1
    if isinstance(payload, bytes):
        body = payload
    elif isinstance(payload, str):
        body = payload.encode()
    else:
        body = to_json(payload)
    return Event(
        id=id if id is not None else f"test-{n}",
        topic=topic,
        partition=partition,
        offset=n,
        key=key,
        payload=body,
        headers=list(headers or []),
        timestamp_ms=timestamp_ms,
    )
