"""The one bridge between the site and ml/: generator and renderer caches, and the pipeline.

TensorFlow is heavy and must not be imported before django-q2 forks its workers, so every
`ml` import here happens inside a function. The generator and the renderer are created
lazily, once per process, and reused by every task that process runs.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from django.core.files.uploadedfile import UploadedFile

from django.conf import settings
from django.db import DatabaseError

from compositions.models import Composition, MusicModel

if TYPE_CHECKING:
    from ml.generate import GeneratedPiece, GenerationRequest, Generator
    from ml.midi_check import MidiLimits
    from ml.notes import NoteSequence
    from ml.render import Renderer

logger = logging.getLogger(__name__)

# The request parameters a Composition row stores, named as in ml.generate.GenerationRequest.
REQUEST_FIELDS = (
    "style",
    "seconds",
    "notes",
    "tempo_bpm",
    "time_signature",
    "key",
    "mode",
    "pitch_low",
    "pitch_high",
    "temperature",
    "timing_temperature",
    "top_k",
    "top_p",
    "seed",
    "dynamics",
    "instrument",
    "variations",
)


class CompositionParams(TypedDict, total=False):
    """What a user may ask for; GenerationRequest validates it."""

    style: str
    seconds: float | None
    notes: int | None
    tempo_bpm: float | None
    time_signature: str  # "3/4"; GenerationRequest takes it as a (numerator, denominator) tuple
    key: str
    mode: str
    pitch_low: int
    pitch_high: int
    temperature: float
    timing_temperature: float
    top_k: int
    top_p: float
    seed: int | None
    dynamics: str
    instrument: int
    variations: int


class CompositionFailed(Exception):
    """A composition cannot be finished; `reason` is shown to the user as is."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@contextmanager
def failure_reason(reason: str) -> Iterator[None]:
    """Turn any exception inside the block into CompositionFailed(reason)."""
    try:
        yield
    except CompositionFailed:
        raise
    except Exception as exc:
        logger.exception("%s", reason)
        raise CompositionFailed(reason, f"{type(exc).__name__}: {exc}") from exc


def active_model_path() -> Path:
    """The .keras file new compositions use: the active MusicModel row, else MUSIC_MODEL_PATH."""
    try:
        active = MusicModel.objects.filter(is_active=True).values_list("path", flat=True).first()
    except DatabaseError:  # before the first migrate (e.g. during `manage.py check`)
        active = None
    return Path(active) if active else Path(settings.MUSIC_MODEL_PATH)


def soundfont_path() -> Path:
    """The SoundFont to render with: SOUNDFONT_PATH, else the one ml.render finds."""
    from ml.render import find_soundfont

    if settings.SOUNDFONT_PATH and not Path(settings.SOUNDFONT_PATH).is_file():
        raise CompositionFailed("The SoundFont file is missing", str(settings.SOUNDFONT_PATH))
    with failure_reason("The SoundFont file is missing"):
        return find_soundfont(settings.SOUNDFONT_PATH or None)


_generators: dict[Path, tuple[float, Generator]] = {}  # path -> (file mtime, generator)
_renderers: dict[Path, Renderer] = {}


def get_generator(model_path: Path | None = None) -> Generator:
    """The generator for `model_path`, created once per process (again if the file changes).

    Creating it is cheap; the weights load on first use (`compose`), after the worker forked.
    """
    path = model_path or active_model_path()
    if not path.is_file():
        raise CompositionFailed("The music model file is missing", str(path))
    mtime = path.stat().st_mtime
    cached = _generators.get(path)
    if cached is None or cached[0] != mtime:  # a retrained file replaces the old weights in memory
        from ml.generate import Generator

        _generators[path] = (mtime, Generator(path))
    return _generators[path][1]


def get_renderer() -> Renderer:
    """The FluidSynth renderer for the configured SoundFont, created once per process."""
    path = soundfont_path()
    if path not in _renderers:
        from ml.render import Renderer

        _renderers[path] = Renderer(path)
    return _renderers[path]


_TOOLS_CHECKED_FOR = 60.0  # seconds a tools check is trusted, so pages do not probe per request
_tools_checked: tuple[float, str, list[str]] = (0.0, "", [])


