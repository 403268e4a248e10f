"""From a request to finished pieces: the notes, the MIDI file and the audio, with no Django.

The site's worker, the `compose` command and `verify_media`'s repair all go through here:

    pieces = compose(generator, request, progress=..., stage=...)
    rendered = render_piece(renderer, arrangement_of(piece, request), midi_path=..., audio_path=...,
                            loudness=-14.0)

Failures that a user should hear about raise `PipelineError` with a reason in plain words (and
the technical detail for the logs); anything else is a bug and propagates as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.data.notes import NoteSequence, chord_labels

if TYPE_CHECKING:
    from ml.audio.arrangement import Arrangement
    from ml.audio.loudness import Loudness
    from ml.audio.render import Renderer
    from ml.generation.generator import Generator
    from ml.generation.piece import GeneratedPiece
    from ml.generation.request import GenerationRequest

AUDIO_FORMATS = (".mp3", ".wav")


class PipelineError(Exception):
    """A piece cannot be finished; `reason` is meant for the user, `detail` for the logs."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class Stopped(Exception):
    """Raised by a caller's progress or stage callback to stop the run; it reaches the caller as raised."""


@contextmanager
def failure_reason(reason: str) -> Iterator[None]:
    """Turn any exception inside the block into PipelineError(reason), keeping the detail.

    A callback's Stopped is the caller's own decision, not a failure: it passes through.
    """
    try:
        yield
    except (PipelineError, Stopped):
        raise
    except Exception as exc:
        raise PipelineError(reason, f"{type(exc).__name__}: {exc}") from exc


def compose(
    generator: Generator,
    request: GenerationRequest,
    progress: Callable[[float], None] | None = None,
    stage: Callable[[str], None] | None = None,
) -> list[GeneratedPiece]:
    """Generate every variation of `request` in one batch.

    `progress` gets fractions 0..1; `stage` gets "Loading the model", then "Generating", because
    the first load in a process takes seconds while the progress still reads 0.
    """
    if stage is not None:
        stage("Loading the model")
    with failure_reason("The model file is broken"):
        generator.load()
    if stage is not None:
        stage("Generating")
    try:
        generator.validate(request)
    except ValueError as exc:
        raise PipelineError(f"The request is not valid: {exc}") from exc
    with failure_reason("The model could not write this piece"):
        return generator.generate(request, progress=progress)


def harmonise(generator: Generator, melody: NoteSequence, request: GenerationRequest,
              progress: Callable[[float], None] | None = None) -> list[GeneratedPiece]:
    """Voices under a melody; PipelineError says what failed (a melody that cannot be harmonised
    says why, as a request error)."""
    from ml.generation.harmonise import MelodyError

    with failure_reason("The model file is broken"):
        generator.load()
    try:
        return generator.harmonise(melody, request, progress=progress)
    except MelodyError as exc:
        raise PipelineError(f"The request is not valid: {exc}") from exc


def regenerate(generator: Generator, notes: NoteSequence, request: GenerationRequest, *, form: dict[str, Any],
               key: tuple[int, str], first_bar: int, last_bar: int,
               progress: Callable[[float], None] | None = None) -> GeneratedPiece:
    """Write bars first..last of a finished piece again (its notes, the form it was stored with and
    the key it was written in); every other note is kept. PipelineError says what failed."""
    from ml.generation.form import plan_from_dict
    from ml.generation.infill import Passage, PassageError

    with failure_reason("The model file is broken"):
        generator.load()
    try:
        plan = plan_from_dict(form)
        passage = Passage(notes=notes, plan=plan, plan_start=float(form.get("phrases", [{}])[0].get("start_s", 0.0)),
                          key=key, first_bar=first_bar, last_bar=last_bar)
        generator.validate(request)
    except (PassageError, KeyError, TypeError, ValueError) as exc:
        raise PipelineError(f"The passage cannot be regenerated: {exc}") from exc
    with failure_reason("The model could not write this passage"):
        return generator.regenerate(passage, request, progress=progress)


def piece_report(generator: Generator, piece: GeneratedPiece, request: GenerationRequest, *,
                 kept: tuple[str, bool] | None = None, melody_kept: tuple[int, int] | None = None
                 ) -> list[dict[str, Any]]:
    """What was asked and what `piece` did, one check per control (ml.evaluation.fulfilment)."""
    from ml.evaluation.fulfilment import fulfilment

    spans = None
    if piece.plan is not None and request.chords:
        spb = 60.0 / float(piece.notes.tempo_bpm)
        spans = [(piece.plan_start + s.start * spb, piece.plan_start + s.end * spb, s.chord.tones, s.chord.root)
                 for s in generator.chord_spans(request, piece.plan) or []]
    form = piece.form()
    checks = fulfilment(parts=piece.parts, settings=request.to_dict(), form=form, chord_spans=spans,
                        requested_seconds=request.seconds if request.primer is None else None, kept=kept,
                        melody_kept=melody_kept, tonic=piece.key[0], mode=piece.key[1])
    return [check.to_dict() for check in checks]


@dataclass(frozen=True)
class Rendered:
    seconds: float  # the audio's length
    loudness: Loudness | None  # measured on the encoded MP3 (None for a WAV)


