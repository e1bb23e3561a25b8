"""Why a handler could not process an event: retry or reject."""

from __future__ import annotations


class HandlerError(Exception):
    """Raise it from a handler. :class:`Retry` (transient: the host retries
    with backoff, then dead-letters) or :class:`Reject` (the event can never
    succeed: dead-lettered at once). Any other exception traps the instance,
    which the host treats like a retry."""

    retryable = True

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    @staticmethod
    def retry(message: str) -> "Retry":
        """A transient failure: retried with backoff, then dead-lettered."""
        return Retry(message)

    @staticmethod
    def reject(message: str) -> "Reject":
        """A permanent failure: dead-lettered at once."""
        return Reject(message)

    def is_retry(self) -> bool:
        """Whether the host would retry this error."""
        return self.retryable


class Retry(HandlerError):
    """A transient failure: the host retries the event with backoff."""

    retryable = True


class Reject(HandlerError):
    """The event can never succeed: the host dead-letters it at once."""

    retryable = False