def rendering_problems() -> list[str]:
    """What this machine lacks to render audio (FluidSynth, ffmpeg, the SoundFont), one line each."""
    global _tools_checked
    from ml.render import check_tools

    checked_at, soundfont, problems = _tools_checked
    now = time.monotonic()
    if now - checked_at > _TOOLS_CHECKED_FOR or soundfont != settings.SOUNDFONT_PATH:
        problems = check_tools(settings.SOUNDFONT_PATH or None)
        _tools_checked = (now, settings.SOUNDFONT_PATH, problems)
    return problems


def model_styles() -> list[str]:
    """Styles the active model can write: from its MusicModel row, else from its archive (no weights).

    Raises CompositionFailed when there is no usable model to ask.
    """
    try:
        row_styles = MusicModel.objects.filter(is_active=True).values_list("styles", flat=True).first()
    except DatabaseError:
        row_styles = None
    if row_styles:
        return list(row_styles)
    generator = get_generator()
    with failure_reason("The model file is broken"):
        return generator.styles


def available_styles() -> list[str]:
    """model_styles(), or [] when there is no usable model (for choice lists)."""
    try:
        return model_styles()
    except CompositionFailed:
        logger.warning("No styles: the music model is missing or broken", exc_info=True)
        return []


def parse_time_signature(text: str) -> tuple[int, int]:
    """(3, 4) from "3/4"; GenerationRequest checks which values are allowed."""
    match = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{1,2})\s*", text)
    if match is None:
        raise ValueError(f"Time signature {text!r} is not like 4/4, 3/4 or 6/8.")
    return int(match.group(1)), int(match.group(2))


def request_from_params(params: CompositionParams, *, primer: NoteSequence | None = None) -> GenerationRequest:
    """A GenerationRequest from stored or submitted parameters; ValueError says what is wrong."""
    from ml.generate import GenerationRequest

    fields: dict[str, object] = dict(params)
    if isinstance(fields.get("time_signature"), str):
        fields["time_signature"] = parse_time_signature(str(fields["time_signature"]))
    return GenerationRequest(**fields, primer=primer)  # type: ignore[arg-type]


def build_request(params: CompositionParams, *, primer: NoteSequence | None = None) -> GenerationRequest:
    """Validate user input into a GenerationRequest for the active model.

    ValueError says what is wrong with the input; CompositionFailed says that no model is there to ask.
    """
    request = request_from_params(params, primer=primer)
    styles = model_styles()
    if request.style not in styles:
        raise ValueError(f"Unknown style {request.style!r}; choose one of: {', '.join(styles)}.")
    try:
        generator = get_generator()
    except CompositionFailed:
        # The row names the styles, but the file lives on the worker: the worker checks the rest.
        return request
    generator.validate(request)  # what only the model knows: a length it cannot reach
    return request


def stored_params(request: GenerationRequest) -> dict[str, object]:
    """The request as Composition columns."""
    params: dict[str, object] = {field: getattr(request, field) for field in REQUEST_FIELDS}
    numerator, denominator = request.time_signature
    params["time_signature"] = f"{numerator}/{denominator}"
    return params


def params_from_row(composition: Composition) -> CompositionParams:
    """The parameters a Composition row was requested with, to request it again."""
    return {field: getattr(composition, field) for field in REQUEST_FIELDS}  # type: ignore[return-value]


def midi_limits() -> MidiLimits:
    """The caps an uploaded MIDI file is checked against (PRIMER_MAX_BYTES and ml's defaults)."""
    from ml.midi_check import MidiLimits

    return MidiLimits(max_bytes=settings.PRIMER_MAX_BYTES)


def primer_from_midi(data: bytes) -> NoteSequence:
    """Check and parse an untrusted MIDI file in a sandbox; ml.notes.MidiError (a ValueError) says why not."""
    from ml.midi_check import parse_midi_isolated

    notes, _ = parse_midi_isolated(data, midi_limits())
    return notes


def primer_from_upload(upload: UploadedFile) -> tuple[bytes, NoteSequence]:
    """The bytes and notes of an uploaded MIDI file to continue; ValueError says what is wrong.

    The size is checked before the file is read, and the file is parsed away from this process.
    """
    limit = settings.PRIMER_MAX_BYTES
    if upload.size is None or upload.size > limit:
        raise ValueError(f"The MIDI file is larger than {limit / (1024 * 1024):g} MB.")
    data = upload.read(limit + 1)
    return data, primer_from_midi(data)


@dataclass
class Composed:
    """The pieces one generate() call wrote, and the model that wrote them."""

    model_name: str
    pieces: list[GeneratedPiece]


