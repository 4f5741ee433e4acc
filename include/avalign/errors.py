"""Errors that carry a machine-readable reason, so a clip can be quarantined with it.

Every failure that concerns one clip (a bad file, a bad URI, bad samples) raises a
``ClipError`` subclass. The partition runner catches ``ClipError`` per clip, records
``reason`` and ``str(error)`` and goes on with the next clip: nothing else is lost.
"""

from __future__ import annotations


class AvalignError(Exception):
    """Base class of all errors raised on purpose by avalign."""


class ClipError(AvalignError):
    """A problem with one clip. ``reason`` is a short stable code (snake_case)."""

    reason: str = "clip_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class StorageError(ClipError):
    """A URI that cannot be read or written (missing object, bad scheme, access denied)."""

    reason = "storage_error"


class MediaError(ClipError):
    """A media file that cannot be used: undecodable, no audio, zero length, NaN, too long."""

    reason = "media_error"


class ServingError(AvalignError):
    """Triton is unreachable or a model call failed after its retries."""
