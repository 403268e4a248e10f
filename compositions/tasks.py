"""Background jobs run by the django-q2 cluster. They take ids, never model instances."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection

from compositions import runtime, training
from compositions.errors import ComposingUnavailable
from compositions.exporting import ExportStopped, ExportTooLarge, account_export_write
from compositions.models import CompositionVersion
from compositions.services import reconciling
from compositions.services.exports import (
    account_export_fail,
    account_export_finish,
    account_export_progress,
    account_export_start,
)
from compositions.services.task_writes import (
    Claim,
    FinishedVersion,
    composition_files_clear_unnamed,
    composition_version_claim,
    composition_version_fail,
    composition_version_finish,
    composition_version_loudness,
    composition_version_progress,
    composition_version_rendering,
    composition_version_score,
)
from compositions.services.training import training_fail, training_finish, training_start
from ml.pipeline import PipelineError, Stopped

if TYPE_CHECKING:
    from ml.data.notes import NoteSequence
    from ml.generation.generator import Generator
    from ml.generation.piece import GeneratedPiece
    from ml.generation.request import GenerationRequest

logger = logging.getLogger(__name__)

# Generation fills the bar up to here; rendering the audio takes the rest.
GENERATION_SHARE = 90
# Write progress to the database only when it moved this many percent.
PROGRESS_STEP = 5
# Passages written for one regenerated bar range; the one that leads best into the kept bars is kept.
REGENERATE_CANDIDATES = 4


class Cancelled(Stopped):
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
        self.lost = threading.Event()  # a beat found none of the versions held: cancelled, deleted or taken
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def check(self) -> None:
        """Raise Cancelled once a beat has found the run holds nothing: called between blocks of work
        that write nothing themselves (rendering), so that a cancel stops it within a beat."""
        if self.lost.is_set():
            raise Cancelled

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
                    if not composition_version_progress(claim=self.claim):
                        self.lost.set()
                        return
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
        with Heartbeat(claim) as beat:
            _write_versions(claim, beat.check)
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


@dataclass
class Written:
    """One piece the run wrote, and what its report needs besides the piece and the request."""

    piece: GeneratedPiece
    request: GenerationRequest
    kept: tuple[str, bool] | None = None  # ("bars 5–8 regenerated", every other note kept)
    melody_kept: tuple[int, int] | None = None  # melody notes found on top, of all of them


def _write_versions(claim: Claim, check: Callable[[], None]) -> None:
    from ml.data.notes import estimate_key, key_name
    from ml.pipeline import arrangement_of, chord_changes, piano_roll, piece_form, render_piece

    versions = list(claim.rows().select_related("composition", "source").order_by("composition__variation_index"))
    if not versions:
        raise Cancelled
    kind = versions[0].kind
    progress = ProgressWriter(claim)
    if kind in (CompositionVersion.Kind.REGENERATE, CompositionVersion.Kind.HARMONISE):
        generator = _source_generator(versions[0])
        progress.stage("Generating")
        write = _regenerate if kind == CompositionVersion.Kind.REGENERATE else _harmonise_source
        written = [write(versions[0], generator, progress)]
    else:
        generator = runtime.get_generator()
        written = _compose(versions, generator, progress)

    if not composition_version_rendering(claim=claim, percent=GENERATION_SHARE):
        raise Cancelled
    renderer = runtime.get_renderer()
    finished = 0
    for version, result in zip(versions, written):
        if not claim.rows().filter(id=version.id).exists():
            continue  # this variation was cancelled or deleted while the others were written
        piece = result.piece
        stem = f"{version.composition.public_id}-v{version.number}"
        with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
            midi_path, mp3_path = Path(tmp) / f"{stem}.mid", Path(tmp) / f"{stem}.mp3"
            loudness, ceiling = runtime.loudness_for(result.request.dynamics)
            arrangement = arrangement_of(piece, result.request)
            # The MP3's loudness is measured by the follow-up task: the piece plays without waiting for it.
            rendered = render_piece(renderer, arrangement, midi_path=midi_path, audio_path=mp3_path,
                                    loudness=loudness, ceiling=ceiling, measure=False, check=check)
            if version.attempts > 1:  # an earlier run of it may have saved its files and stopped
                composition_files_clear_unnamed(names=[f"midi/{midi_path.name}", f"mp3/{mp3_path.name}"])
            # Saved outside any transaction: a write lock is never held while files are copied.
            with midi_path.open("rb") as midi, mp3_path.open("rb") as mp3:
                midi_name = default_storage.save(f"midi/{midi_path.name}", File(midi))
                mp3_name = default_storage.save(f"mp3/{mp3_path.name}", File(mp3))
        tonic, mode = estimate_key(piece.notes)
        finished += composition_version_finish(
            claim=claim,
            finished=FinishedVersion(
                version_id=version.id,
                midi_name=midi_name,
                mp3_name=mp3_name,
                fields={
                    "model_name": generator.name,
                    "model_path": str(generator.model_path),
                    "seed": piece.seed,  # the seed that reproduces this variation on its own
                    "duration_seconds": rendered.seconds,
                    "notes_json": piano_roll(piece.notes, arrangement.voice_of),
                    "chords_json": chord_changes(piece.notes, piece.key),
                    "form_json": {**piece_form(piece), "voices": arrangement.voice_names},
                    "primer_end": piece.primer_end if piece.primer_length else None,
                    "detected_key": key_name(tonic, mode),
                    "constraints": _report(generator, result),
                },
            ),
        )
    if not finished:
        raise Cancelled  # every version went while it was rendered: nothing of this run is kept


def composition_version_follow_up(version_id: int) -> None:
    """What follows a finished version while it already plays: its MP3's loudness as ffmpeg measures
    it, and its score (Verovio SVG and MusicXML) engraved, or why it has none.

    Idempotent: what a version has already is left alone, and a version not done is skipped. The
    engraving runs in a child process under SCORE_TIMEOUT_SECONDS; whatever goes wrong, the piece
    stays done and playable.
    """
    version = CompositionVersion.objects.filter(id=version_id).select_related("composition").first()
    if version is None or version.status != CompositionVersion.Status.DONE:
        return
    if version.loudness is None and version.mp3_file:
        _measure_loudness(version)
    if version.score_state == "pending":
        _engrave(version)


def _measure_loudness(version: CompositionVersion) -> None:
    from ml.audio.loudness import LoudnessError, measure

    try:
        with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
            local = Path(tmp) / "piece.mp3"
            with version.mp3_file.open("rb") as source, local.open("wb") as copy:
                copy.write(source.read())
            heard = measure(local)
    except (LoudnessError, OSError) as exc:
        logger.warning("Version %s: loudness not measured (%s)", version.id, exc)
        return
    composition_version_loudness(version_id=version.id, loudness=heard.to_dict())


def _engrave(version: CompositionVersion) -> None:
    from compositions.services.media import version_arrangement
    from ml.audio.score import ScoreError, engrave_apart

    version_id = version.id
    if settings.SCORE_TIMEOUT_SECONDS <= 0:
        composition_version_score(version_id=version_id, error="Scores are turned off on this site.")
        return
    started = time.monotonic()
    try:
        arrangement, _ = version_arrangement(version=version)
        score = engrave_apart(arrangement, timeout=settings.SCORE_TIMEOUT_SECONDS)
    except ScoreError as exc:
        composition_version_score(version_id=version_id, error=str(exc))
        logger.info("Version %s has no score: %s", version_id, exc)
        return
    except Exception as exc:  # the worker must survive anything ml/ throws
        logger.exception("Version %s: the score could not be engraved", version_id)
        composition_version_score(version_id=version_id,
                                  error=f"The score could not be engraved ({type(exc).__name__}).")
        return
    stem = f"{version.composition.public_id}-v{version.number}"
    svg_name = default_storage.save(f"scores/{stem}.svg", ContentFile(score.svg.encode("utf-8")))
    musicxml_name = default_storage.save(f"scores/{stem}.musicxml", ContentFile(score.musicxml.encode("utf-8")))
    composition_version_score(version_id=version_id, svg_name=svg_name, musicxml_name=musicxml_name,
                              bars=score.bar_times)
    logger.info("Version %s engraved in %.1f s (%d bars)", version_id, time.monotonic() - started, score.bars)


def _report(generator: Generator, result: Written) -> list[dict[str, Any]]:
    """What was asked and what the piece did; a failure here loses the report, never the piece."""
    from ml.pipeline import piece_report

    try:
        return piece_report(generator, result.piece, result.request, kept=result.kept,
                            melody_kept=result.melody_kept)
    except Exception:
        logger.exception("The report of a piece could not be made")
        return []


def _request(params: Mapping[str, Any], primer: NoteSequence | None = None, **changes: Any) -> GenerationRequest:
    """The request of a version's params (without what only the version needs), with `changes`."""
    from ml.generation.request import GenerationRequest, RequestError

    try:
        return GenerationRequest.from_dict({**runtime.request_controls(params), **changes}, primer=primer)
    except RequestError as exc:
        raise PipelineError(f"The request is not valid: {exc}") from exc


