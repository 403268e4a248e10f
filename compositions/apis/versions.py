"""Versions of a piece: list them, make a new one (continue the piece), read or delete one, make one current."""

from __future__ import annotations

import uuid
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.fields import empty
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from compositions import selectors
from compositions.apis.composing import (
    CompositionDetailSerializer,
    CompositionStatusSerializer,
    ConstraintCheckSerializer,
    LoudnessSerializer,
    ScoreSerializer,
)
from compositions.apis.exception_handlers import ErrorSerializer
from compositions.apis.routing import owned_with_input
from compositions.models import CompositionVersion
from compositions.services.versions import (
    composition_continue,
    composition_harmonise,
    composition_regenerate,
    composition_version_delete,
    composition_version_set_current,
)

SHARE_TOKEN = OpenApiParameter("share_token", str, description="The token of an unlisted piece's link")


class VersionSerializer(CompositionStatusSerializer):
    number = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=CompositionVersion.Kind.values)
    change = serializers.CharField(help_text='What this version changed, e.g. "continued from version 1"')
    summary = serializers.CharField(help_text="The change in words, with the seed that reproduces it")
    seed = serializers.IntegerField(allow_null=True, help_text="The seed that reproduces it (null: drawn when it "
                                                               "is written)")
    current = serializers.BooleanField(help_text="The version the piece plays now")
    duration_seconds = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()
    constraints = ConstraintCheckSerializer(many=True, help_text="What was asked and what it did; empty until "
                                                                   "it is written")
    loudness = LoudnessSerializer(allow_null=True, help_text="The MP3 as measured; null until it is written")
    score = ScoreSerializer(help_text="The version as sheet music")


class CompositionVersionListApi(APIView):
    """A piece's versions, oldest first: yours, a public piece's, or an unlisted one's with its share token."""

    permission_classes = [AllowAny]

    @extend_schema(parameters=[SHARE_TOKEN], responses={200: VersionSerializer(many=True), 401: ErrorSerializer,
                                                             404: ErrorSerializer})
    def get(self, request: Request, public_id: uuid.UUID) -> Response:
        token = request.query_params.get("share_token", "")
        composition = selectors.composition_get_for_listener(user=request.user, public_id=public_id,
                                                             share_token=token)
        items = [selectors.composition_version_item(composition=composition, version=version, for_api=True,
                                                    share_token=token)
                 for version in selectors.composition_version_list(composition=composition)]
        return Response(VersionSerializer(items, many=True).data)


