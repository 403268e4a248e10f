"""A piece's files through the API: its MP3 and its MIDI file."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compositions import selectors
from compositions.apis.exception_handlers import ErrorSerializer
from compositions.downloads import SCORE_KINDS, FileKind, composition_file_response
from compositions.models import CompositionVersion


class AnyMediaType(BaseContentNegotiation):
    """Files answer whatever the client accepts (curl, <audio>, download managers); errors stay JSON."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


class CompositionFileApi(APIView):
    """GET a file of a piece's current version, or of `?version=n`: yours, a public piece, or with its
    share token; audio/mpeg, audio/midi, or its score (an SVG engraving, or MusicXML).

    409 while it is being written (with the status and progress), 410 once it failed or was
    cancelled, 404 when it does not exist or is not yours to hear.
    """

    content_negotiation_class = AnyMediaType
    permission_classes = [AllowAny]
    kind: FileKind = "mp3"

    def get(self, request: Request, public_id: uuid.UUID) -> FileResponse | HttpResponse | Response:
        composition = selectors.composition_get_for_listener(
            user=request.user, public_id=public_id, share_token=request.query_params.get("share_token", ""))
        number = request.query_params.get("version")
        version = selectors.composition_version_named(composition=composition, number=number)
        if version.status in (CompositionVersion.Status.FAILED, CompositionVersion.Status.CANCELLED):
            detail = f"This piece failed: {version.error}" if version.status == CompositionVersion.Status.FAILED \
                else "This piece was cancelled."
            return Response({"detail": detail, "status": version.status}, status=status.HTTP_410_GONE)
        if version.status != CompositionVersion.Status.DONE:
            return Response({"detail": "This piece is not ready yet.", "status": version.status,
                             "progress": version.progress}, status=status.HTTP_409_CONFLICT)
        if self.kind in SCORE_KINDS and version.score_state == "pending":
            return Response({"detail": "The score is being engraved.", "status": version.status},
                            status=status.HTTP_409_CONFLICT)
        if self.kind in SCORE_KINDS and version.score_state == "none":
            return Response({"detail": f"No score for this piece: {version.score_error}"},
                            status=status.HTTP_404_NOT_FOUND)
        return composition_file_response(composition=composition, version=version, kind=self.kind,
                                         as_attachment=True, pinned=bool(number))


FILE_ERRORS = {401: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer, 410: ErrorSerializer}
SHARE_TOKEN = OpenApiParameter("share_token", str, description="The token of an unlisted piece's link")
VERSION = OpenApiParameter("version", int, description="A version's number (see versions/); without it, the "
                                                       "piece's current version")


@extend_schema(parameters=[SHARE_TOKEN, VERSION],
               responses={(200, "audio/mpeg"): OpenApiTypes.BINARY, **FILE_ERRORS})
class CompositionMp3Api(CompositionFileApi):
    kind: FileKind = "mp3"


@extend_schema(parameters=[SHARE_TOKEN, VERSION],
               responses={(200, "audio/midi"): OpenApiTypes.BINARY, **FILE_ERRORS})
class CompositionMidiApi(CompositionFileApi):
    kind: FileKind = "midi"


@extend_schema(parameters=[SHARE_TOKEN, VERSION],
               responses={(200, "image/svg+xml"): OpenApiTypes.BINARY, **FILE_ERRORS},
               description="The score engraved (SVG): 409 while it is being engraved (it follows the MP3 by a "
                           "moment), 404 with the reason where the piece has none.")
class CompositionScoreSvgApi(CompositionFileApi):
    kind: FileKind = "svg"


@extend_schema(parameters=[SHARE_TOKEN, VERSION],
               responses={(200, "application/vnd.recordare.musicxml+xml"): OpenApiTypes.BINARY, **FILE_ERRORS},
               description="The score as MusicXML, for notation programs: 409 while it is being engraved, 404 "
                           "with the reason where the piece has none.")
class CompositionMusicXmlApi(CompositionFileApi):
    kind: FileKind = "musicxml"