def _stored_midi(version: CompositionVersion, field: str = "primer_file") -> NoteSequence:
    """The notes of a MIDI file a version keeps (its primer, or its own file), parsed in the sandbox."""
    from ml.data.notes import MidiError

    with getattr(version, field).open("rb") as f:
        data = f.read()
    try:
        return runtime.primer_from_midi(data)
    except MidiError as exc:  # checked at upload, so only a changed file gets here
        raise PipelineError(f"The uploaded MIDI file could not be read: {exc}") from exc


def _compose(versions: list[CompositionVersion], generator: Generator,
             progress: ProgressWriter) -> list[Written]:
    """New pieces, a continuation (the request, after the MIDI file it continues), or voices under an
    uploaded melody."""
    from ml.pipeline import compose, harmonise

    first = versions[0]
    primer = _stored_midi(first) if first.primer_file else None
    if first.params.get("harmonise") and primer is not None:
        request = _request(first.params, variations=len(versions))
        progress.stage("Generating")
        pieces = harmonise(generator, primer, request, progress=progress)
        written = [Written(piece, request, melody_kept=_melody_kept(primer, piece)) for piece in pieces]
    else:
        # After a partial failure, only the missing variations are written.
        request = _request(first.params, primer, variations=len(versions))
        pieces = compose(generator, request, progress=progress, stage=progress.stage)
        written = [Written(piece, request) for piece in pieces]
    if len(written) < len(versions):
        raise PipelineError("The model wrote fewer variations than asked for")
    return written