def _accepted(composition: object, version: CompositionVersion) -> Response:
    """202 with the new version, and its status URL in Location."""
    from compositions.models import Composition

    assert isinstance(composition, Composition)
    url = reverse("api:composition-version", args=[composition.public_id, version.number])
    item = selectors.composition_version_item(composition=composition, version=version, for_api=True)
    return Response(VersionSerializer(item).data, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


class CompositionVersionCreateApi(APIView):
    """Make a new version of one of your finished pieces: `continue` it (the current version goes on), or
    `harmonise` its melody (the current version's top line, kept as the top voice of new voices).

    The version is written in the background, like a new piece, and becomes current when it is
    done. 409 when the piece is not done, has a version being written, or has as many versions as
    a piece keeps.
    """

    parser_classes = [JSONParser, FormParser, MultiPartParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "compose"

    class VersionRequestSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(
            choices=[str(CompositionVersion.Kind.CONTINUE), str(CompositionVersion.Kind.HARMONISE)],
            help_text="continue: go on from the current version, with a new seed; harmonise: voices under its "
                      "melody")
        style = serializers.CharField(required=False, allow_blank=True,
                                      help_text="harmonise: the style that writes the voices (default chorale "
                                                "where the model has it)")

    @extend_schema(request=VersionRequestSerializer,
                   responses={202: VersionSerializer, 400: ErrorSerializer, 401: ErrorSerializer,
                              404: ErrorSerializer, 409: ErrorSerializer, 415: ErrorSerializer,
                              429: ErrorSerializer, 503: ErrorSerializer})
    def post(self, request: Request, public_id: uuid.UUID) -> Response:
        composition, data = owned_with_input(request, public_id, self.VersionRequestSerializer)
        if data["kind"] == CompositionVersion.Kind.HARMONISE:
            version = composition_harmonise(composition=composition, style=data.get("style"))
        else:
            version = composition_continue(composition=composition)
        return _accepted(composition, version)


class BarsField(serializers.ListField):
    """[first, last]: two whole numbers, refused in one message (not one per item)."""

    default_error_messages = {"bars": "Give the bars as two whole numbers, such as 5 and 8."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.IntegerField(), min_length=2, max_length=2, **kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        if data is not empty and data is not None and (
                isinstance(data, (str, dict)) or not hasattr(data, "__iter__")
                or any(isinstance(v, bool) for v in data)):
            self.fail("bars")
        try:
            return super().run_validation(data)
        except serializers.ValidationError as exc:
            if data is empty or data is None:
                raise
            raise serializers.ValidationError(self.error_messages["bars"], code="bars") from exc


class CompositionRegenerateApi(APIView):
    """Write bars first..last of one of your finished pieces again, as a new version; every other note is kept.

    400 naming `bars` for bars outside the piece, an empty range, the whole piece or not two whole
    numbers; 409 as for any new version (not done, a version being written, the model gone).
    """

    parser_classes = [JSONParser, FormParser, MultiPartParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "compose"

    class RegenerateRequestSerializer(serializers.Serializer):
        bars = BarsField(help_text="[first, last]: the bars to write again, from 1, both included")
        seed = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=2**32 - 1,
                                        help_text="The seed (null: a random one)")
        temperature = serializers.FloatField(required=False, allow_null=True,
                                             help_text="Pitch sampling temperature (default: the piece's)")

    @extend_schema(request=RegenerateRequestSerializer,
                   responses={202: VersionSerializer, 400: ErrorSerializer, 401: ErrorSerializer,
                              404: ErrorSerializer, 409: ErrorSerializer, 415: ErrorSerializer,
                              429: ErrorSerializer, 503: ErrorSerializer})
    def post(self, request: Request, public_id: uuid.UUID) -> Response:
        composition, data = owned_with_input(request, public_id, self.RegenerateRequestSerializer)
        version = composition_regenerate(composition=composition, bars=data["bars"], seed=data.get("seed"),
                                         temperature=data.get("temperature"))
        return _accepted(composition, version)


class CompositionVersionDetailApi(APIView):
    """One version of a piece: its status and, once written, its file URLs (poll it while it is written)."""

    permission_classes = [AllowAny]

    @extend_schema(parameters=[SHARE_TOKEN],
                   responses={200: VersionSerializer, 401: ErrorSerializer, 404: ErrorSerializer})
    def get(self, request: Request, public_id: uuid.UUID, number: int) -> Response:
        token = request.query_params.get("share_token", "")
        composition = selectors.composition_get_for_listener(user=request.user, public_id=public_id,
                                                             share_token=token)
        version = selectors.composition_version_get(composition=composition, number=number)
        return Response(VersionSerializer(selectors.composition_version_item(
            composition=composition, version=version, for_api=True, share_token=token)).data)


class CompositionVersionDeleteApi(APIView):
    """Delete a version of one of your pieces, and its files: not the current one, nor one being written."""

    @extend_schema(responses={204: None, 401: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer})
    def delete(self, request: Request, public_id: uuid.UUID, number: int) -> Response:
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        composition_version_delete(version=selectors.composition_version_get(composition=composition, number=number))
        return Response(status=status.HTTP_204_NO_CONTENT)


class CompositionVersionCurrentApi(APIView):
    """Make a finished version of one of your pieces its current one (undo a new version, or redo it)."""

    @extend_schema(request=None, responses={200: CompositionDetailSerializer, 401: ErrorSerializer,
                                            404: ErrorSerializer, 409: ErrorSerializer})
    def post(self, request: Request, public_id: uuid.UUID, number: int) -> Response:
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        version = selectors.composition_version_get(composition=composition, number=number)
        composition = composition_version_set_current(version=version)
        return Response(CompositionDetailSerializer(selectors.composition_detail(composition=composition)).data)
