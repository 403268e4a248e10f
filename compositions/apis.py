"""JSON API: one view per operation, small serializers, one exception handler."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import FileResponse, Http404, HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated
from rest_framework.exceptions import ValidationError as DrfValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from compositions import runtime, selectors, services
from compositions.auth import TokenAuthentication, api_token_for, login_locked_for
from compositions.downloads import FileKind, composition_file_response
from compositions.errors import ComposingUnavailable, NotAllowed, QuotaExceeded, RequestInvalid
from compositions.models import ApiToken, Composition
from ml.generation.request import CONTROLS, DEFAULTS, Control


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


def _control_field(name: str, control: Control, *, output: bool) -> serializers.Field:
    """The schema of one control: its type, range and choices (enums), from ml.generation.request."""
    common: dict[str, Any] = {"help_text": control.help}
    if output:
        common["allow_null"] = control.nullable
    else:
        common.update(required=name == "style", allow_null=control.nullable)
    if control.kind == "choice" and name != "instrument":
        return serializers.ChoiceField(choices=[value for value, _ in control.choices], **common)
    if control.kind in ("style", "time_signature"):
        if control.kind == "time_signature":
            common["help_text"] += f' Default "{DEFAULTS[name]}".'
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
    "primer_id": serializers.UUIDField(required=False, help_text="Or the id of a file sent to primers/ before"),
})
CompositionSettingsSerializer = type("CompositionSettingsSerializer", (serializers.Serializer,), {
    **{name: _control_field(name, control, output=True) for name, control in CONTROLS.items()},
    "continues_midi": serializers.BooleanField(),
})


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False,
                                   help_text="Messages by field name; __all__ for the request as a whole")


class _ThrottledPost(ScopedRateThrottle):
    """The scope's rate applies to writes only: reading a list or a piece is cheap."""

    def allow_request(self, request: Request, view: Any) -> bool:
        return request.method != "POST" or super().allow_request(request, view)


class _PerAddressThrottle(SimpleRateThrottle):
    """Sign-in attempts per client address: it never looks at the (maybe stale) credentials."""

    scope = "sign_in"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def allow_request(self, request: Request, view: Any) -> bool:
        return request.method != "POST" or super().allow_request(request, view)


class TokenCreateApi(APIView):
    """Trade a user name and password for the user's API token (the same one until the password changes)."""

    authentication_classes = [TokenAuthentication]
    permission_classes: list[type] = []
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    throttle_classes = [_PerAddressThrottle]

    class TokenInputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})

    class TokenOutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    def perform_authentication(self, request: Request) -> None:
        # Signing in ignores whatever token the client still sends; revoking needs the token.
        if request.method == "DELETE":
            request.user  # noqa: B018 - authenticates, or raises 401

    @extend_schema(request=TokenInputSerializer, auth=[],
                   responses={200: TokenOutputSerializer, 400: ErrorSerializer, 429: ErrorSerializer})
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

    @extend_schema(request=None, responses={204: None, 401: ErrorSerializer})
    def delete(self, request: Request) -> Response:
        """Revoke the caller's token (signing in again makes a new one)."""
        if not request.user.is_authenticated:
            raise NotAuthenticated
        ApiToken.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)




class CompositionStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    message = serializers.CharField()
    error = serializers.CharField()
    mp3_url = serializers.CharField(allow_null=True)
    midi_url = serializers.CharField(allow_null=True)


class PhraseSerializer(serializers.Serializer):
    letter = serializers.CharField(help_text="Phrases with one letter are the same music")
    start_s = serializers.FloatField()
    end_s = serializers.FloatField()
    first_bar = serializers.IntegerField()
    last_bar = serializers.IntegerField()
    repeat_of = serializers.IntegerField(allow_null=True, help_text="Index of the phrase this one repeats")
    varied = serializers.BooleanField(help_text="A repeat with an ending of its own")
    cadence = serializers.BooleanField(help_text="The phrase closes on a cadence")


class FormSerializer(serializers.Serializer):
    form = serializers.CharField(required=False, help_text='The plan, e.g. "AABB", or "through"')
    bars = serializers.IntegerField(required=False)
    key = serializers.CharField(required=False, help_text='The key it was written in, e.g. "D minor"')
    phrases = PhraseSerializer(many=True, required=False)


class CompositionDetailSerializer(CompositionStatusSerializer):
    model_name = serializers.CharField()
    duration_seconds = serializers.FloatField(allow_null=True)
    settings = CompositionSettingsSerializer()
    chords = serializers.ListField(
        child=serializers.ListField(), help_text="[start_seconds, chord name or null] at each chord change"
    )
    form = FormSerializer(help_text="The form the piece was written to, and its key; empty until it is done")


