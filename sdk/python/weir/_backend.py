"""Where state, config and log calls go: the host's imports inside a
component, in-memory maps natively (``weir.testing``)."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

try:  # The bindings exist only inside a component built by componentize-py.
    from wit_world.imports import config as _config  # type: ignore[import-not-found]
    from wit_world.imports import log as _log  # type: ignore[import-not-found]
    from wit_world.imports import state as _state  # type: ignore[import-not-found]

    IN_COMPONENT = True
except ImportError:
    IN_COMPONENT = False

LEVELS = ("trace", "debug", "info", "warn", "error")


class Memory:
    """The native backend: state, config and captured log lines."""

    def __init__(self) -> None:
        self.state: Dict[str, bytes] = {}
        self.config: Dict[str, str] = {}
        self.logs: List[Tuple[str, str]] = []
        self.events = 0


MEMORY = Memory()


def state_get(key: str) -> Optional[bytes]:
    if IN_COMPONENT:
        value = _state.get(key)
        return None if value is None else bytes(value)
    return MEMORY.state.get(key)


def state_set(key: str, value: bytes) -> None:
    if IN_COMPONENT:
        _state.set(key, value)
    else:
        MEMORY.state[key] = bytes(value)


def state_delete(key: str) -> None:
    if IN_COMPONENT:
        _state.delete(key)
    else:
        MEMORY.state.pop(key, None)


def config_get(key: str) -> Optional[str]:
    if IN_COMPONENT:
        return _config.get(key)
    return MEMORY.config.get(key)


def config_all() -> List[Tuple[str, str]]:
    if IN_COMPONENT:
        return list(_config.get_all())
    return sorted(MEMORY.config.items())


def log(level: str, message: str) -> None:
    if IN_COMPONENT:
        _log.log(_log.Level[level.upper()], message)
    else:
        MEMORY.logs.append((level, message))