def _source_generator(version: CompositionVersion) -> Generator:
    """The model that wrote the version this one changes: only it can write into its notes."""
    source = version.source
    path = runtime.model_file_of(version=source) if source is not None else None
    if source is None or path is None:
        raise PipelineError("The model that wrote this piece is no longer on this site")
    return runtime.get_generator(path)


def _source_notes(source: CompositionVersion) -> NoteSequence:
    """The notes of the version a new one changes (its melody, not the accompaniment), at its own
    tempo and metre as its MIDI file notates them."""
    from ml.pipeline import notes_from_piano_roll

    notated = _stored_midi(source, "midi_file")
    return notes_from_piano_roll(source.notes_json, tempo_bpm=float(notated.tempo_bpm),
                                 time_signature=notated.time_signature,
                                 program=int(source.params.get("instrument") or 0))


def _regenerate(version: CompositionVersion, generator: Generator, progress: ProgressWriter) -> Written:
    """Bars first..last of the source version written again, every other note kept."""
    from ml.data.notes import PITCH_CLASS_NAMES
    from ml.pipeline import regenerate

    source = version.source
    assert source is not None, "a regenerated passage is saved with its source"
    first_bar, last_bar = (int(bar) for bar in version.params["bars"])
    form = source.form_json
    tonic_name, _, mode = str(form.get("key", "C major")).partition(" ")
    key = (PITCH_CLASS_NAMES.index(tonic_name) if tonic_name in PITCH_CLASS_NAMES else 0, mode or "major")
    notes = _source_notes(source)
    # Candidates joined to what follows: the best-joining one of REGENERATE_CANDIDATES is kept.
    request = _request(version.params, variations=REGENERATE_CANDIDATES)
    piece = regenerate(generator, notes, request, form=form, key=key, first_bar=first_bar, last_bar=last_bar,
                       progress=progress)
    gap = _bar_seconds(form, first_bar, last_bar)
    return Written(piece, replace(request, variations=1),
                   kept=(f"bars {first_bar}–{last_bar} regenerated", _kept_outside(notes, piece.notes, gap)))


def _harmonise_source(version: CompositionVersion, generator: Generator, progress: ProgressWriter) -> Written:
    """Voices under the source version's melody (its top line)."""
    from ml.pipeline import harmonise

    source = version.source
    assert source is not None, "a harmonisation is saved with its source"
    melody = _source_notes(source)
    request = _request(version.params, variations=1)
    [piece, *_] = harmonise(generator, melody, request, progress=progress)
    return Written(piece, request, melody_kept=_melody_kept(melody, piece))


def _bar_seconds(form: Mapping[str, Any], first_bar: int, last_bar: int) -> tuple[float, float]:
    """Where bars first..last of a stored form start and end, in seconds."""
    phrases = form.get("phrases") or []
    beats = sum(p["end"] - p["start"] for p in phrases)
    seconds = sum(p["end_s"] - p["start_s"] for p in phrases)
    per_beat = seconds / beats if beats else 0.0
    origin = float(phrases[0]["start_s"]) - float(phrases[0]["start"]) * per_beat if phrases else 0.0
    bar = float(form.get("bar_beats") or 4.0) * per_beat
    return origin + (first_bar - 1) * bar, origin + last_bar * bar


