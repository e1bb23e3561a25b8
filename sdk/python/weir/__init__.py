"""Write Weir event handlers in Python.

A handler is a function from one :class:`Event` to a list of
:class:`Output`; it raises :class:`HandlerError` (``HandlerError.retry`` or
``HandlerError.reject``) when it cannot process the event. :func:`export`
turns it into the component's ``Guest`` export::

    import weir

    def handle(event: weir.Event) -> list[weir.Output]:
        order = event.json()                      # malformed -> reject
        order["handled_by"] = "me"
        return [weir.Output.json(weir.config.get_or("output_topic", "out"), order)]

    Guest = weir.export(handle)

``weir.state``, ``weir.config`` and ``weir.log`` reach the host inside a
component (``weir build``) and in-memory maps natively (``weir.testing``,
for pytest). Inside a component, ``time.time()`` is the event's timestamp
and ``random``/``os.urandom`` are seeded from the event, so a retry or a
replay produces the same outputs.
"""

from __future__ import annotations

import json as _json
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

from . import config, log, state
from ._errors import HandlerError, Reject, Retry
from ._guest import export

__all__ = [
    "Event",
    "Output",
    "HandlerError",
    "Retry",
    "Reject",
    "export",
    "state",
    "config",
    "log",
    "to_json",
]

Header = Tuple[str, str]


def to_json(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON bytes (what outputs and state hold)."""
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Event:
    """One input event, as the host read it from its source."""

    id: str
    """The producer's message ID (a retry has the same one)."""
    topic: str
    partition: int
    offset: int
    key: Optional[str]
    payload: bytes
    headers: List[Header] = field(default_factory=list)
    timestamp_ms: int = 0
    """When the event was appended to its source (ms since the Unix epoch)."""

    def json(self) -> Any:
        """The payload parsed as JSON; a malformed payload rejects the event
        (retrying would read the same bytes)."""
        try:
            return _json.loads(self.payload)
        except ValueError as e:
            raise Reject(f"event {self.id}: payload is not valid JSON: {e}") from None

    def text(self) -> str:
        """The payload as UTF-8 text; invalid UTF-8 rejects the event."""
        try:
            return self.payload.decode()
        except UnicodeDecodeError as e:
            raise Reject(f"event {self.id}: payload is not UTF-8: {e}") from None

    def header(self, name: str) -> Optional[str]:
        """The first header called ``name`` (case-sensitive), if any."""
        return next((v for n, v in self.headers if n == name), None)


@dataclass
class Output:
    """One output to publish: ``topic`` must be one of the handler's
    declared outputs; without a ``key`` it keeps the input's partition.
    Header names starting with ``weir-`` are reserved for the host."""

    topic: str
    payload: bytes = b""
    key: Optional[str] = None
    headers: List[Header] = field(default_factory=list)

    @classmethod
    def json(cls, topic: str, value: Any, key: Optional[str] = None) -> "Output":
        """An output whose payload is ``value`` as JSON."""
        return cls(topic=topic, payload=to_json(value), key=key)

    @classmethod
    def text(cls, topic: str, text: str, key: Optional[str] = None) -> "Output":
        """An output whose payload is ``text`` as UTF-8."""
        return cls(topic=topic, payload=text.encode(), key=key)

    def with_key(self, key: Optional[str]) -> "Output":
        """This output with partitioning key ``key``."""
        self.key = key
        return self

    def with_header(self, name: str, value: str) -> "Output":
        """This output with one more header."""
        self.headers.append((name, value))
        return self


Handler = Callable[[Event], List[Output]]
