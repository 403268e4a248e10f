"""Per-process state: the generator and renderer caches, and request validation against the model.

Web processes only read a model's metadata (styles, tempos, statistics) from the `.keras`
archive, which needs no TensorFlow. Worker processes load the weights on first use, or as they
are spawned (`compositions.worker.warm_up`), after django-q2 forked them: TensorFlow must not be
imported before.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError

from compositions.errors import ComposingUnavailable, RequestInvalid
from compositions.models import CompositionVersion, MusicModel

if TYPE_CHECKING:
    from ml.audio.render import Renderer
    from ml.data.midi_check import MidiLimits
    from ml.data.notes import NoteSequence
    from ml.generation.generator import Generator
    from ml.generation.request import GenerationRequest

def model_file(music_model: MusicModel) -> Path:
    """Where this machine reads `music_model`'s .keras file: its stored file (the path itself on a
    local disk; from object storage, a copy made once per machine in MODEL_CACHE_DIR, which stays
    valid because a stored name is never written twice), else its `path` on the workers.

    Raises ComposingUnavailable when the stored file cannot be read.
    """
    if not music_model.file:
        return Path(music_model.path)
    name = music_model.file.name
    try:
        return Path(music_model.file.path)  # FileSystemStorage: the file itself
    except NotImplementedError:  # object storage has no local path
        pass
    local = Path(settings.MODEL_CACHE_DIR) / hashlib.sha256(name.encode()).hexdigest()[:16] / Path(name).name
    if local.is_file():
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(f".{local.name}.{os.getpid()}.part")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with music_model.file.open("rb") as source, partial.open("wb") as copy:
            shutil.copyfileobj(source, copy, 1 << 20)
        os.replace(partial, local)  # whole or not at all, also with several workers copying at once
    except (OSError, ValueError, BotoCoreError, ClientError) as exc:
        partial.unlink(missing_ok=True)
        raise ComposingUnavailable("The music model file cannot be read from storage", f"{name}: {exc}") from exc
    return local


def active_model_path() -> Path:
    """The .keras file new compositions use: the active MusicModel row's, else MUSIC_MODEL_PATH.

    Read from the database on every call, so that a model activated in the admin reaches every
    worker with its next piece, without a restart.
    """
    try:
        active = MusicModel.objects.filter(is_active=True).first()
    except DatabaseError:  # before the first migrate (e.g. during `manage.py check`)
        active = None
    return model_file(active) if active is not None else Path(settings.MUSIC_MODEL_PATH)


def model_file_of(*, version: CompositionVersion) -> Path | None:
    """The .keras file of the model that wrote `version`, while it is still here; None once it is gone.

    The file it was written with, else a file the site knows (a MusicModel row, MUSIC_MODEL_PATH)
    under the name the version records.
    """
    if version.model_path and Path(version.model_path).is_file():
        return Path(version.model_path)
    if not version.model_name:
        return None
    for music_model in MusicModel.objects.all():
        if music_model.stem == version.model_name:
            try:
                path = model_file(music_model)
            except ComposingUnavailable:
                continue
            if path.is_file():
                return path
    default = Path(settings.MUSIC_MODEL_PATH)
    return default if default.stem == version.model_name and default.is_file() else None


_generators: dict[tuple[Path, str], tuple[float, Generator]] = {}  # (path, engine) -> (file mtime, generator)
_renderers: dict[Path, Renderer] = {}


def get_generator(model_path: Path | None = None, *, engine: str = "compiled") -> Generator:
    """The generator for `model_path`, created once per process (again if the file changes).

    Creating it reads no weights; they load on first use, after the worker forked. Workers keep
    the compiled engine; a one-shot command asks for engine="numpy" (no TensorFlow to import,
    nothing to compile).
    """
    path = model_path or active_model_path()
    if not path.is_file():
        raise ComposingUnavailable("The music model file is missing", str(path))
    mtime = path.stat().st_mtime
    cached = _generators.get((path, engine))
    if cached is None or cached[0] != mtime:  # a retrained file replaces the old weights in memory
        from ml.generation.generator import Generator

        _generators[(path, engine)] = (mtime, Generator(path, engine=engine))
    return _generators[(path, engine)][1]


def get_renderer() -> Renderer:
    """The FluidSynth renderer for the configured SoundFont, created once per process."""
    from ml.audio.render import Renderer, RenderError, find_soundfont
    from ml.pipeline import PipelineError

    try:
        path = find_soundfont(settings.SOUNDFONT_PATH or None)
    except RenderError as exc:
        raise PipelineError("The SoundFont file is missing", str(exc)) from exc
    if path not in _renderers:
        _renderers[path] = Renderer(path)
    return _renderers[path]


def loudness_for(dynamics: str) -> tuple[float, float]:
    """The integrated loudness (LUFS) a piece of `dynamics` is brought to, and the true-peak ceiling."""
    from ml.audio.loudness import LoudnessTargets

    targets = LoudnessTargets(medium=settings.MUSIC_LOUDNESS_LUFS, soft=settings.MUSIC_LOUDNESS_SOFT_LUFS,
                              loud=settings.MUSIC_LOUDNESS_LOUD_LUFS, ceiling=settings.MUSIC_TRUE_PEAK_DBTP)
    return targets.for_dynamics(dynamics), targets.ceiling


def model_styles() -> list[str]:
    """Styles the active model can write: from its MusicModel row, else from its archive (no weights)."""
    try:
        row_styles = MusicModel.objects.filter(is_active=True).values_list("styles", flat=True).first()
    except DatabaseError:
        row_styles = None
    if row_styles:
        return list(row_styles)
    generator = get_generator()
    try:
        return generator.styles
    except ValueError as exc:
        raise ComposingUnavailable("The model file is broken", str(exc)) from exc


_TOOLS_CHECKED_FOR = 60.0  # seconds a tools check is trusted, so pages do not probe per request
_tools_checked: tuple[float, str, list[str]] = (0.0, "", [])


def rendering_problems() -> list[str]:
    """What this machine lacks to render audio (FluidSynth, ffmpeg, the SoundFont), one line each."""
    global _tools_checked
    from ml.audio.render import check_tools

    checked_at, soundfont, problems = _tools_checked
    now = time.monotonic()
    if now - checked_at > _TOOLS_CHECKED_FOR or soundfont != settings.SOUNDFONT_PATH:
        problems = check_tools(settings.SOUNDFONT_PATH or None)
        _tools_checked = (now, settings.SOUNDFONT_PATH, problems)
    return problems


def composing_state() -> tuple[list[str], str]:
    """The styles to offer, and why composing is impossible on this machine right now ("" when it is not)."""
    try:
        styles = model_styles()
    except ComposingUnavailable as exc:
        return [], exc.reason
    problems = rendering_problems()
    return styles, problems[0] if problems else ""


# -- requests --------------------------------------------------------------------------------------


def midi_limits() -> MidiLimits:
    """The caps an uploaded MIDI file is checked against (PRIMER_MAX_BYTES and ml's defaults)."""
    from ml.data.midi_check import MidiLimits

    return MidiLimits(max_bytes=settings.PRIMER_MAX_BYTES)


def primer_from_midi(data: bytes) -> NoteSequence:
    """Check and parse an untrusted MIDI file in a sandbox; ml.data.notes.MidiError (a ValueError) says why not."""
    from ml.data.midi_check import parse_midi_isolated

    notes, _ = parse_midi_isolated(data, midi_limits())
    return notes


def read_upload(upload: UploadedFile | None) -> bytes | None:
    """The bytes of an uploaded MIDI file, refused by its size before it is read."""
    if upload is None:
        return None
    limit = settings.PRIMER_MAX_BYTES
    if upload.size is None or upload.size > limit:
        raise RequestInvalid.of("primer", f"The MIDI file is larger than {limit / (1024 * 1024):g} MB.")
    return upload.read(limit + 1)


# What a version's params hold besides the request's controls: the bars a regenerated passage
# writes again, and whether its MIDI file is a melody to harmonise rather than to continue.
VERSION_EXTRAS = ("bars", "harmonise")


def request_controls(params: Mapping[str, Any]) -> dict[str, Any]:
    """A version's params without VERSION_EXTRAS: the request's controls only."""
    return {name: value for name, value in params.items() if name not in VERSION_EXTRAS}


def melody_check(melody: NoteSequence, *, field: str) -> None:
    """RequestInvalid on `field` unless `melody` can be harmonised: notes, a line rather than only
    chords, at most ml.generation.harmonise.MAX_MELODY_BARS bars."""
    from ml.generation.harmonise import MelodyError, melody_line, melody_notes, melody_plan

    try:
        line = melody_line(melody)
        bar_beats = line.time_signature[0] * 4.0 / line.time_signature[1]
        notes, _ = melody_notes(line, bar_beats)
        melody_plan(notes, bar_beats)
    except MelodyError as exc:
        raise RequestInvalid.of(field, str(exc)) from exc


def validated_request(params: Mapping[str, Any], *, primer_midi: bytes | None = None) -> GenerationRequest:
    """The one check of a request to compose, for every front end.

    Raises:
        RequestInvalid: with every bad field named (the primer's problems under "primer").
        ComposingUnavailable: there is no model to ask.
    """
    from ml.data.notes import MidiError
    from ml.generation.request import GenerationRequest, RequestError

    errors: dict[str, list[str]] = {}
    primer = None
    if primer_midi is not None:
        try:
            primer = primer_from_midi(primer_midi)
        except MidiError as exc:
            errors["primer"] = [str(exc)]
    try:
        request = GenerationRequest.from_dict(params, primer=primer)
    except RequestError as exc:
        raise RequestInvalid({**errors, **exc.errors}) from exc
    if errors:
        raise RequestInvalid(errors)
    styles = model_styles()
    problems = rendering_problems()
    if problems:
        raise ComposingUnavailable(problems[0])
    if request.style not in styles:
        raise RequestInvalid.of("style", f"Unknown style {request.style!r}; choose one of: {', '.join(styles)}.")
    try:
        generator = get_generator()
    except ComposingUnavailable:
        return request  # the active row names the styles, but the file lives on the workers
    try:
        generator.validate(request)  # what only the model knows: a length it cannot reach
    except ValueError as exc:
        field = "primer" if "MIDI file" in str(exc) else ("seconds" if request.seconds is not None else None)
        raise RequestInvalid({field or NON_FIELD_ERRORS: [str(exc)]}) from exc
    return request
