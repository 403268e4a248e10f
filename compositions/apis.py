"""JSON API: one view per operation, small serializers, one exception handler."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
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

from compositions import engine, selectors, services
from compositions.auth import api_token_for, login_locked_for
from compositions.downloads import FileKind, composition_file_response


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus domain errors: bad input is the client's fault (400), no model is ours (503)."""
    if isinstance(exc, services.QuotaExceeded):
        return Response(
            {"detail": exc.message}, status=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, DjangoValidationError):
        return Response({"detail": exc.messages}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ValueError):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, engine.CompositionFailed):
        return Response({"detail": exc.reason}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return drf_exception_handler(exc, context)


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


class CompositionSettingsSerializer(serializers.Serializer):
    style = serializers.CharField()
    seconds = serializers.FloatField(allow_null=True)
    notes = serializers.IntegerField(allow_null=True)
    tempo_bpm = serializers.FloatField(allow_null=True)
    time_signature = serializers.CharField()
    key = serializers.CharField()
    mode = serializers.CharField()
    pitch_low = serializers.IntegerField()
    pitch_high = serializers.IntegerField()
    temperature = serializers.FloatField()
    timing_temperature = serializers.FloatField()
    top_k = serializers.IntegerField()
    top_p = serializers.FloatField()
    seed = serializers.IntegerField(allow_null=True)
    dynamics = serializers.CharField()
    instrument = serializers.IntegerField()
    variations = serializers.IntegerField()
    continues_midi = serializers.BooleanField()


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

    class InputSerializer(serializers.Serializer):
        # Types only; GenerationRequest checks ranges and its defaults fill omitted fields.
        style = serializers.CharField(max_length=64)
        seconds = serializers.FloatField(required=False, allow_null=True)
        notes = serializers.IntegerField(required=False, allow_null=True)
        tempo_bpm = serializers.FloatField(required=False, allow_null=True)
        time_signature = serializers.CharField(required=False, max_length=8, help_text='e.g. "3/4" or "6/8"')
        key = serializers.CharField(required=False, max_length=8)
        mode = serializers.CharField(required=False, max_length=16)
        pitch_low = serializers.IntegerField(required=False, help_text="MIDI note number, 60 = C4")
        pitch_high = serializers.IntegerField(required=False, help_text="MIDI note number, 60 = C4")
        temperature = serializers.FloatField(required=False)
        timing_temperature = serializers.FloatField(required=False)
        top_k = serializers.IntegerField(required=False)
        top_p = serializers.FloatField(required=False)
        seed = serializers.IntegerField(required=False, allow_null=True)
        dynamics = serializers.CharField(required=False, max_length=16)
        instrument = serializers.IntegerField(required=False)
        variations = serializers.IntegerField(required=False)
        primer = serializers.FileField(required=False, help_text="A MIDI file to continue (multipart only)")

    class OutputSerializer(serializers.Serializer):
        status_url = serializers.CharField()
        compositions = CompositionStatusSerializer(many=True)

    @extend_schema(request=InputSerializer, responses={202: OutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        params = {name: value for name, value in serializer.validated_data.items() if value is not None}
        upload = params.pop("primer", None)
        primer_midi, primer = engine.primer_from_upload(upload) if upload else (None, None)
        generation_request = engine.build_request(params, primer=primer)
        compositions = services.composition_request(
            user=request.user, request=generation_request, primer_midi=primer_midi
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
