"""Background jobs run by the django-q2 cluster. They take ids, never model instances."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compositions import engine, selectors, training
from compositions.engine import CompositionFailed
from compositions.models import Composition, MusicModel, TrainingDataset

logger = logging.getLogger(__name__)

# Generation fills the bar up to here; rendering the audio takes the rest.
GENERATION_SHARE = 90
# Write progress to the database only when it moved this many percent.
PROGRESS_STEP = 5


class ProgressWriter:
    """Progress callback for ml.generate that writes throttled percentages to the rows."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.written = 0

    def __call__(self, fraction: float) -> None:
        percent = int(max(0.0, min(1.0, fraction)) * GENERATION_SHARE)
        if percent >= self.written + PROGRESS_STEP:
            self.written = percent
            Composition.objects.filter(id__in=self.ids).update(
                progress=percent, status_message=f"Generating {percent}%", updated_at=timezone.now()
            )


def _stage_writer(ids: list[int]) -> Callable[[str], None]:
    """Stage callback for engine.compose: "Loading the model", then "Generating", on the rows."""

    def stage(message: str) -> None:
        Composition.objects.filter(id__in=ids).update(status_message=message, updated_at=timezone.now())

    return stage


def _claim_batch(composition_id: int) -> list[Composition]:
    """Mark the pending rows of the batch generating and return them; [] when nothing is left to do."""
    with transaction.atomic():
        first = Composition.objects.select_for_update().filter(id=composition_id).first()
        if first is None:
            return []
        # Pending rows, and rows a dead worker left half-done (django-q2 delivers the task again).
        rows = list(
            Composition.objects.select_for_update()
            .filter(Q(status=Composition.Status.PENDING) | selectors.stalled_filter(), batch_id=first.batch_id)
            .order_by("variation_index")
        )
        Composition.objects.filter(id__in=[row.id for row in rows]).update(
            status=Composition.Status.GENERATING, progress=0, status_message="Generating", updated_at=timezone.now()
        )
    return rows


def composition_generate(composition_id: int) -> None:
    """Write the batch of `composition_id`: generate, render MIDI and MP3, store the files.

    Idempotent: rows already done (or taken by another run) are left alone. Every failure
    ends as a failed row with a readable reason; the worker process carries on.
    """
    rows = _claim_batch(composition_id)
    if not rows:
        return
    ids = [row.id for row in rows]
    try:
        _generate_rows(rows)
    except CompositionFailed as exc:
        _fail(ids, exc.reason, exc.detail)
    except Exception as exc:  # the worker must survive anything ml/ throws
        logger.exception("Composition batch %s failed", rows[0].batch_id)
        _fail(ids, "Something went wrong while composing", f"{type(exc).__name__}: {exc}")


def _generate_rows(rows: list[Composition]) -> None:
    first = rows[0]
    ids = [row.id for row in rows]
    primer = None
    if first.primer_file:
        with engine.failure_reason("The uploaded MIDI file could not be read"), first.primer_file.open("rb") as f:
            primer = engine.primer_from_midi(f.read())
    params = engine.params_from_row(first)
    params["variations"] = len(rows)  # after a partial failure, only the missing ones
    try:
        # The model checks the style itself when it loads (compose), with a clearer error.
        request = engine.request_from_params(params, primer=primer)
    except ValueError as exc:
        raise CompositionFailed(f"The request is not valid: {exc}") from exc

    composed = engine.compose(request, progress=ProgressWriter(ids), stage=_stage_writer(ids))
    if len(composed.pieces) < len(rows):
        raise CompositionFailed("The model wrote fewer variations than asked for")

    Composition.objects.filter(id__in=ids).update(
        status=Composition.Status.RENDERING, progress=GENERATION_SHARE, status_message="Rendering",
        updated_at=timezone.now(),
    )
    for row, piece in zip(rows, composed.pieces):
        with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
            midi_path = Path(tmp) / f"{row.public_id}.mid"
            mp3_path = Path(tmp) / f"{row.public_id}.mp3"
            duration = engine.render(piece.notes, midi_path=midi_path, mp3_path=mp3_path)
            with midi_path.open("rb") as midi, mp3_path.open("rb") as mp3:
                row.midi_file.save(midi_path.name, File(midi), save=False)
                row.mp3_file.save(mp3_path.name, File(mp3), save=False)
        row.model_name = composed.model_name
        row.seed = piece.seed  # reproduces this variation on its own
        row.duration_seconds = duration
        row.notes_json = engine.notes_payload(piece.notes)
        row.chords_json = engine.chord_changes(piece.notes)
        row.primer_end = piece.primer_end if piece.primer_length else None
        row.status = Composition.Status.DONE
        row.progress = 100
        row.status_message = "Done"
        row.save()


def _fail(ids: list[int], reason: str, detail: str) -> None:
    Composition.objects.filter(id__in=ids).exclude(status=Composition.Status.DONE).update(
        status=Composition.Status.FAILED, status_message="Failed", error=reason[:300], error_detail=detail,
        updated_at=timezone.now(),
    )


def model_train(dataset_ids: list[int], out_path: str) -> None:
    """Train a model on the data sets `dataset_ids`, save it at `out_path` and register it (inactive)."""
    datasets = TrainingDataset.objects.filter(id__in=dataset_ids)
    datasets.update(status=TrainingDataset.Status.TRAINING)
    try:
        result = training.run_training(dataset_ids, Path(out_path))
    except Exception as exc:  # the worker must survive a failed training run
        logger.exception("Training on data sets %s failed", dataset_ids)
        datasets.update(status=TrainingDataset.Status.FAILED, report={"error": f"{type(exc).__name__}: {exc}"})
        return
    MusicModel.objects.update_or_create(
        name=Path(out_path).stem,
        defaults={"path": str(out_path), "styles": result.styles, "metrics": result.metrics},
    )
    for dataset_id, report in result.reports.items():
        TrainingDataset.objects.filter(id=dataset_id).update(status=TrainingDataset.Status.TRAINED, report=report)
