"""The gallery and sharing: list pieces, rename or favourite one, share it."""

from __future__ import annotations

import uuid
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
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
from compositions.errors import RequestInvalid
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


class CompositionListApi(APIView):
    """The caller's pieces (scope=mine), their favourites, or the public gallery (no login needed)."""

    def get_permissions(self) -> list[Any]:
        if self.request.query_params.get("scope") == "public":
            return [AllowAny()]
        return super().get_permissions()

    @extend_schema(
        operation_id="compositions_list",
        parameters=[
            OpenApiParameter("scope", enum=["mine", "public", "favourites"], default="mine"),
            OpenApiParameter("style", str), OpenApiParameter("status", enum=CompositionVersion.Status.values),
            OpenApiParameter("q", str, description="Search in titles, styles and keys"),
        ],
        responses={200: CompositionPageSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        scope = request.query_params.get("scope", "mine")
        if scope not in ("mine", "public", "favourites"):
            raise RequestInvalid.of("scope", "scope must be mine, public or favourites.")
        if scope == "public":
            pieces = selectors.composition_public_list()
        else:
            pieces = selectors.composition_list_for_user(
                user=request.user, style=request.query_params.get("style", ""),
                status=request.query_params.get("status", ""), query=request.query_params.get("q", ""),
                favourites=scope == "favourites",
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
                                                       401: ErrorSerializer, 404: ErrorSerializer})
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
                                                       401: ErrorSerializer, 404: ErrorSerializer})
    def post(self, request: Request, public_id: uuid.UUID) -> Response:
        composition, data = owned_with_input(request, public_id, self.ShareInputSerializer)
        composition = composition_share(composition=composition, **data)
        url = request.build_absolute_uri(reverse("shared", args=[composition.share_token])) \
            if composition.share_token else None
        return Response(self.ShareOutputSerializer({"visibility": composition.visibility, "share_url": url}).data)
