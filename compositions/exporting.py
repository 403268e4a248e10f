"""Account exports ("Export everything"): the zip the build task writes, and what the pages and the API
read of an export (its state, and its zip as a download).

The zip holds, for every piece, a folder per version with its MIDI file, MP3, score (SVG and
MusicXML, where it was engraved), the MIDI file it continued (if any) and `settings.json`; and
`account.json` at the top: the account, its pieces and their versions, with the path of each
file in the zip. Files are read through the storage API, so that they may be in object storage.

The services that write an export's row are in `compositions.services.exports`.
"""

from __future__ import annotations

import json
import uuid
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from compositions import selectors
from compositions.downloads import FILE_KINDS, stored_file_response
from compositions.models import AccountExport, Composition, CompositionVersion

CONTENT_TYPE = "application/zip"
COPY_CHUNK = 1024 * 1024  # bytes read from the storage at a time
# MP3s are compressed already: deflating them again costs time and saves nothing.
STORED_KINDS = ("mp3",)


# What the pages and the API read of an export.

class ExportStatus(TypedDict):
    """An export as the API answers and the account page polls it."""

    id: str
    status: str  # pending, running, done or failed
    progress: int  # percent
    error: str  # why it failed
    size_bytes: int | None  # of the zip, once done
    created_at: datetime
    finished_at: datetime | None
    expires_at: datetime | None  # when a done export's zip is deleted
    expired: bool
    status_url: str
    download_url: str | None  # once done, until it expires


def account_export_latest(*, user: AbstractBaseUser) -> AccountExport | None:
    """The user's latest export, if any (a new one replaces the earlier ones)."""
    return AccountExport.objects.filter(user=user).first()


def account_export_get_for_user(*, user: AbstractBaseUser, public_id: uuid.UUID | str) -> AccountExport:
    """The user's export `public_id`; Http404 for anyone else's."""
    export = AccountExport.objects.filter(user=user, public_id=public_id).first()
    if export is None:
        raise Http404("No such export.")
    return export


def account_export_status(*, export: AccountExport, for_api: bool = True) -> ExportStatus:
    """Where an export stands, with its download URL (the API's, or the account page's) while it is ready."""
    name = "api:account-export-download" if for_api else "account-export-download"
    return {
        "id": str(export.public_id),
        "status": export.status,
        "progress": export.progress,
        "error": export.error,
        "size_bytes": export.size_bytes,
        "created_at": export.created_at,
        "finished_at": export.finished_at,
        "expires_at": export.expires_at,
        "expired": export.is_expired,
        "status_url": reverse("api:account-export-detail", args=[export.public_id]),
        "download_url": reverse(name, args=[export.public_id]) if export.is_ready else None,
    }


def account_export_unavailable(*, export: AccountExport) -> tuple[int, str] | None:
    """Why an export's zip cannot be downloaded now, as (HTTP status, reason); None when it can.

    409 while it is being made, 410 once it failed or expired.
    """
    if export.status in AccountExport.UNFINISHED_STATUSES:
        return 409, f"The export is being made ({export.progress}%)."
    if export.status == AccountExport.Status.FAILED:
        return 410, f"The export failed: {export.error}"
    if export.is_expired:
        return 410, "The export has expired and its file is deleted. Ask for a new one."
    return None


def account_export_filename(*, export: AccountExport) -> str:
    """The name a download is saved as: "musicgen-alice-2025-01-31.zip"."""
    when = timezone.localdate(export.finished_at or export.created_at)
    return f"musicgen-{slugify(export.user.get_username()) or 'account'}-{when.isoformat()}.zip"


def account_export_file_response(*, export: AccountExport) -> FileResponse | HttpResponse:
    """A ready export's zip as an attachment. The caller checks that it is the caller's and ready.

    As for the pieces' files (compositions.downloads): a redirect to a presigned URL with
    MEDIA_PRESIGNED_SECONDS and object storage, X-Accel-Redirect with MEDIA_ACCEL_REDIRECT_PREFIX,
    else the bytes streamed from the storage.
    """
    response = stored_file_response(export.file, content_type=CONTENT_TYPE,
                                    filename=account_export_filename(export=export), as_attachment=True)
    response["Cache-Control"] = "private, no-store"  # everything the user made: no cache keeps a copy
    return response


# The zip the build task writes.

class ExportTooLarge(Exception):
    """The account's files come to more than EXPORT_MAX_BYTES; `reason` is shown to the user."""

    def __init__(self, max_bytes: int) -> None:
        self.reason = (f"Your pieces come to more than {_size_label(max_bytes)}, the most one export may hold. "
                       "Delete versions or pieces you no longer need, then ask for a new export.")
        super().__init__(self.reason)


class ExportStopped(Exception):
    """The export is no longer running (deleted with its account, or given up): stop working on it."""


class VersionEntry(TypedDict):
    """One version in account.json: where its settings and files are in the zip."""

    number: int
    kind: str
    change: str
    status: str
    current: bool
    created_at: datetime
    settings: str  # path of its settings.json
    files: dict[str, str]  # kind (mp3, midi, svg, musicxml, primer) -> path in the zip
    missing: list[str]  # kinds its row names but the storage no longer has