def compose(
    request: GenerationRequest,
    progress: Callable[[float], None] | None = None,
    stage: Callable[[str], None] | None = None,
) -> Composed:
    """Generate every variation of `request` in one call.

    `progress` gets fractions 0..1; `stage` gets "Loading the model", then "Generating", because
    the first load in a process takes seconds while the progress still reads 0.
    """
    generator = get_generator()
    if stage is not None:
        stage("Loading the model")
    with failure_reason("The model file is broken"):
        generator.load()
    if stage is not None:
        stage("Generating")
    try:
        generator.validate(request)
    except ValueError as exc:
        raise CompositionFailed(f"The request is not valid: {exc}") from exc
    with failure_reason("The model could not write this piece"):
        pieces = generator.generate(request, progress=progress)
    return Composed(model_name=generator.name, pieces=pieces)


AUDIO_FORMATS = (".mp3", ".wav")


def render(notes: NoteSequence, *, midi_path: Path, mp3_path: Path) -> float:
    """Write `notes` as MIDI and audio; return the measured length of the audio in seconds.

    The audio is MP3, or WAV when `mp3_path` ends in .wav (the compose command's choice).
    """
    from ml.notes import notes_to_midi, write_midi
    from ml.render import encode_mp3

    if mp3_path.suffix.lower() not in AUDIO_FORMATS:
        raise ValueError(f"Audio files are written as {' or '.join(AUDIO_FORMATS)}, not {mp3_path.suffix or 'no suffix'}.")
    renderer = get_renderer()
    with failure_reason("The MIDI file could not be written"):
        write_midi(notes, midi_path)
    with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
        wav_path = Path(tmp) / "piece.wav"
        with failure_reason("Audio rendering failed"):
            seconds = renderer.render_wav(notes_to_midi(notes), wav_path)
        if mp3_path.suffix.lower() == ".wav":
            shutil.move(wav_path, mp3_path)
        else:
            with failure_reason("MP3 encoding failed"):
                encode_mp3(wav_path, mp3_path)
    return float(seconds)


def notes_payload(notes: NoteSequence) -> list[list[float]]:
    """Notes as [pitch, start_s, duration_s, velocity] rows for the piano roll."""
    return [
        [int(pitch), round(float(start), 3), round(float(duration), 3), int(velocity)]
        for pitch, start, duration, velocity in zip(notes.pitch, notes.start, notes.duration, notes.velocity)
    ]


def notes_from_payload(rows: list[list[float]], composition: Composition) -> NoteSequence:
    """The notes stored for the piano roll, as a sequence to render again (verify_media's repair)."""
    import numpy as np

    from ml.notes import NoteSequence

    table = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    numerator, denominator = parse_time_signature(composition.time_signature)
    return NoteSequence.from_notes(
        start=table[:, 1], pitch=table[:, 0].astype(np.int16), duration=table[:, 2],
        velocity=table[:, 3].astype(np.int16), tempo_bpm=composition.tempo_bpm or 120.0,
        time_signature=(numerator, denominator), program=composition.instrument,
    )


def chord_changes(notes: NoteSequence) -> list[list[float | str | None]]:
    """[start_s, label] wherever the sounding chord changes; label None where no chord sounds."""
    from ml.notes import chord_labels

    changes: list[list[float | str | None]] = []
    current: str | None = None
    for start, label in zip(notes.start, chord_labels(notes)):
        if label != current:
            changes.append([round(float(start), 3), label])
            current = label
    return changes


def warm_up(**_: object) -> None:
    """Prepare a freshly spawned worker (django-q2's post_spawn): reconcile, then load the model.

    This runs after the fork, in the worker process that will use the model, before it takes its
    first task. Reconciling here means that pieces a crashed cluster left behind are queued again
    as soon as a worker is back. A missing or broken model is only logged; the task reports it.
    """
    # In sync mode django-q2 runs its worker loop inside the caller for every task: no worker to warm.
    if settings.Q_SYNC:
        return
    from compositions.services import composition_reconcile

    try:
        composition_reconcile()
    except DatabaseError:  # the schedule runs it again within a minute
        logger.warning("Could not reconcile compositions at worker start", exc_info=True)
    if not settings.Q_WARMUP:
        return
    try:
        get_generator().warm_up()
    except Exception:  # the worker must start whatever the model's state
        logger.warning("Could not warm up the music model", exc_info=True)
