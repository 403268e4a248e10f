"""The one bridge between the site and ml/: generator and renderer caches, and the pipeline.

TensorFlow is heavy and must not be imported before django-q2 forks its workers, so every
`ml` import here happens inside a function. The generator and the renderer are created
lazily, once per process, and reused by every task that process runs.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from django.conf import settings
from django.db import DatabaseError

from compositions.models import MusicModel

if TYPE_CHECKING:
    from ml.generate import GeneratedPiece, GenerationRequest, Generator
    from ml.notes import NoteSequence
    from ml.render import Renderer

logger = logging.getLogger(__name__)

# The request parameters a Composition row stores, named as in ml.generate.GenerationRequest.
REQUEST_FIELDS = (
    "style",
    "seconds",
    "tempo_bpm",
    "key",
    "mode",
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
    seconds: float
    tempo_bpm: float | None
    key: str
    mode: str
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


def available_styles() -> list[str]:
    """Styles the active model can write: from its MusicModel row, else from its archive (no weights)."""
    try:
        row_styles = MusicModel.objects.filter(is_active=True).values_list("styles", flat=True).first()
    except DatabaseError:
        row_styles = None
    if row_styles:
        return list(row_styles)
    try:
        return get_generator().styles
    except (CompositionFailed, ValueError):  # no model file, or one ml cannot read
        logger.warning("No styles: the music model is missing or broken", exc_info=True)
        return []


def request_from_params(params: CompositionParams, *, primer: NoteSequence | None = None) -> GenerationRequest:
    """A GenerationRequest from stored or submitted parameters; ValueError says what is wrong."""
    from ml.generate import GenerationRequest

    return GenerationRequest(**params, primer=primer)


def build_request(params: CompositionParams, *, primer: NoteSequence | None = None) -> GenerationRequest:
    """Validate user input into a GenerationRequest for the active model; ValueError says what is wrong."""
    request = request_from_params(params, primer=primer)
    styles = available_styles()
    if request.style not in styles:
        raise ValueError(f"Unknown style {request.style!r}; choose one of: {', '.join(styles) or 'none'}.")
    try:
        generator = get_generator()
    except CompositionFailed:
        return request  # no model file: the worker reports that, with its reason, on the piece
    generator.validate(request)  # what only the model knows: a length it cannot reach
    return request


def primer_from_midi(data: bytes) -> NoteSequence:
    """Parse an uploaded MIDI file to continue; ml.notes.MidiError (a ValueError) when it has no notes."""
    from ml.notes import notes_from_midi

    return notes_from_midi(data)


@dataclass
class Composed:
    """The pieces one generate() call wrote, and the model that wrote them."""

    model_name: str
    pieces: list[GeneratedPiece]


def compose(request: GenerationRequest, progress: Callable[[float], None] | None = None) -> Composed:
    """Generate every variation of `request` in one call; `progress` gets fractions 0..1."""
    generator = get_generator()
    with failure_reason("The model file is broken"):
        generator.load()
    try:
        generator.validate(request)
    except ValueError as exc:
        raise CompositionFailed(f"The request is not valid: {exc}") from exc
    with failure_reason("The model could not write this piece"):
        pieces = generator.generate(request, progress=progress)
    return Composed(model_name=generator.name, pieces=pieces)


def render(notes: NoteSequence, *, midi_path: Path, mp3_path: Path) -> float:
    """Write `notes` as MIDI and MP3; return the measured length of the audio in seconds."""
    from ml.notes import notes_to_midi, write_midi
    from ml.render import encode_mp3

    renderer = get_renderer()
    with failure_reason("The MIDI file could not be written"):
        write_midi(notes, midi_path)
    with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
        wav_path = Path(tmp) / "piece.wav"
        with failure_reason("Audio rendering failed"):
            seconds = renderer.render_wav(notes_to_midi(notes), wav_path)
        with failure_reason("MP3 encoding failed"):
            encode_mp3(wav_path, mp3_path)
    return float(seconds)


def notes_payload(notes: NoteSequence) -> list[list[float]]:
    """Notes as [pitch, start_s, duration_s, velocity] rows for the piano roll."""
    return [
        [int(pitch), round(float(start), 3), round(float(duration), 3), int(velocity)]
        for pitch, start, duration, velocity in zip(notes.pitch, notes.start, notes.duration, notes.velocity)
    ]