class PieceEntry(TypedDict):
    """One piece in account.json."""

    id: str
    title: str
    style: str
    visibility: str
    play_count: int
    is_favourite: bool
    created_at: datetime
    folder: str
    versions: list[VersionEntry]


class AccountManifest(TypedDict):
    """account.json: the account and everything in the zip."""

    username: str
    date_joined: datetime
    exported_at: datetime
    pieces: list[PieceEntry]


def _size_label(size: int) -> str:
    """2147483648 -> "2 GB" (binary units, as the setting's default is written)."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("kB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


class _Archive:
    """A zip being written, that refuses to take in more than `max_bytes` of content."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.zip = zipfile.ZipFile(path, "w", allowZip64=True)
        self.max_bytes = max_bytes
        self.taken = 0

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.zip.close()

    def _take(self, count: int) -> None:
        self.taken += count
        if self.taken > self.max_bytes:
            raise ExportTooLarge(self.max_bytes)

    @staticmethod
    def _info(name: str, when: datetime, *, compress: bool) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=timezone.localtime(when).timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16  # rw-r--r-- when unpacked
        return info

    def add_json(self, name: str, payload: Any, when: datetime) -> None:
        data = json.dumps(payload, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
        self._take(len(data))
        self.zip.writestr(self._info(name, when, compress=True), data)

    def add_file(self, name: str, file: FieldFile, when: datetime, *, compress: bool) -> bool:
        """Copy a stored file into the zip, a chunk at a time; False when the storage no longer has it."""
        try:
            source = file.open("rb")
        except FileNotFoundError:
            return False
        with source, self.zip.open(self._info(name, when, compress=compress), "w", force_zip64=True) as target:
            while chunk := source.read(COPY_CHUNK):
                self._take(len(chunk))
                target.write(chunk)
        return True


def account_export_write(*, export: AccountExport, folder: Path, progress: Callable[[float], None]) -> Path:
    """Write the zip of everything `export`'s user made into `folder`; returns its path.

    `progress` is called with the fraction of versions written after each one (it raises
    ExportStopped to stop). Raises ExportTooLarge past EXPORT_MAX_BYTES, before the zip grows
    further.
    """
    path = folder / account_export_filename(export=export)
    user = export.user
    pieces = Composition.objects.filter(user=user).select_related("current_version").defer(
        "current_version__notes_json", "current_version__chords_json").order_by("created_at", "id")
    total = CompositionVersion.objects.filter(composition__user=user).count()
    written = 0
    entries: list[PieceEntry] = []
    with _Archive(path, settings.EXPORT_MAX_BYTES) as archive:
        for piece in pieces:
            folder_name = f"pieces/{slugify(piece.display_title) or piece.style}-{piece.public_id.hex[:8]}"
            versions = []
            for version in piece.versions.order_by("number").defer("notes_json"):
                versions.append(_add_version(archive, piece, version, folder_name))
                written += 1
                progress(written / max(total, written))  # pieces made meanwhile count too
            entries.append({
                "id": str(piece.public_id), "title": piece.display_title, "style": piece.style,
                "visibility": piece.visibility, "play_count": piece.play_count, "is_favourite": piece.is_favourite,
                "created_at": piece.created_at, "folder": folder_name, "versions": versions,
            })
        now = timezone.now()
        manifest: AccountManifest = {"username": user.get_username(), "date_joined": user.date_joined,
                                     "exported_at": now, "pieces": entries}
        archive.add_json("account.json", manifest, now)
    if path.stat().st_size > settings.EXPORT_MAX_BYTES:  # the zip's own headers tipped it over
        raise ExportTooLarge(settings.EXPORT_MAX_BYTES)
    return path


def _add_version(archive: _Archive, piece: Composition, version: CompositionVersion, folder: str) -> VersionEntry:
    """A version's files and settings.json, in `folder`/v<n>/."""
    base = f"{folder}/v{version.number}"
    stem = f"{base}/{folder.rsplit('/', 1)[-1]}-v{version.number}"
    stored = {kind: (field, extension) for kind, (field, _, extension) in FILE_KINDS.items()}
    stored["primer"] = ("primer_file", "primer.mid")  # the MIDI file it continues or harmonises
    files: dict[str, str] = {}
    missing: list[str] = []
    for kind, (field, extension) in stored.items():
        file = getattr(version, field)
        if not file:
            continue
        name = f"{stem}.{extension}"
        if archive.add_file(name, file, version.created_at, compress=kind not in STORED_KINDS):
            files[kind] = name
        else:
            missing.append(kind)
    settings_name = f"{base}/settings.json"
    archive.add_json(settings_name, {
        "piece": str(piece.public_id), "title": piece.display_title, "version": version.number,
        "kind": version.kind, "change": version.change, "summary": version.summary, "status": version.status,
        "error": version.error, "created_at": version.created_at, "model_name": version.model_name,
        "duration_seconds": version.duration_seconds, "key": version.key_label,
        "settings": selectors.composition_settings(version=version), "form": version.form_json,
        "chords": version.chords_json, "constraints": version.constraints, "loudness": version.loudness,
    }, version.created_at)
    return {
        "number": version.number, "kind": version.kind, "change": version.change, "status": version.status,
        "current": piece.current_version_id == version.id, "created_at": version.created_at,
        "settings": settings_name, "files": files, "missing": missing,
    }
