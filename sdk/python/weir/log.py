"""Log lines into the host's log, attributed to the handler and the event
(the host rate-limits them). ``print`` goes there too, at info level."""

from __future__ import annotations

from . import _backend


def trace(message: str) -> None:
    """Log at trace level."""
    _backend.log("trace", message)


def debug(message: str) -> None:
    """Log at debug level."""
    _backend.log("debug", message)


def info(message: str) -> None:
    """Log at info level."""
    _backend.log("info", message)


def warn(message: str) -> None:
    """Log at warn level."""
    _backend.log("warn", message)


def error(message: str) -> None:
    """Log at error level."""
    _backend.log("error", message)