def arrangement_of(piece: GeneratedPiece, request: GenerationRequest) -> Arrangement:
    """The piece's voices on the instruments the request asks for (or the style's own)."""
    from ml.audio.arrangement import arrange

    return arrange(piece.notes, style=request.style, key=piece.key, accompaniment=piece.accompaniment,
                   instrument=request.instrument, instruments=request.programs)


def _checked(blocks: Iterable[np.ndarray], check: Callable[[], None] | None) -> Iterator[np.ndarray]:
    for block in blocks:
        if check is not None:
            check()
        yield block


def render_piece(renderer: Renderer, arrangement: Arrangement, *, midi_path: Path, audio_path: Path,
                 loudness: float | None = None, ceiling: float = -1.0, measure: bool = True,
                 check: Callable[[], None] | None = None) -> Rendered:
    """Write the arrangement as MIDI and as audio (MP3, or WAV for a .wav path), the audio brought to
    `loudness` LUFS under a true peak of `ceiling` dBTP (as rendered, for None); with `measure`, the
    MP3's loudness as ffmpeg measures it (else that is left to the caller, off the listener's wait).
    `check` is called between blocks of audio synthesised and encoded; the Stopped it raises stops
    the rendering and reaches the caller."""
    from ml.audio import loudness as meter
    from ml.audio.render import encode_mp3_stream

    suffix = audio_path.suffix.lower()
    if suffix not in AUDIO_FORMATS:
        raise ValueError(f"Audio files are written as {' or '.join(AUDIO_FORMATS)}, not {suffix or 'no suffix'}.")
    with failure_reason("The MIDI file could not be written"):
        midi = arrangement.to_midi()
        midi.write(str(midi_path))
    with failure_reason("Audio rendering failed"):
        pcm = renderer.render(midi, check=check)
        seconds = len(pcm) / renderer.sample_rate
        audio = pcm.astype(np.float32) / 32768.0
    rate = renderer.sample_rate
    if suffix == ".wav":
        with failure_reason("Audio rendering failed"):
            if loudness is not None:
                audio = meter.normalise(audio, rate, target=loudness, ceiling=ceiling)
            meter.write_wav(audio_path, audio, rate)
        return Rendered(seconds=float(seconds), loudness=None)
    with failure_reason("MP3 encoding failed"):
        # One gain to the target for the whole piece, then limited and encoded a block at a time:
        # ffmpeg encodes each block on the other core while the next is limited.
        if loudness is None:
            blocks: Iterable[np.ndarray] = [pcm]
        else:
            gain = meter.gain_for(audio, rate, loudness)
            blocks = meter.limited_blocks(audio, rate, gain_db=gain, ceiling=ceiling)
        encode_mp3_stream(_checked(blocks, check), audio_path, sample_rate=rate)
    if not measure:
        return Rendered(seconds=float(seconds), loudness=None)
    try:
        measured = meter.measure(audio_path)
    except meter.LoudnessError:  # the piece plays all the same; only its figure is missing
        measured = None
    return Rendered(seconds=float(seconds), loudness=measured)


def piano_roll(notes: NoteSequence, voices: Sequence[int] = ()) -> list[list[float]]:
    """Notes as [pitch, start_s, duration_s, velocity] rows, as the piano roll draws them, with each note's
    voice (0: the top voice) as a fifth value where `voices` gives them."""
    rows = [
        [int(pitch), round(float(start), 3), round(float(duration), 3), int(velocity)]
        for pitch, start, duration, velocity in zip(notes.pitch, notes.start, notes.duration, notes.velocity)
    ]
    if len(voices) == len(rows) and any(voices):  # a single line needs no voices
        for row, voice in zip(rows, voices):
            row.append(int(voice))
    return rows


def notes_from_piano_roll(rows: list[list[float]], *, tempo_bpm: float, time_signature: tuple[int, int],
                          program: int) -> NoteSequence:
    """The notes of `piano_roll` rows again, to render a piece anew (a row's voice is not needed: the
    voices are found again)."""
    table = np.asarray([row[:4] for row in rows], dtype=np.float64).reshape(-1, 4)
    return NoteSequence.from_notes(
        start=table[:, 1], pitch=table[:, 0].astype(np.int16), duration=table[:, 2],
        velocity=table[:, 3].astype(np.int16), tempo_bpm=tempo_bpm, time_signature=time_signature,
        program=program,
    )


def piece_form(piece: GeneratedPiece) -> dict[str, Any]:
    """The form a piece was written to, with phrase times in seconds and the key it was written in."""
    from ml.data.notes import key_name

    form = piece.form() or {}
    numerator, denominator = piece.notes.time_signature
    return {**form, "key": key_name(*piece.key), "time_signature": f"{numerator}/{denominator}",
            "tempo_bpm": round(float(piece.notes.tempo_bpm), 2)}


def chord_changes(notes: NoteSequence, key: tuple[int, str] | None = None) -> list[list[float | str | None]]:
    """[start_s, label] wherever the sounding chord changes, spelled in `key` where one is given; label
    None where no chord sounds."""
    changes: list[list[float | str | None]] = []
    current: str | None = None
    for start, label in zip(notes.start, chord_labels(notes, key)):
        if label != current:
            changes.append([round(float(start), 3), label])
            current = label
    return changes