class CompositionCreateApi(APIView):
    # JSON, or multipart when a MIDI file to continue comes along as `primer`.
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    throttle_classes = [_ThrottledPost]
    throttle_scope = "compose"

    class CreatedSerializer(serializers.Serializer):
        status_url = serializers.CharField()
        compositions = CompositionStatusSerializer(many=True)

    @extend_schema(
        request=CompositionRequestSerializer,
        responses={202: CreatedSerializer, 400: ErrorSerializer, 401: ErrorSerializer, 429: ErrorSerializer,
                   503: ErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        params = {name: value for name, value in request.data.items() if name not in ("primer", "primer_id")}
        primer: Any = request.FILES.get("primer")
        if request.data.get("primer_id"):
            primer = services.primer_bytes(user=request.user, primer_id=str(request.data["primer_id"]))
        compositions = services.composition_request(user=request.user, params=params, primer=primer)
        status_url = reverse("api:composition-status", args=[compositions[0].public_id])
        data = {
            "status_url": status_url,
            "compositions": [selectors.composition_status(composition=c, for_api=True) for c in compositions],
        }
        return Response(
            self.CreatedSerializer(data).data, status=status.HTTP_202_ACCEPTED, headers={"Location": status_url}
        )


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
    return {
        **selectors.composition_status(composition=composition, for_api=True),
        "title": composition.display_title, "style": composition.style, "detected_key": composition.detected_key,
        "duration_seconds": composition.duration_seconds, "is_favourite": composition.is_favourite and mine,
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


class CompositionListApi(CompositionCreateApi):
    """GET the caller's pieces (scope=mine), their favourites, or the public gallery; POST a new request."""

    def get_permissions(self) -> list[Any]:
        if self.request.method == "GET" and self.request.query_params.get("scope") == "public":
            return [AllowAny()]
        return super().get_permissions()

    @extend_schema(
        operation_id="compositions_list",
        parameters=[
            OpenApiParameter("scope", enum=["mine", "public", "favourites"], default="mine"),
            OpenApiParameter("style", str), OpenApiParameter("status", enum=Composition.Status.values),
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


class CompositionDetailApi(APIView):
    """One piece: read it (yours, or a public one), rename or favourite it, or delete it (yours)."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]

    class PatchSerializer(serializers.Serializer):
        title = serializers.CharField(required=False, allow_blank=True, max_length=120)
        is_favourite = serializers.BooleanField(required=False)

    def get_permissions(self) -> list[Any]:
        return [AllowAny()] if self.request.method == "GET" else super().get_permissions()

    @extend_schema(responses={200: CompositionDetailSerializer, 404: ErrorSerializer})
    def get(self, request: Request, public_id: uuid.UUID) -> Response:
        composition = selectors.composition_get_for_viewer(user=request.user, public_id=public_id)
        return Response(CompositionDetailSerializer(selectors.composition_detail(composition=composition)).data)

    @extend_schema(request=PatchSerializer, responses={200: CompositionDetailSerializer, 400: ErrorSerializer,
                                                       401: ErrorSerializer, 404: ErrorSerializer})
    def patch(self, request: Request, public_id: uuid.UUID) -> Response:
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        serializer = self.PatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)  # the exception handler gives it the one error shape
        composition = services.composition_update(composition=composition, **serializer.validated_data)
        return Response(CompositionDetailSerializer(selectors.composition_detail(composition=composition)).data)

    @extend_schema(responses={204: None, 401: ErrorSerializer, 404: ErrorSerializer})
    def delete(self, request: Request, public_id: uuid.UUID) -> Response:
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        services.composition_delete(composition=composition)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CompositionRetryApi(APIView):
    @extend_schema(request=None, responses={202: CompositionStatusSerializer, 401: ErrorSerializer,
                                            404: ErrorSerializer, 409: ErrorSerializer, 429: ErrorSerializer})
    def post(self, request: Request, public_id: uuid.UUID) -> Response:
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        composition = services.composition_retry(composition=composition)
        return Response(selectors.composition_status(composition=composition, for_api=True),
                        status=status.HTTP_202_ACCEPTED)


class CompositionShareApi(APIView):
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
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        serializer = self.ShareInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)  # the exception handler gives it the one error shape
        composition = services.composition_share(composition=composition, **serializer.validated_data)
        url = request.build_absolute_uri(reverse("shared", args=[composition.share_token])) \
            if composition.share_token else None
        return Response({"visibility": composition.visibility, "share_url": url})


class StylesApi(APIView):
    """The active model's styles and every control's type, range and default: an app builds its form from this."""

    permission_classes = [AllowAny]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 503: ErrorSerializer})
    def get(self, request: Request) -> Response:
        generator = runtime.get_generator()
        styles = [{"name": style, "default_tempo": generator.default_tempo(style)} for style in runtime.model_styles()]
        controls = {}
        for name, control in CONTROLS.items():
            controls[name] = {
                "kind": control.kind, "label": control.label, "help": control.help, "nullable": control.nullable,
                "default": DEFAULTS[name],
                "minimum": control.minimum, "maximum": control.maximum, "above_minimum": control.above_minimum,
                "choices": [{"value": value, "label": label} for value, label in control.choices] or None,
            }
        return Response({"styles": styles, "controls": controls})


class RegisterApi(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [_ThrottledPost]
    throttle_scope = "register"

    class RegisterInputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)

    @extend_schema(request=RegisterInputSerializer, responses={201: TokenCreateApi.TokenOutputSerializer,
                                                       400: ErrorSerializer})
    def post(self, request: Request) -> Response:
        form = UserCreationForm({"username": request.data.get("username", ""),
                                 "password1": request.data.get("password", ""),
                                 "password2": request.data.get("password", "")})
        if not form.is_valid():
            errors = {("password" if k.startswith("password") else k): [str(m) for m in v]
                      for k, v in form.errors.items()}
            raise RequestInvalid(errors)
        user = form.save()
        return Response({"token": api_token_for(user).key}, status=status.HTTP_201_CREATED)


class PrimerCreateApi(APIView):
    """Upload a MIDI file to continue later (`primer_id` in a composition request)."""

    parser_classes = [MultiPartParser]
    throttle_classes = [_ThrottledPost]
    throttle_scope = "upload"

    class PrimerSerializer(serializers.Serializer):
        id = serializers.UUIDField(source="public_id")
        notes = serializers.IntegerField()
        seconds = serializers.FloatField()

    @extend_schema(
        request={"multipart/form-data": {"type": "object", "properties": {"file": {"type": "string",
                                                                                  "format": "binary"}}}},
        responses={201: PrimerSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        primer = services.primer_upload(user=request.user, upload=request.FILES.get("file"))
        return Response(self.PrimerSerializer(primer).data, status=status.HTTP_201_CREATED)


class _AnyMediaType(BaseContentNegotiation):
    """Files answer whatever the client accepts (curl, <audio>, download managers); errors stay JSON."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


class CompositionFileApi(APIView):
    """GET a piece's file (yours, a public one, or with its share token): audio/mpeg or audio/midi.

    409 while it is being written (with the status and progress), 410 once it failed, 404 when it
    does not exist or is not yours to hear.
    """

    content_negotiation_class = _AnyMediaType
    permission_classes = [AllowAny]
    kind: FileKind = "mp3"

    def get(self, request: Request, public_id: uuid.UUID) -> FileResponse | HttpResponse | Response:
        token = request.query_params.get("share_token", "")
        if token:
            composition = selectors.composition_get_by_share_token(token=token)
            if str(composition.public_id) != str(public_id):
                raise Http404("No such composition.")
        else:
            composition = selectors.composition_get_for_viewer(user=request.user, public_id=public_id)
        if composition.status == Composition.Status.FAILED:
            return Response({"detail": f"This piece failed: {composition.error}", "status": composition.status},
                            status=status.HTTP_410_GONE)
        if composition.status != Composition.Status.DONE:
            return Response({"detail": "This piece is not ready yet.", "status": composition.status,
                             "progress": composition.progress}, status=status.HTTP_409_CONFLICT)
        return composition_file_response(composition=composition, kind=self.kind, as_attachment=True)


FILE_ERRORS = {404: ErrorSerializer, 409: ErrorSerializer, 410: ErrorSerializer}
SHARE_TOKEN = OpenApiParameter("share_token", str, description="The token of an unlisted piece's link")


@extend_schema(parameters=[SHARE_TOKEN], responses={(200, "audio/mpeg"): OpenApiTypes.BINARY, **FILE_ERRORS})
class CompositionMp3Api(CompositionFileApi):
    kind: FileKind = "mp3"


@extend_schema(parameters=[SHARE_TOKEN], responses={(200, "audio/midi"): OpenApiTypes.BINARY, **FILE_ERRORS})
class CompositionMidiApi(CompositionFileApi):
    kind: FileKind = "midi"


def schema_v1_only(endpoints: list[tuple[str, str, str, Any]]) -> list[tuple[str, str, str, Any]]:
    """drf-spectacular hook: document /api/v1/ once; the unversioned /api/ paths are aliases."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/v1/")]


def schema_enums(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular hook: the styles of the active model and every time signature as enums."""
    from ml.generation.request import DENOMINATORS

    try:
        styles = runtime.model_styles()
    except ComposingUnavailable:
        styles = []
    signatures = [f"{n}/{d}" for d in DENOMINATORS for n in range(1, 33)]
    for name in ("CompositionRequest", "CompositionSettings"):
        properties = result.get("components", {}).get("schemas", {}).get(name, {}).get("properties", {})
        if styles and "style" in properties:
            properties["style"]["enum"] = styles
        if "time_signature" in properties:
            properties["time_signature"]["enum"] = signatures
    return result
