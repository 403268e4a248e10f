"""Background jobs run by the django-q2 cluster. They take ids, never model instances."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection

from compositions import runtime, training
from compositions.errors import ComposingUnavailable
from compositions.models import CompositionVersion
from compositions.services import reconciling
from compositions.services.task_writes import (
    Claim,
    FinishedVersion,
    composition_version_claim,
    composition_version_fail,
    composition_version_finish,
    composition_version_progress,
    composition_version_rendering,
)
from compositions.services.training import training_fail, training_finish, training_start
from ml.pipeline import PipelineError

if TYPE_CHECKING:
    from ml.generation.generator import Generator
    from ml.generation.piece import GeneratedPiece

logger = logging.getLogger(__name__)

# Generation fills the bar up to here; rendering the audio takes the rest.
GENERATION_SHARE = 90
# Write progress to the database only when it moved this many percent.
PROGRESS_STEP = 5


class Cancelled(Exception):
    """Every version of the run was cancelled, deleted or taken over: stop working on them."""


class ProgressWriter:
    """Progress callback for ml.generation.generator that writes throttled percentages to the held versions."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.written = 0

    def __call__(self, fraction: float) -> None:
        percent = int(max(0.0, min(1.0, fraction)) * GENERATION_SHARE)
        if percent >= self.written + PROGRESS_STEP:
            self.written = percent
            if not composition_version_progress(claim=self.claim, percent=percent, message=f"Generating {percent}%"):
                raise Cancelled

    def stage(self, message: str) -> None:
        """Stage callback for ml.pipeline.compose: "Loading the model", then "Generating"."""
        if not composition_version_progress(claim=self.claim, message=message):
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
                    composition_version_progress(claim=self.claim)
                except DatabaseError:  # a busy database: the next beat tries again
                    logger.warning("Heartbeat for %s missed", self.claim.ids, exc_info=True)
        finally:
            connection.close()  # this thread's own connection


def composition_version_generate(version_id: int) -> None:
    """Write the batch of `version_id`: generate, render MIDI and MP3, store the files.

    The batch is the first versions of a request's variations, or one new version of a piece.
    Idempotent: versions already done, cancelled or held by a live run are left alone. Every
    failure of the work ends as a failed version with a readable reason, and the worker carries
    on. A failure to claim (the database is unreachable) raises, so that django-q2 delivers the
    task again; the reconciler covers what is left.
    """
    claim = composition_version_claim(version_id=version_id)
    if claim is None:
        logger.info("Version %s: nothing left to do", version_id)
        return
    started = time.monotonic()
    logger.info("Version batch %s started (versions %s)", version_id, claim.ids)
    try:
        with Heartbeat(claim):
            _write_versions(claim)
    except Cancelled:
        logger.info("Version batch %s stopped: cancelled or deleted", version_id)
        return
    except (PipelineError, ComposingUnavailable) as exc:
        composition_version_fail(claim=claim, reason=exc.reason, detail=exc.detail)
        logger.warning("Version batch %s failed: %s (%s)", version_id, exc.reason, exc.detail)
        return
    except Exception as exc:  # the worker must survive anything ml/ throws
        logger.exception("Version batch %s failed", version_id)
        composition_version_fail(
            claim=claim, reason="Something went wrong while composing", detail=f"{type(exc).__name__}: {exc}"
        )
        return
    logger.info("Version batch %s finished in %.1f s", version_id, time.monotonic() - started)


def _write_versions(claim: Claim) -> None:
    from ml.data.notes import PITCH_CLASS_NAMES, estimate_key
    from ml.pipeline import chord_changes, piano_roll, piece_form, render_piece

    versions = list(claim.rows().select_related("composition").order_by("composition__variation_index"))
    if not versions:
        raise Cancelled
    kind = versions[0].kind
    if kind not in (CompositionVersion.Kind.ORIGINAL, CompositionVersion.Kind.CONTINUE):
        # The ML half of regenerating and harmonising comes later; until then such a version fails
        # with a reason instead of waiting for ever.
        raise PipelineError(f"Versions of this kind ({kind}) cannot be written yet")
    progress = ProgressWriter(claim)
    generator = runtime.get_generator()
    pieces = _compose(versions, generator, progress)

    if not composition_version_rendering(claim=claim, percent=GENERATION_SHARE):
        raise Cancelled
    renderer = runtime.get_renderer()
    for version, piece in zip(versions, pieces):
        stem = f"{version.composition.public_id}-v{version.number}"
        with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
            midi_path, mp3_path = Path(tmp) / f"{stem}.mid", Path(tmp) / f"{stem}.mp3"
            duration = render_piece(renderer, piece.notes, midi_path=midi_path, audio_path=mp3_path,
                                    accompaniment=piece.accompaniment)
            # Saved outside any transaction: a write lock is never held while files are copied.
            with midi_path.open("rb") as midi, mp3_path.open("rb") as mp3:
                midi_name = default_storage.save(f"midi/{midi_path.name}", File(midi))
                mp3_name = default_storage.save(f"mp3/{mp3_path.name}", File(mp3))
        tonic, mode = estimate_key(piece.notes)
        composition_version_finish(
            claim=claim,
            finished=FinishedVersion(
                version_id=version.id,
                midi_name=midi_name,
                mp3_name=mp3_name,
                fields={
                    "model_name": generator.name,
                    "model_path": str(generator.model_path),
                    "seed": piece.seed,  # the seed that reproduces this variation on its own
                    "duration_seconds": duration,
                    "notes_json": piano_roll(piece.notes),
                    "chords_json": chord_changes(piece.notes),
                    "form_json": piece_form(piece),
                    "primer_end": piece.primer_end if piece.primer_length else None,
                    "detected_key": f"{PITCH_CLASS_NAMES[tonic]} {mode}",
                },
            ),
        )


def _compose(versions: list[CompositionVersion], generator: Generator,
             progress: ProgressWriter) -> list[GeneratedPiece]:
    """The notes of new pieces, or of a continuation: the request, after the MIDI file it continues."""
    from ml.data.notes import MidiError
    from ml.generation.request import GenerationRequest, RequestError
    from ml.pipeline import compose

    first = versions[0]
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
        request = GenerationRequest.from_dict({**first.params, "variations": len(versions)}, primer=primer)
    except RequestError as exc:
        raise PipelineError(f"The request is not valid: {exc}") from exc
    pieces = compose(generator, request, progress=progress, stage=progress.stage)
    if len(pieces) < len(versions):
        raise PipelineError("The model wrote fewer variations than asked for")
    return pieces


def composition_reconcile() -> dict[str, int]:
    """Scheduled every minute: re-queue or fail versions whose task is gone (see services.reconciling)."""
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
