"""JSON API: one view per operation, small serializers, one exception handler."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from compositions import engine, selectors, services


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus domain errors: a ValueError from ml or a service is the client's fault (400)."""
    if isinstance(exc, DjangoValidationError):
        return Response({"detail": exc.messages}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ValueError):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


class CompositionStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    message = serializers.CharField()
    error = serializers.CharField()
    mp3_url = serializers.CharField(allow_null=True)
    midi_url = serializers.CharField(allow_null=True)


class CompositionCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        # Types only; GenerationRequest checks ranges and its defaults fill omitted fields.
        style = serializers.CharField(max_length=64)
        seconds = serializers.FloatField()
        tempo_bpm = serializers.FloatField(required=False, allow_null=True)
        key = serializers.CharField(required=False, max_length=8)
        mode = serializers.CharField(required=False, max_length=8)
        temperature = serializers.FloatField(required=False)
        timing_temperature = serializers.FloatField(required=False)
        top_k = serializers.IntegerField(required=False)
        top_p = serializers.FloatField(required=False)
        seed = serializers.IntegerField(required=False, allow_null=True)
        dynamics = serializers.CharField(required=False, max_length=16)
        instrument = serializers.IntegerField(required=False)
        variations = serializers.IntegerField(required=False)

    class OutputSerializer(serializers.Serializer):
        status_url = serializers.CharField()
        compositions = CompositionStatusSerializer(many=True)

    @extend_schema(request=InputSerializer, responses={202: OutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        generation_request = engine.build_request(serializer.validated_data)
        compositions = services.composition_request(user=request.user, request=generation_request)
        status_url = reverse("api:composition-status", args=[compositions[0].public_id])
        data = {
            "status_url": status_url,
            "compositions": [selectors.composition_status(composition=c) for c in compositions],
        }
        return Response(
            self.OutputSerializer(data).data, status=status.HTTP_202_ACCEPTED, headers={"Location": status_url}
        )


class CompositionStatusApi(APIView):
    @extend_schema(responses=CompositionStatusSerializer)
    def get(self, request: Request, public_id: str) -> Response:
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        return Response(CompositionStatusSerializer(selectors.composition_status(composition=composition)).data)
