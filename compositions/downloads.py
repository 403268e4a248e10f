"""The MP3, MIDI and score files of a piece's version as HTTP responses, for the pages and the API alike."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from django.conf import settings
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect

from compositions.models import Composition, CompositionVersion

FileKind = Literal["mp3", "midi", "svg", "musicxml"]

# kind -> (model field, content type, file extension)
FILE_KINDS: dict[str, tuple[str, str, str]] = {
    "mp3": ("mp3_file", "audio/mpeg", "mp3"),
    "midi": ("midi_file", "audio/midi", "mid"),
    "svg": ("score_svg", "image/svg+xml", "svg"),
    "musicxml": ("score_musicxml", "application/vnd.recordare.musicxml+xml", "musicxml"),
}
SCORE_KINDS = ("svg", "musicxml")


def stored_file_response(file: FieldFile, *, content_type: str, filename: str, as_attachment: bool,
                         ) -> FileResponse | HttpResponse:
    """A stored file as the answer to a request already allowed: a redirect to a presigned URL of the
    object store (MEDIA_PRESIGNED_SECONDS), X-Accel-Redirect for the web server in front
    (MEDIA_ACCEL_REDIRECT_PREFIX, local files), else the bytes streamed from the storage."""
    disposition = f'{"attachment" if as_attachment else "inline"}; filename="{filename}"'
    if settings.MEDIA_PRESIGNED_SECONDS and hasattr(file.storage, "bucket_name"):
        return HttpResponseRedirect(file.storage.url(file.name, expire=settings.MEDIA_PRESIGNED_SECONDS, parameters={
            "ResponseContentType": content_type, "ResponseContentDisposition": disposition}))
    if settings.MEDIA_ACCEL_REDIRECT_PREFIX:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = settings.MEDIA_ACCEL_REDIRECT_PREFIX.rstrip("/") + "/" + quote(file.name)
        response["Content-Disposition"] = disposition
        return response
    return FileResponse(file.open("rb"), as_attachment=as_attachment, filename=filename, content_type=content_type)


def composition_file_response(
    *, composition: Composition, version: CompositionVersion, kind: FileKind, as_attachment: bool, pinned: bool,
) -> FileResponse | HttpResponse:
    """One of a version's files as a response; Http404 until it exists. The caller checks permission.

    `pinned`: the URL names the version (`?version=n`), so its bytes never change and may be kept;
    the piece's own URL follows its current version, so a browser asks again each time.

    With MEDIA_ACCEL_REDIRECT_PREFIX set, the web server in front sends the bytes (X-Accel-Redirect)
    and this process only decides who may have them; with MEDIA_PRESIGNED_SECONDS set (object
    storage), the answer is a redirect to a presigned URL of the store that expires that soon.
    Otherwise the bytes are streamed from the storage, wherever it is.
    """
    field, content_type, extension = FILE_KINDS[kind]
    file = getattr(version, field)
    if not file:
        raise Http404("This file is not ready." if kind not in SCORE_KINDS else
                      f"No score for this piece: {version.score_error}" if version.score_error else
                      "The score is being engraved.")
    number = f"-v{version.number}" if version.number > 1 else ""
    filename = f"{composition.style}-{composition.public_id.hex[:8]}{number}.{extension}"
    response = stored_file_response(file, content_type=content_type, filename=filename, as_attachment=as_attachment)
    if isinstance(response, HttpResponseRedirect):
        response["Cache-Control"] = "private, no-store"  # the signed URL expires; ask again each time
        return response
    if kind == "svg":  # an engraving holds no scripts; a browser opening it alone runs none either
        response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    # Private files: no shared cache may keep them.
    response["Cache-Control"] = "private, max-age=3600" if pinned else "private, no-cache"
    return response
