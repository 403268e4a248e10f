"""Background jobs run by the django-q2 cluster. They take ids, never model instances."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection

from compositions import runtime, training
from compositions.errors import ComposingUnavailable
from compositions.services import reconciling
from compositions.services.task_writes import (
    Claim,
    FinishedPiece,
    composition_claim,
    composition_fail,
    composition_finish,
    composition_progress,
    composition_rendering,
)
from compositions.services.training import training_fail, training_finish, training_start
from ml.pipeline import PipelineError

logger = logging.getLogger(__name__)

# Generation fills the bar up to here; rendering the audio takes the rest.
GENERATION_SHARE = 90
# Write progress to the database only when it moved this many percent.
PROGRESS_STEP = 5


class Cancelled(Exception):
    """Every row of the run was cancelled, deleted or taken over: stop working on them."""


class ProgressWriter:
    """Progress callback for ml.generation.generator that writes throttled percentages to the held rows."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.written = 0

    def __call__(self, fraction: float) -> None:
        percent = int(max(0.0, min(1.0, fraction)) * GENERATION_SHARE)
        if percent >= self.written + PROGRESS_STEP:
            self.written = percent
            if not composition_progress(claim=self.claim, percent=percent, message=f"Generating {percent}%"):
                raise Cancelled

    def stage(self, message: str) -> None:
        """Stage callback for ml.pipeline.compose: "Loading the model", then "Generating"."""
        if not composition_progress(claim=self.claim, message=message):
            raise Cancelled


class Heartbeat:
    """Touches the held rows every Q_HEARTBEAT_SECONDS from a thread, while the run works.

    Loading the model or rendering a long piece can be silent for a while; the beat is what tells
    the reconciler that this worker is alive, so that it does not hand the rows to another one.
    """

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(settings.Q_HEARTBEAT_SECONDS):
                try:
                    composition_progress(claim=self.claim)
                except DatabaseError:  # a busy database: the next beat tries again
                    logger.warning("Heartbeat for %s missed", self.claim.ids, exc_info=True)
        finally:
            connection.close()  # this thread's own connection


def composition_generate(composition_id: int) -> None:
    """Write the batch of `composition_id`: generate, render MIDI and MP3, store the files.

    Idempotent: rows already done, cancelled or held by a live run are left alone. Every
    failure of the work ends as a failed row with a readable reason, and the worker carries on.
    A failure to claim (the database is unreachable) raises, so that django-q2 delivers the task
    again; the reconciler covers what is left.
    """
    claim = composition_claim(composition_id=composition_id)
    if claim is None:
        logger.info("Composition %s: nothing left to do", composition_id)
        return
    started = time.monotonic()
    logger.info("Composition batch %s started (rows %s)", composition_id, claim.ids)
    try:
        with Heartbeat(claim):
            _generate_rows(claim)
    except Cancelled:
        logger.info("Composition batch %s stopped: cancelled or deleted", composition_id)
        return
    except (PipelineError, ComposingUnavailable) as exc:
        composition_fail(claim=claim, reason=exc.reason, detail=exc.detail)
        logger.warning("Composition batch %s failed: %s (%s)", composition_id, exc.reason, exc.detail)
        return
    except Exception as exc:  # the worker must survive anything ml/ throws
        logger.exception("Composition batch %s failed", composition_id)
        composition_fail(
            claim=claim, reason="Something went wrong while composing", detail=f"{type(exc).__name__}: {exc}"
        )
        return
    logger.info("Composition batch %s finished in %.1f s", composition_id, time.monotonic() - started)


def _generate_rows(claim: Claim) -> None:
    from ml.data.notes import PITCH_CLASS_NAMES, MidiError, estimate_key
    from ml.generation.request import GenerationRequest, RequestError
    from ml.pipeline import chord_changes, compose, piano_roll, piece_form, render_piece

    rows = list(claim.rows().order_by("variation_index"))
    if not rows:
        raise Cancelled
    first = rows[0]
    primer = None
    if first.primer_file:
        with first.primer_file.open("rb") as f:
            data = f.read()
        try:
            primer = runtime.primer_from_midi(data)
        except MidiError as exc:  # checked at upload, so only a changed file gets here
            raise PipelineError(f"The uploaded MIDI file could not be read: {exc}") from exc
    try:
        # After a partial failure, only the missing variations are written.
        request = GenerationRequest.from_dict({**first.params, "variations": len(rows)}, primer=primer)
    except RequestError as exc:
        raise PipelineError(f"The request is not valid: {exc}") from exc

    progress = ProgressWriter(claim)
    generator = runtime.get_generator()
    pieces = compose(generator, request, progress=progress, stage=progress.stage)
    if len(pieces) < len(rows):
        raise PipelineError("The model wrote fewer variations than asked for")

    if not composition_rendering(claim=claim, percent=GENERATION_SHARE):
        raise Cancelled
    renderer = runtime.get_renderer()
    for row, piece in zip(rows, pieces):
        with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
            midi_path = Path(tmp) / f"{row.public_id}.mid"
            mp3_path = Path(tmp) / f"{row.public_id}.mp3"
            duration = render_piece(renderer, piece.notes, midi_path=midi_path, audio_path=mp3_path)
            # Saved outside any transaction: a write lock is never held while files are copied.
            with midi_path.open("rb") as midi, mp3_path.open("rb") as mp3:
                midi_name = default_storage.save(f"midi/{midi_path.name}", File(midi))
                mp3_name = default_storage.save(f"mp3/{mp3_path.name}", File(mp3))
        tonic, mode = estimate_key(piece.notes)
        composition_finish(
            claim=claim,
            piece=FinishedPiece(
                composition_id=row.id,
                midi_name=midi_name,
                mp3_name=mp3_name,
                fields={
                    "model_name": generator.name,
                    # The seed that reproduces this variation on its own.
                    "params": {**row.params, "seed": piece.seed},
                    "duration_seconds": duration,
                    "notes_json": piano_roll(piece.notes),
                    "chords_json": chord_changes(piece.notes),
                    "form_json": piece_form(piece),
                    "primer_end": piece.primer_end if piece.primer_length else None,
                    "detected_key": f"{PITCH_CLASS_NAMES[tonic]} {mode}",
                },
            ),
        )


def composition_reconcile() -> dict[str, int]:
    """Scheduled every minute: re-queue or fail pieces whose task is gone (see services.reconciling)."""
    return reconciling.composition_reconcile()


def model_train(dataset_ids: list[int], out_path: str) -> None:
    """Train a model on the queued data sets `dataset_ids`, save it at `out_path` and register it (inactive).

    Idempotent: a second delivery finds the data sets no longer queued and does nothing.
    """
    held = training_start(dataset_ids=dataset_ids)
    if not held:
        logger.info("Training on data sets %s: nothing left to do", dataset_ids)
        return
    try:
        result = training.run_training(held, Path(out_path))
    except Exception as exc:  # the worker must survive a failed training run
        logger.exception("Training on data sets %s failed", held)
        training_fail(dataset_ids=held, error=f"{type(exc).__name__}: {exc}")
        return
    training_finish(dataset_ids=held, out_path=Path(out_path), result=result)
