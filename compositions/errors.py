"""The site's domain errors. Each front end (form, API, command) presents them its own way."""

from __future__ import annotations

from django.core.exceptions import NON_FIELD_ERRORS


class RequestInvalid(Exception):
    """A request to compose is not valid; `errors` maps field names (or NON_FIELD_ERRORS) to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(" ".join(message for messages in errors.values() for message in messages))
        self.errors = errors

    @classmethod
    def of(cls, field: str | None, message: str) -> RequestInvalid:
        return cls({field or NON_FIELD_ERRORS: [message]})


class ComposingUnavailable(Exception):
    """Composing is impossible right now: no usable model, or no SoundFont, FluidSynth or ffmpeg.

    The site's fault, not the request's: the API answers 503.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class QuotaExceeded(Exception):
    """The user has asked for more than their quota allows; `retry_after` is in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class NotAllowed(Exception):
    """The action does not apply to the piece in its current state (shown to the user as is)."""
