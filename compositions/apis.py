"""JSON API: one view per operation, small serializers, one exception handler."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import authenticate
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from compositions import selectors, services
from compositions.auth import api_token_for, login_locked_for
from compositions.downloads import FileKind, composition_file_response
from compositions.errors import ComposingUnavailable, NotAllowed, QuotaExceeded, RequestInvalid
from ml.request import CONTROLS, Control, GenerationRequest


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the domain errors, in one shape: {"detail": ..., "errors": {field: [...]}}.

    Any other exception (a bug, a ValueError included) is left to DRF and Django: a 500 and a log
    entry, never an internal message in a 400.
    """
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


def _control_field(name: str, control: Control, *, output: bool) -> serializers.Field:
    """The schema of one control: its type, range and choices (enums), from ml.request."""
    default: Any = GenerationRequest.__dataclass_fields__[name].default
    common: dict[str, Any] = {"help_text": control.help}
    if output:
        common["allow_null"] = control.nullable
    else:
        common.update(required=name == "style", allow_null=control.nullable)
    if control.kind == "choice" and name != "instrument":
        return serializers.ChoiceField(choices=[value for value, _ in control.choices], **common)
    if control.kind in ("style", "time_signature"):
        if control.kind == "time_signature":
            common["help_text"] += f' Default "{default[0]}/{default[1]}".'
        return serializers.CharField(**common)
    bounds: dict[str, Any] = {"max_value": control.maximum}
    if control.minimum is not None and not control.above_minimum:
        bounds["min_value"] = control.minimum
    if control.kind == "float":
        return serializers.FloatField(**common, **bounds)
    if name == "instrument":
        bounds = {"min_value": 0, "max_value": 127}
    return serializers.IntegerField(**common, **bounds)


# Built from the one definition of the controls; they document the API (the schema), while
# services.composition_request checks what is sent.
CompositionRequestSerializer = type("CompositionRequestSerializer", (serializers.Serializer,), {
    **{name: _control_field(name, control, output=False) for name, control in CONTROLS.items()},
    "primer": serializers.FileField(required=False, help_text="A MIDI file to continue (multipart only)"),
})
CompositionSettingsSerializer = type("CompositionSettingsSerializer", (serializers.Serializer,), {
    **{name: _control_field(name, control, output=True) for name, control in CONTROLS.items()},
    "continues_midi": serializers.BooleanField(),
})


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="Messages by field name; __all__ for the request as a whole")


class TokenCreateApi(APIView):
    """Trade a user name and password for the user's API token (the same one until the password changes)."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    class TokenInputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})

    class TokenOutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(request=TokenInputSerializer, responses={200: TokenOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["username"]
        wait = login_locked_for(request._request, username)
        if wait:
            return Response(
                {"detail": f"Too many failed sign-ins. Try again in {wait // 60 or 1} minutes."},
                status=status.HTTP_429_TOO_MANY_REQUESTS, headers={"Retry-After": str(wait)},
            )
        user = authenticate(request._request, username=username, password=serializer.validated_data["password"])
        if user is None or not user.is_active:
            return Response({"detail": "Unable to sign in with these credentials."}, status=status.HTTP_400_BAD_REQUEST)
        return Response(self.TokenOutputSerializer({"token": api_token_for(user).key}).data)


class CompositionStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    message = serializers.CharField()
    error = serializers.CharField()
    mp3_url = serializers.CharField(allow_null=True)
    midi_url = serializers.CharField(allow_null=True)


class CompositionDetailSerializer(CompositionStatusSerializer):
    model_name = serializers.CharField()
    duration_seconds = serializers.FloatField(allow_null=True)
    settings = CompositionSettingsSerializer()
    chords = serializers.ListField(
        child=serializers.ListField(), help_text="[start_seconds, chord name or null] at each chord change"
    )


class CompositionCreateApi(APIView):
    # JSON, or multipart when a MIDI file to continue comes along as `primer`.
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    class OutputSerializer(serializers.Serializer):
        status_url = serializers.CharField()
        compositions = CompositionStatusSerializer(many=True)

    @extend_schema(
        request=CompositionRequestSerializer,
        responses={202: OutputSerializer, 400: ErrorSerializer, 401: ErrorSerializer, 429: ErrorSerializer,
                   503: ErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        params = {name: value for name, value in request.data.items() if name != "primer"}
        compositions = services.composition_request(
            user=request.user, params=params, primer=request.FILES.get("primer")
        )
        status_url = reverse("api:composition-status", args=[compositions[0].public_id])
        data = {
            "status_url": status_url,
            "compositions": [selectors.composition_status(composition=c, for_api=True) for c in compositions],
        }
        return Response(
            self.OutputSerializer(data).data, status=status.HTTP_202_ACCEPTED, headers={"Location": status_url}
        )


class CompositionStatusApi(APIView):
    @extend_schema(responses=CompositionDetailSerializer)
    def get(self, request: Request, public_id: uuid.UUID) -> Response:
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        return Response(CompositionDetailSerializer(selectors.composition_detail(composition=composition)).data)


class _AnyMediaType(BaseContentNegotiation):
    """Files answer whatever the client accepts (curl, <audio>, download managers); errors stay JSON."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


class CompositionFileApi(APIView):
    """GET one of the caller's files (token or session auth): audio/mpeg or audio/midi, as an attachment."""

    content_negotiation_class = _AnyMediaType
    kind: FileKind = "mp3"

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, public_id: uuid.UUID) -> FileResponse:
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        return composition_file_response(composition=composition, kind=self.kind, as_attachment=True)
