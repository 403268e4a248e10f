"""The MP3 and MIDI files of a composition as HTTP responses, for the pages and the API alike."""

from __future__ import annotations

from typing import Literal

from django.http import FileResponse, Http404

from compositions.models import Composition

FileKind = Literal["mp3", "midi"]

# kind -> (model field, content type, file extension)
FILE_KINDS: dict[str, tuple[str, str, str]] = {
    "mp3": ("mp3_file", "audio/mpeg", "mp3"),
    "midi": ("midi_file", "audio/midi", "mid"),
}


def composition_file_response(*, composition: Composition, kind: FileKind, as_attachment: bool) -> FileResponse:
    """Stream one of `composition`'s files; Http404 until it exists. The caller checks ownership."""
    field, content_type, extension = FILE_KINDS[kind]
    file = getattr(composition, field)
    if not file:
        raise Http404("This file is not ready.")
    return FileResponse(
        file.open("rb"),
        as_attachment=as_attachment,
        filename=f"{composition.style}-{composition.public_id.hex[:8]}.{extension}",
        content_type=content_type,
    )
