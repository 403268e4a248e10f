"""The gallery and sharing: list pieces, rename or favourite one, share it."""

from __future__ import annotations

import uuid
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compositions import selectors
from compositions.apis.composing import CompositionDetailSerializer, CompositionStatusSerializer
from compositions.apis.exception_handlers import ErrorSerializer
from compositions.apis.routing import owned_with_input
from compositions.models import Composition, CompositionVersion
from compositions.services.sharing import composition_share, composition_update


class CompositionListItemSerializer(CompositionStatusSerializer):
    title = serializers.CharField()
    style = serializers.CharField()
    detected_key = serializers.CharField(help_text='The key the piece is in, e.g. "D minor" (empty until done)')
    duration_seconds = serializers.FloatField(allow_null=True)
    is_favourite = serializers.BooleanField()
    visibility = serializers.ChoiceField(choices=Composition.Visibility.values)
    play_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    mine = serializers.BooleanField()


def _list_item(composition: Composition, user: Any) -> dict[str, Any]:
    mine = bool(user.is_authenticated and composition.user_id == user.pk)
    version = composition.current_version
    assert version is not None, "a piece is saved with its first version"
    return {
        **selectors.composition_status(composition=composition, for_api=True),
        "title": composition.display_title, "style": composition.style, "detected_key": version.detected_key,
        "duration_seconds": version.duration_seconds, "is_favourite": composition.is_favourite and mine,
        "visibility": composition.visibility, "play_count": composition.play_count,
        "created_at": composition.created_at, "mine": mine,
    }


class CompositionPageSerializer(serializers.Serializer):
    next = serializers.CharField(allow_null=True, help_text="The next page's URL, or null on the last page")
    previous = serializers.CharField(allow_null=True)
    results = CompositionListItemSerializer(many=True)


class CompositionCursor(CursorPagination):
    page_size = 20
    ordering = ("-created_at", "-id")


# drf-spectacular documents a blank-allowing field as oneOf [this, ""]: the pattern must not match "".
@extend_schema_field({"type": "string", "pattern": r"^[^\u0000]+$"})
class TextFilterField(serializers.CharField):
    """Any text, blank included, but NUL: DRF refuses it in every text field (and PostgreSQL cannot store it)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, allow_blank=True, **kwargs)


class CompositionListFilterSerializer(serializers.Serializer):
    """The list's query parameters: an unknown scope or status is a 400 that names it, not an empty page."""

    scope = serializers.ChoiceField(choices=["mine", "public", "favourites"], default="mine")
    style = TextFilterField()
    status = serializers.ChoiceField(choices=CompositionVersion.Status.values, required=False,
                                     help_text="The status of the piece's current version")
    q = TextFilterField(help_text="Search in titles, styles and keys")


# The list's security, as drf-spectacular writes it for the other public reads: scope=public needs no login
# (hence {}), the other scopes do. Its `auth` is typed as names but takes these requirement objects.
OPTIONAL_LOGIN: Any = [{"tokenAuth": []}, {"cookieAuth": []}, {}]


class CompositionListApi(APIView):
    """The caller's pieces (scope=mine), their favourites, or the public gallery (no login needed).

    `style`, `status` and `q` filter your pieces and favourites; the public gallery is not filtered.
    """

    def get_permissions(self) -> list[Any]:
        if self.request.query_params.get("scope") == "public":
            return [AllowAny()]
        return super().get_permissions()

    @extend_schema(
        operation_id="compositions_list",
        parameters=[CompositionListFilterSerializer],
        auth=OPTIONAL_LOGIN,
        responses={200: CompositionPageSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        # A plain dict, not the QueryDict: DRF reads an empty form value as absent, and `?status=` is
        # no more a status than `?status=AAA`.
        filters = CompositionListFilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        chosen = filters.validated_data
        scope = chosen["scope"]
        if scope == "public":
            pieces = selectors.composition_public_list()
        else:
            pieces = selectors.composition_list_for_user(
                user=request.user, style=chosen.get("style", ""), status=chosen.get("status", ""),
                query=chosen.get("q", ""), favourites=scope == "favourites",
            )
        paginator = CompositionCursor()
        page = paginator.paginate_queryset(pieces, request, view=self) or []
        data = CompositionListItemSerializer([_list_item(c, request.user) for c in page], many=True).data
        return paginator.get_paginated_response(data)


class CompositionUpdateApi(APIView):
    """Rename one of your pieces, or mark it a favourite."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]

    class PatchSerializer(serializers.Serializer):
        title = serializers.CharField(required=False, allow_blank=True, max_length=120)
        is_favourite = serializers.BooleanField(required=False)

    @extend_schema(request=PatchSerializer, responses={200: CompositionDetailSerializer, 400: ErrorSerializer,
                                                       401: ErrorSerializer, 404: ErrorSerializer,
                                                       415: ErrorSerializer})
    def patch(self, request: Request, public_id: uuid.UUID) -> Response:
        composition, data = owned_with_input(request, public_id, self.PatchSerializer)
        composition = composition_update(composition=composition, **data)
        return Response(CompositionDetailSerializer(selectors.composition_detail(composition=composition)).data)


class CompositionShareApi(APIView):
    """Make one of your pieces private, unlisted (by its link) or public (in the gallery)."""

    class ShareInputSerializer(serializers.Serializer):
        visibility = serializers.ChoiceField(choices=Composition.Visibility.values)
        new_link = serializers.BooleanField(required=False, default=False,
                                            help_text="Revoke the current link and make a new one")

    class ShareOutputSerializer(serializers.Serializer):
        visibility = serializers.ChoiceField(choices=Composition.Visibility.values)
        share_url = serializers.CharField(allow_null=True)

    @extend_schema(request=ShareInputSerializer, responses={200: ShareOutputSerializer, 400: ErrorSerializer,
                                                            401: ErrorSerializer, 404: ErrorSerializer,
                                                            415: ErrorSerializer})
    def post(self, request: Request, public_id: uuid.UUID) -> Response:
        composition, data = owned_with_input(request, public_id, self.ShareInputSerializer)
        composition = composition_share(composition=composition, **data)
        url = request.build_absolute_uri(reverse("shared", args=[composition.share_token])) \
            if composition.share_token else None
        return Response(self.ShareOutputSerializer({"visibility": composition.visibility, "share_url": url}).data)
