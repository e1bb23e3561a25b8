"""The component's ``Guest`` export: wraps a handler function, converts
events and outputs to and from the WIT types, maps :class:`HandlerError`
to the WIT ``handler-error``, and seeds ``random`` and ``os.urandom`` from
the event."""

from __future__ import annotations

import os
import random
from typing import Any, Callable, List

from . import _backend
from ._errors import HandlerError


# Randomness from the event. componentize-py snapshots the initialised
# interpreter at build time, and `os.urandom` inside a reused instance did
# not repeat on a retry although the host seeds WASI randomness per event
# (a source buffered inside the snapshot). So, per event,
# `random` and `os.urandom` (and with it `uuid.uuid4`, `secrets` and
# `random.SystemRandom`) are seeded from the event's ID and offset: a
# retry, on this instance or a fresh one, draws the same numbers.
_entropy = random.Random()


def _urandom(n: int) -> bytes:
    return _entropy.getrandbits(n * 8).to_bytes(n, "little") if n > 0 else b""


def _reseed(event_id: str, offset: int) -> None:
    seed = f"{event_id}\0{offset}"
    random.seed(seed)
    _entropy.seed("urandom\0" + seed)


def _install_entropy() -> None:
    os.urandom = _urandom
    random._urandom = _urandom  # type: ignore[attr-defined] - SystemRandom's source


def export(handle: Callable[[Any], List[Any]]) -> type:
    """The ``Guest`` class componentize-py exports for ``handle``: assign it
    to ``Guest`` in the app module (``Guest = weir.export(handle)``)."""

    class Guest:
        """The `weir:handler/guest` export."""

        def handle(self, event: Any) -> List[Any]:
            return _call(handle, event)

    Guest.__doc__ = f"The `weir:handler/guest` export running `{handle.__name__}`."
    return Guest


def _call(handle: Callable[[Any], List[Any]], wit_event: Any) -> List[Any]:
    from . import Event

    if not _backend.IN_COMPONENT:
        return handle(wit_event)
    from componentize_py_types import Err  # type: ignore[import-not-found]
    from wit_world.imports import types  # type: ignore[import-not-found]

    _install_entropy()
    _reseed(wit_event.id, wit_event.offset)
    event = Event(
        id=wit_event.id,
        topic=wit_event.topic,
        partition=wit_event.partition,
        offset=wit_event.offset,
        key=wit_event.key,
        payload=bytes(wit_event.payload),
        headers=list(wit_event.headers),
        timestamp_ms=wit_event.timestamp_ms,
    )
    try:
        outputs = handle(event)
    except HandlerError as e:
        variant = types.HandlerError_Retry if e.retryable else types.HandlerError_Reject
        raise Err(variant(e.message)) from None
    if outputs is None:
        return []
    return [
        types.Output(
            topic=o.topic,
            key=o.key,
            payload=bytes(o.payload),
            headers=[(n, v) for n, v in o.headers],
        )
        for o in outputs
    ]
