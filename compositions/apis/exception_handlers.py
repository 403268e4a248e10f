"""The one exception handler: domain errors and DRF's own, in one error shape."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError as DrfValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from compositions.errors import ComposingUnavailable, NotAllowed, QuotaExceeded, RequestInvalid


class ErrorSerializer(serializers.Serializer):
    """The shape of every error answer."""

    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="Messages by field name; __all__ for the request as a whole")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the domain errors, in one shape: {"detail": ..., "errors": {field: [...]}}.

    Any other exception (a bug, a ValueError included) is left to DRF and Django: a 500 and a log
    entry, never an internal message in a 400.
    """
    if isinstance(exc, DrfValidationError):  # a serializer's field errors, in the same shape as ours
        detail = exc.detail if isinstance(exc.detail, dict) else {NON_FIELD_ERRORS: exc.detail}
        exc = RequestInvalid({str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in detail.items()})
    if isinstance(exc, RequestInvalid):
        return Response({"detail": str(exc), "errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, QuotaExceeded):
        return Response(
            {"detail": exc.message}, status=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, ComposingUnavailable):
        return Response({"detail": exc.reason}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    if isinstance(exc, NotAllowed):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    return drf_exception_handler(exc, context)