def _rows(notes: NoteSequence) -> list[tuple[float, int, float, int]]:
    return [(round(float(s), 3), int(p), round(float(d), 3), int(v))
            for s, p, d, v in zip(notes.start, notes.pitch, notes.duration, notes.velocity)]


def _kept_outside(before: NoteSequence, after: NoteSequence, gap: tuple[float, float]) -> bool:
    """Whether every note of `before` outside the gap is in `after` as it was (one held into the gap
    keeps its onset, pitch and loudness: it is cut at the gap's edge)."""
    start, end = gap
    eps = 2e-3
    new = _rows(after)
    whole, onsets = set(new), {(s, p, v) for s, p, _, v in new}
    for row in _rows(before):
        onset, pitch, duration, velocity = row
        if onset >= end - eps or onset + duration <= start + eps:
            if row not in whole:
                return False
        elif onset < start - eps and (onset, pitch, velocity) not in onsets:
            return False
    return True


def _melody_kept(melody: NoteSequence, piece: GeneratedPiece) -> tuple[int, int]:
    """How many notes of the melody's top line are the top voice of `piece` at the same place."""
    from ml.generation.harmonise import melody_line

    line = melody_line(melody)
    if not len(piece.notes):
        return 0, len(line)
    # The piece starts at the melody's first bar line, so onsets are compared from each one's first.
    origin = float(piece.notes.start.min())
    top: dict[float, int] = {}
    for start, pitch in zip(piece.notes.start, piece.notes.pitch):
        onset = round(float(start) - origin, 2)
        top[onset] = max(top.get(onset, 0), int(pitch))
    found = sum(top.get(round(float(s - line.start[0]), 2)) == int(p) for s, p in zip(line.start, line.pitch))
    return int(found), len(line)


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
    # Written in a temporary folder of this worker, then stored where every host reads it.
    with tempfile.TemporaryDirectory(prefix="musicgen-training-") as folder:
        local = Path(folder) / Path(out_path).name
        try:
            result = training.run_training(held, local)
        except Exception as exc:  # the worker must survive a failed training run
            logger.exception("Training on data sets %s failed", held)
            training_fail(dataset_ids=held, error=f"{type(exc).__name__}: {exc}")
            return
        training_finish(dataset_ids=held, out_path=local, result=result)


# Copying the files into the zip fills the bar up to here; storing the zip takes the rest.
EXPORT_COPY_SHARE = 95


class ExportProgressWriter:
    """Progress callback for compositions.exporting that writes throttled percentages to the export's row."""

    def __init__(self, export_id: int) -> None:
        self.export_id = export_id
        self.written = 0

    def __call__(self, fraction: float) -> None:
        percent = int(max(0.0, min(1.0, fraction)) * EXPORT_COPY_SHARE)
        if percent >= self.written + PROGRESS_STEP:
            self.written = percent
            if not account_export_progress(export_id=self.export_id, percent=percent):
                raise ExportStopped


def account_export_build(export_id: int) -> None:
    """Write the zip of everything the export's user made, store it under exports/, and mark it done.

    Idempotent: an export that is running, done, failed or gone is left alone, so a second
    delivery does nothing. Whatever goes wrong ends as a failed export with a reason (past
    EXPORT_MAX_BYTES, the reason says so), and the worker carries on; nothing of a failed export
    stays in storage.
    """
    export = account_export_start(export_id=export_id)
    if export is None:
        logger.info("Export %s: nothing left to do", export_id)
        return
    started = time.monotonic()
    try:
        # Written in a temporary folder of this worker, then stored where every host reads it.
        with tempfile.TemporaryDirectory(prefix="musicgen-export-") as folder:
            archive = account_export_write(export=export, folder=Path(folder),
                                           progress=ExportProgressWriter(export_id))
            size = archive.stat().st_size
            with archive.open("rb") as zipped:
                name = default_storage.save(f"exports/musicgen-export-{export.public_id.hex}.zip", File(zipped))
    except ExportStopped:
        logger.info("Export %s stopped: deleted or given up", export_id)
        return
    except ExportTooLarge as exc:
        account_export_fail(export_id=export_id, reason=exc.reason)
        logger.warning("Export %s failed: %s", export_id, exc.reason)
        return
    except Exception as exc:  # the worker must survive a failed export
        logger.exception("Export %s failed", export_id)
        account_export_fail(export_id=export_id,
                            reason=f"Something went wrong while making the export ({type(exc).__name__}). "
                                   "Try again in a little while.")
        return
    if account_export_finish(export_id=export_id, name=name, size_bytes=size):
        logger.info("Export %s finished in %.1f s (%d bytes)", export_id, time.monotonic() - started, size)
