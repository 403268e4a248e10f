"""Stored files: mend what verify_media found, and render a piece's files again from its notes."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from compositions import runtime, selectors
from compositions.models import Composition

ORPHANS_FOLDER = "orphans"


def media_repair(*, report: selectors.MediaReport) -> dict[str, int]:
    """Mend what `report` found: render lost files again from the stored notes, or fail the piece
    with a reason; move files that no row names to MEDIA_ROOT/orphans/ (nothing is deleted)."""
    counts = {"rendered": 0, "failed": 0, "moved": 0}
    lost: dict[int, set[str]] = {}
    for row_id, name in report.missing:
        lost.setdefault(row_id, set()).add(name)
    for row_id in sorted(lost):
        piece = Composition.objects.filter(id=row_id).first()
        if piece is None:
            continue
        if piece.status == Composition.Status.DONE and piece.notes_json:
            composition_render_again(composition=piece)
            counts["rendered"] += 1
        else:
            _composition_fail_for_lost_files(composition=piece, lost=lost[row_id])
            counts["failed"] += 1
    for name in report.orphans:
        with default_storage.open(name, "rb") as source:
            default_storage.save(f"{ORPHANS_FOLDER}/{name}", source)
        default_storage.delete(name)
        counts["moved"] += 1
    return counts


@transaction.atomic
def _composition_fail_for_lost_files(*, composition: Composition, lost: set[str]) -> None:
    # The names of lost files go too, so the piece no longer points at nothing.
    gone = {field: "" for field in ("midi_file", "mp3_file", "primer_file")
            if getattr(composition, field).name in lost}
    Composition.objects.filter(id=composition.id).update(
        status=Composition.Status.FAILED, status_message="Failed", claim=None, updated_at=timezone.now(),
        error="The files of this piece were lost. Try again to write it anew.",
        error_detail=f"verify_media: missing {', '.join(sorted(lost))}", **gone,
    )


def composition_render_again(*, composition: Composition) -> None:
    """Write a done piece's MIDI and MP3 again from its stored notes; the old files go."""
    from ml.generation.request import GenerationRequest
    from ml.pipeline import notes_from_piano_roll, render_piece

    request = GenerationRequest.from_dict(composition.params)
    notes = notes_from_piano_roll(
        composition.notes_json, tempo_bpm=request.tempo_bpm or 120.0, time_signature=request.time_signature,
        program=request.instrument,
    )
    # Rendered and stored outside any transaction: no write lock is held while files are made.
    with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
        midi_path = Path(tmp) / f"{composition.public_id}.mid"
        mp3_path = Path(tmp) / f"{composition.public_id}.mp3"
        duration = render_piece(runtime.get_renderer(), notes, midi_path=midi_path, audio_path=mp3_path)
        with midi_path.open("rb") as midi, mp3_path.open("rb") as mp3:
            midi_name = default_storage.save(f"midi/{midi_path.name}", File(midi))
            mp3_name = default_storage.save(f"mp3/{mp3_path.name}", File(mp3))
    old = [name for name in (composition.midi_file.name, composition.mp3_file.name) if name]
    with transaction.atomic():
        Composition.objects.filter(id=composition.id).update(
            midi_file=midi_name, mp3_file=mp3_name, duration_seconds=duration, updated_at=timezone.now()
        )
    for name in old:
        if name not in (midi_name, mp3_name) and default_storage.exists(name):
            default_storage.delete(name)
