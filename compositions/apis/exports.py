"""Export everything: ask for a zip of all your pieces, follow it, download it."""

from __future__ import annotations

import uuid

from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compositions.apis.exception_handlers import ErrorSerializer
from compositions.apis.files import AnyMediaType
from compositions.exporting import (
    account_export_file_response,
    account_export_get_for_user,
    account_export_status,
    account_export_unavailable,
)
from compositions.models import AccountExport
from compositions.services.exports import account_export_request


class AccountExportSerializer(serializers.Serializer):
    """An export of everything you made: a zip, made by a background job."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=AccountExport.Status.choices,
                                     help_text="pending and running: being made (see progress); done: ready "
                                               "until expires_at; failed: see error")
    progress = serializers.IntegerField(help_text="Percent, 0 to 100")
    error = serializers.CharField(help_text="Why it failed")
    size_bytes = serializers.IntegerField(allow_null=True, help_text="The size of the zip, once it is done")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When the zip of a done export is deleted")
    expired = serializers.BooleanField(help_text="Done, and its zip deleted: ask for a new export")
    status_url = serializers.CharField(help_text="Poll this while it is being made")
    download_url = serializers.CharField(allow_null=True, help_text="The zip, once done and until it expires")


def _answer(export: AccountExport, code: int = status.HTTP_200_OK, **headers: str) -> Response:
    return Response(AccountExportSerializer(account_export_status(export=export)).data, status=code,
                    headers=headers or None)


class AccountExportCreateApi(APIView):
    """Ask for an export of every piece you made: every version's MIDI, MP3, score and settings, in one zip.

    202 with the new export (poll `status_url`); 409 while an export of yours is being made, with
    its `status_url`. A new export replaces your earlier ones; its zip is kept for EXPORT_KEEP_HOURS.
    """

    @extend_schema(request=None, responses={
        202: AccountExportSerializer,
        401: ErrorSerializer,
        409: OpenApiResponse(ErrorSerializer, description="An export of yours is being made: see its status_url"),
    })
    def post(self, request: Request) -> Response:
        requested = account_export_request(user=request.user)
        export = requested.export
        status_url = account_export_status(export=export)["status_url"]
        if not requested.created:
            return Response({"detail": "An export of yours is being made already.", "status": export.status,
                             "progress": export.progress, "status_url": status_url},
                            status=status.HTTP_409_CONFLICT, headers={"Location": status_url})
        return _answer(export, status.HTTP_202_ACCEPTED, Location=status_url)


class AccountExportDetailApi(APIView):
    """One of your exports: its status and progress, and its download URL once it is done."""

    @extend_schema(responses={200: AccountExportSerializer, 401: ErrorSerializer, 404: ErrorSerializer})
    def get(self, request: Request, public_id: uuid.UUID) -> Response:
        return _answer(account_export_get_for_user(user=request.user, public_id=public_id))


class AccountExportDownloadApi(APIView):
    """The zip of one of your exports: 409 while it is being made (with its progress), 410 once it failed or
    expired, 404 when it is not yours."""

    content_negotiation_class = AnyMediaType

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY, 401: ErrorSerializer,
                              404: ErrorSerializer, 409: ErrorSerializer, 410: ErrorSerializer})
    def get(self, request: Request, public_id: uuid.UUID) -> FileResponse | HttpResponse | Response:
        export = account_export_get_for_user(user=request.user, public_id=public_id)
        unavailable = account_export_unavailable(export=export)
        if unavailable is not None:
            code, detail = unavailable
            return Response({"detail": detail, "status": export.status, "progress": export.progress}, status=code)
        return account_export_file_response(export=export)
