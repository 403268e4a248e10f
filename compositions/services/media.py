"""Stored files: mend what verify_media found, and render a version's files again from its notes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from compositions import runtime, selectors
from compositions.models import CompositionVersion
from compositions.services.queueing import FOLLOW_UP_TASK, queue_after_commit

if TYPE_CHECKING:
    from ml.audio.arrangement import Arrangement
    from ml.generation.request import GenerationRequest

ORPHANS_FOLDER = "orphans"


def media_repair(*, report: selectors.MediaReport) -> dict[str, int]:
    """Mend what `report` found: render lost files again from the stored notes, or fail the version
    with a reason; move files that no row names to MEDIA_ROOT/orphans/ (nothing is deleted)."""
    counts = {"rendered": 0, "failed": 0, "moved": 0}
    lost: dict[int, set[str]] = {}
    for missing in report.missing:
        lost.setdefault(missing.version_id, set()).add(missing.name)
    for version_id in sorted(lost):
        version = CompositionVersion.objects.filter(id=version_id).first()
        if version is None:
            continue
        if version.status == CompositionVersion.Status.DONE and version.notes_json:
            composition_version_render_again(version=version)
            counts["rendered"] += 1
        else:
            _composition_version_fail_for_lost_files(version=version, lost=lost[version_id])
            counts["failed"] += 1
    for name in report.orphans:
        with default_storage.open(name, "rb") as source:
            default_storage.save(f"{ORPHANS_FOLDER}/{name}", source)
        default_storage.delete(name)
        counts["moved"] += 1
    return counts


@transaction.atomic
def _composition_version_fail_for_lost_files(*, version: CompositionVersion, lost: set[str]) -> None:
    # The names of lost files go too, so the version no longer points at nothing.
    gone = {field: "" for field in CompositionVersion.FILE_FIELDS if getattr(version, field).name in lost}
    CompositionVersion.objects.filter(id=version.id).update(
        status=CompositionVersion.Status.FAILED, status_message="Failed", claim=None, updated_at=timezone.now(),
        error="The files of this piece were lost. Try again to write it anew.",
        error_detail=f"verify_media: missing {', '.join(sorted(lost))}", **gone,
    )


def version_arrangement(*, version: CompositionVersion) -> tuple[Arrangement, GenerationRequest]:
    """A done version's voices on their instruments, from its stored notes, form and settings."""
    from ml.audio.arrangement import arrange
    from ml.data.notes import MODES, parse_key
    from ml.generation.request import GenerationRequest
    from ml.pipeline import notes_from_piano_roll

    request = GenerationRequest.from_dict(version.params)
    written = version.form_json or {}  # the tempo and metre the piece was written in (a style's default)
    numerator, denominator = str(written.get("time_signature", "4/4")).split("/")
    metre = request.time_signature or (int(numerator), int(denominator))
    notes = notes_from_piano_roll(
        version.notes_json, tempo_bpm=request.tempo_bpm or float(written.get("tempo_bpm", 120.0)),
        time_signature=metre, program=request.instrument or 0,
    )
    key = None
    tonic_name, _, mode = str(written.get("key") or version.detected_key or "").partition(" ")
    if tonic_name and mode in MODES:
        key = (parse_key(tonic_name), mode)
    arrangement = arrange(notes, style=request.style, key=key, instrument=request.instrument,
                          instruments=request.programs)
    return arrangement, request


def composition_version_render_again(*, version: CompositionVersion) -> None:
    """Write a done version's MIDI and MP3 again from its stored notes, and engrave its score again;
    the old files go."""
    from ml.pipeline import render_piece

    arrangement, request = version_arrangement(version=version)
    loudness, ceiling = runtime.loudness_for(request.dynamics)
    stem = f"{version.composition.public_id}-v{version.number}"
    # Rendered and stored outside any transaction: no write lock is held while files are made.
    with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
        midi_path, mp3_path = Path(tmp) / f"{stem}.mid", Path(tmp) / f"{stem}.mp3"
        rendered = render_piece(runtime.get_renderer(), arrangement, midi_path=midi_path, audio_path=mp3_path,
                                loudness=loudness, ceiling=ceiling)
        with midi_path.open("rb") as midi, mp3_path.open("rb") as mp3:
            midi_name = default_storage.save(f"midi/{midi_path.name}", File(midi))
            mp3_name = default_storage.save(f"mp3/{mp3_path.name}", File(mp3))
    old = [name for name in (version.midi_file.name, version.mp3_file.name, version.score_svg.name,
                             version.score_musicxml.name) if name]
    with transaction.atomic():
        CompositionVersion.objects.filter(id=version.id).update(
            midi_file=midi_name, mp3_file=mp3_name, duration_seconds=rendered.seconds, updated_at=timezone.now(),
            loudness=rendered.loudness.to_dict() if rendered.loudness else None,
            score_svg="", score_musicxml="", score_bars=[], score_error="",
        )
        queue_after_commit(FOLLOW_UP_TASK, version.id)
    for name in old:
        if name not in (midi_name, mp3_name) and default_storage.exists(name):
            default_storage.delete(name)
