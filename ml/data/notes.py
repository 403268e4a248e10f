"""Note sequences: the one note format every source is converted to, and MIDI in and out.

A piece is a list of notes sorted by onset, then pitch. Each note has a pitch, a step (seconds
since the previous onset, 0 inside a chord), a duration in seconds and a velocity. The tempo map
and time signatures travel with the notes so that seconds can be turned back into beats.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pretty_midi

PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_KEY_SPELLINGS = {
    "C": 0, "B#": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "FB": 4, "E#": 5, "F": 5,
    "F#": 6, "GB": 6, "G": 7, "G#": 8, "AB": 8, "A": 9, "A#": 10, "BB": 10, "B": 11, "CB": 11,
}
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    # Harmonic and melodic minor both raise the 7th (and the melodic the 6th); allowing both
    # raised degrees keeps leading tones, which minor-key music in the corpus is full of.
    "minor": (0, 2, 3, 5, 7, 8, 9, 10, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
MODES = tuple(SCALES)

# Krumhansl-Kessler key profiles (Krumhansl 1990), the standard template for key finding.
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

MAX_MIDI_BYTES = 4 * 1024 * 1024


class MidiError(ValueError):
    """A MIDI file that cannot be read or holds no usable notes."""


@dataclass
class NoteSequence:
    """Notes of one piece, sorted by (onset, pitch).

    Attributes:
        pitch: MIDI pitches, int16.
        step: Seconds since the previous onset (the first note's value is its onset), float32.
        duration: Seconds, float32.
        velocity: MIDI velocities 1..127, int16.
        tempo_bpm: The primary tempo in quarter notes per minute.
        time_signature: The primary time signature.
        program: General MIDI program used when written out.
        tempo_changes: (time in seconds, bpm) pairs, the first at 0.
        time_signatures: (time in seconds, numerator, denominator) triples.
        bar_phase: Where time 0 falls in its bar, in quarter-note beats (0: the piece starts on a
            downbeat; 3 in 4/4: it opens with a one-beat pickup).
        phrase_ends: Onsets (seconds) of the notes that close a phrase (a fermata in a chorale).
    """

    pitch: np.ndarray
    step: np.ndarray
    duration: np.ndarray
    velocity: np.ndarray
    tempo_bpm: float = 120.0
    time_signature: tuple[int, int] = (4, 4)
    program: int = 0
    tempo_changes: list[tuple[float, float]] = field(default_factory=list)
    time_signatures: list[tuple[float, int, int]] = field(default_factory=list)
    bar_phase: float = 0.0
    phrase_ends: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pitch = np.asarray(self.pitch, dtype=np.int16)
        self.step = np.asarray(self.step, dtype=np.float32)
        self.duration = np.asarray(self.duration, dtype=np.float32)
        self.velocity = np.asarray(self.velocity, dtype=np.int16)
        n = len(self.pitch)
        if not (len(self.step) == len(self.duration) == len(self.velocity) == n):
            raise ValueError("pitch, step, duration and velocity must have the same length")
        if not self.tempo_changes:
            self.tempo_changes = [(0.0, float(self.tempo_bpm))]
        if not self.time_signatures:
            self.time_signatures = [(0.0, *self.time_signature)]

    def __len__(self) -> int:
        return len(self.pitch)

    @property
    def start(self) -> np.ndarray:
        """Onset of every note in seconds."""
        return np.cumsum(self.step, dtype=np.float64)

    @property
    def end_time(self) -> float:
        if not len(self):
            return 0.0
        return float(np.max(self.start + self.duration))

    @classmethod
    def from_notes(cls, start: np.ndarray, pitch: np.ndarray, duration: np.ndarray,
                   velocity: np.ndarray, **meta: object) -> NoteSequence:
        """Build a sequence from absolute onsets, sorting by (onset, pitch)."""
        start = np.asarray(start, dtype=np.float64)
        pitch = np.asarray(pitch)
        order = np.lexsort((pitch, start))
        start = start[order]
        step = np.diff(start, prepend=0.0)
        # Onsets that differ by float noise belong to one chord: a step of 0 is the convention.
        step[np.abs(step) < 1e-4] = 0.0
        return cls(pitch=pitch[order], step=step, duration=np.asarray(duration)[order],
                   velocity=np.asarray(velocity)[order], **meta)  # type: ignore[arg-type]

    def slice(self, begin: int, end: int) -> NoteSequence:
        """Notes begin..end-1, re-timed so that the first onset keeps its absolute time."""
        start = self.start[begin:end]
        return NoteSequence.from_notes(start, self.pitch[begin:end], self.duration[begin:end],
                                       self.velocity[begin:end], **self.meta())

    def meta(self) -> dict[str, object]:
        return {
            "tempo_bpm": self.tempo_bpm, "time_signature": self.time_signature, "program": self.program,
            "tempo_changes": list(self.tempo_changes), "time_signatures": list(self.time_signatures),
            "bar_phase": self.bar_phase, "phrase_ends": list(self.phrase_ends),
        }

    def seconds_to_beats(self, seconds: np.ndarray) -> np.ndarray:
        """Convert absolute times in seconds to quarter-note beats through the tempo map."""
        seconds = np.asarray(seconds, dtype=np.float64)
        times = np.array([t for t, _ in self.tempo_changes], dtype=np.float64)
        bpms = np.array([b for _, b in self.tempo_changes], dtype=np.float64)
        beats_at = np.concatenate([[0.0], np.cumsum(np.diff(times) * bpms[:-1] / 60.0)])
        idx = np.clip(np.searchsorted(times, seconds, side="right") - 1, 0, len(times) - 1)
        return beats_at[idx] + (seconds - times[idx]) * bpms[idx] / 60.0

    def bar_positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(beats since the bar's downbeat, bar index, bar length in beats) at every note's onset.

        Bars follow the time signatures; the first bar starts `bar_phase` beats before time 0 and
        each later signature starts a new bar.
        """
        onset = np.round(self.seconds_to_beats(self.start) * 48) / 48  # float noise off the grid
        position = np.zeros(len(self), np.float64)
        bar = np.zeros(len(self), np.int64)
        length = np.zeros(len(self), np.float64)
        starts = [(float(self.seconds_to_beats(np.array([t]))[0]), n * 4.0 / d) for t, n, d in self.time_signatures]
        starts = [(round(b * 48) / 48, max(bar_len, 0.25)) for b, bar_len in starts] or [(0.0, 4.0)]
        starts[0] = (0.0, starts[0][1])
        bars_before = 0
        for k, (begin, bar_len) in enumerate(starts):
            end = starts[k + 1][0] if k + 1 < len(starts) else np.inf
            inside = (onset >= begin) & (onset < end)
            phase = self.bar_phase if k == 0 else 0.0
            since = onset[inside] - begin + phase
            index = np.floor(since / bar_len + 1e-9)
            position[inside] = since - index * bar_len
            bar[inside] = bars_before + index.astype(np.int64)
            length[inside] = bar_len
            if np.isfinite(end):
                bars_before += int(np.ceil((end - begin + phase) / bar_len - 1e-9))
        return position, bar, length

    def to_beats(self) -> tuple[np.ndarray, np.ndarray]:
        """Step and duration in quarter-note beats, following tempo changes."""
        start = self.start
        onset_beats = self.seconds_to_beats(start)
        end_beats = self.seconds_to_beats(start + self.duration)
        step_beats = np.diff(onset_beats, prepend=0.0)
        step_beats[self.step == 0] = 0.0
        return step_beats.astype(np.float32), (end_beats - onset_beats).astype(np.float32)


def notes_from_midi(source: str | Path | bytes | pretty_midi.PrettyMIDI) -> NoteSequence:
    """Read every pitched (non-drum) note of a MIDI file into one sequence.

    Raises:
        MidiError: the file is not MIDI, is corrupt, or holds no pitched notes.
    """
    pm = source if isinstance(source, pretty_midi.PrettyMIDI) else _read_midi(source)
    instruments = [inst for inst in pm.instruments if not inst.is_drum and inst.notes]
    if not instruments:
        if any(inst.is_drum and inst.notes for inst in pm.instruments):
            raise MidiError("The MIDI file holds only drums.")
        raise MidiError("The MIDI file holds no notes.")
    notes = [n for inst in instruments for n in inst.notes if n.end > n.start]
    if not notes:
        raise MidiError("The MIDI file holds no notes.")
    tempo_times, tempi = pm.get_tempo_changes()
    tempo_changes = [(float(t), float(b)) for t, b in zip(tempo_times, tempi)] or [(0.0, 120.0)]
    signatures = [(float(ts.time), int(ts.numerator), int(ts.denominator))
                  for ts in pm.time_signature_changes] or [(0.0, 4, 4)]
    program = max(instruments, key=lambda inst: len(inst.notes)).program
    return NoteSequence.from_notes(
        start=np.array([n.start for n in notes]),
        pitch=np.array([n.pitch for n in notes]),
        duration=np.array([n.end - n.start for n in notes]),
        velocity=np.array([max(1, n.velocity) for n in notes]),
        tempo_bpm=tempo_changes[0][1], time_signature=signatures[0][1:], program=program,
        tempo_changes=tempo_changes, time_signatures=signatures,
    )


def _read_midi(source: str | Path | bytes) -> pretty_midi.PrettyMIDI:
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(data) > MAX_MIDI_BYTES:
        raise MidiError(f"The MIDI file is larger than {MAX_MIDI_BYTES // (1024 * 1024)} MB.")
    if not data.startswith(b"MThd"):
        raise MidiError("This is not a MIDI file.")
    try:
        return pretty_midi.PrettyMIDI(io.BytesIO(data))
    except MemoryError as exc:  # under ml.data.midi_check's sandbox limit
        raise MidiError("The MIDI file needs more memory to read than is allowed.") from exc
    except Exception as exc:  # mido and pretty_midi raise many types on corrupt data
        raise MidiError(f"The MIDI file is corrupt ({type(exc).__name__}).") from exc


def notes_to_midi(seq: NoteSequence, *others: NoteSequence) -> pretty_midi.PrettyMIDI:
    """Write the notes to one instrument (and each of `others` to one more, on its own program),
    with the first sequence's tempo and time-signature meta events."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=float(seq.tempo_bpm))
    for time, numerator, denominator in seq.time_signatures:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(numerator, denominator, time))
    for part in (seq, *others):
        inst = pretty_midi.Instrument(program=int(part.program))
        for onset, pitch, duration, velocity in zip(part.start, part.pitch, part.duration, part.velocity):
            inst.notes.append(pretty_midi.Note(velocity=int(velocity), pitch=int(pitch),
                                               start=float(onset), end=float(onset + duration)))
        pm.instruments.append(inst)
    return pm


def merge(parts: list[NoteSequence]) -> NoteSequence:
    """The notes of several parts as one sequence (the first part's tempo, metre and program)."""
    if len(parts) == 1:
        return parts[0]
    return NoteSequence.from_notes(
        start=np.concatenate([p.start for p in parts]), pitch=np.concatenate([p.pitch for p in parts]),
        duration=np.concatenate([p.duration for p in parts]), velocity=np.concatenate([p.velocity for p in parts]),
        tempo_bpm=parts[0].tempo_bpm, time_signature=parts[0].time_signature, program=parts[0].program)


def write_midi(seq: NoteSequence, path: Path, *others: NoteSequence) -> None:
    notes_to_midi(seq, *others).write(str(path))


def parse_key(name: str) -> int:
    """Pitch class of a key name such as "C", "F#" or "Bb"."""
    key = name.strip().upper()
    if len(key) == 2 and key[1] == "B":
        key = key[0] + "B"
    if key not in _KEY_SPELLINGS:
        raise ValueError(f"Unknown key {name!r}: use C, C#, Db, D, ... B.")
    return _KEY_SPELLINGS[key]


def scale_pitch_classes(tonic: int, mode: str) -> frozenset[int]:
    if mode not in SCALES:
        raise ValueError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
    return frozenset((tonic + i) % 12 for i in SCALES[mode])


def pitch_class_histogram(pitch: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(np.asarray(pitch) % 12, weights=weights, minlength=12).astype(np.float64)


# How a piece closes, in the bass: on the tonic approached from the dominant (an authentic cadence; in
# a single line, from a tone of the dominant chord: the second, fifth or leading note), on the tonic
# approached otherwise (a plagal close, a line falling 3-1), or elsewhere (a half close on V, a modal
# final the key estimate does not call the tonic).
CLOSES = ("perfect", "tonic", "open")


def close_kind(seq: NoteSequence, tonic: int) -> str | None:
    """Which of `CLOSES` a piece makes: the lowest note sounding at its final onset against `tonic` (a
    pitch class), and the lowest sounding at the onset before, its approach (what the cadence
    constraint writes there: V in the bass; in a single line a tone of V). A tonic repeated or held
    into the final onset is a close on the tonic, not a perfect one. None for a piece with no notes."""
    bass = closing_bass(seq)
    if not bass:
        return None
    if bass[-1] % 12 != tonic % 12:
        return "open"
    if len(bass) < 2:
        return "tonic"
    onsets = np.unique(np.round(seq.start.astype(np.float64), 4))
    dominant = {7} if len(seq) >= 1.5 * len(onsets) else {2, 7, 11}
    return "perfect" if (bass[-2] - tonic) % 12 in dominant else "tonic"


def closing_bass(seq: NoteSequence) -> list[int]:
    """The lowest note sounding at each of the piece's last two onsets (a held bass is still the bass;
    one where the piece has a single onset, none where it has no notes)."""
    if not len(seq):
        return []
    start = np.round(seq.start.astype(np.float64), 4)
    end = start + seq.duration.astype(np.float64)
    onsets = np.unique(start)
    return [int(seq.pitch[((start <= at) & (end > at + 1e-4)) | (start == at)].min()) for at in onsets[-2:]]


# How much worse a key's profile may fit a whole piece than the best fit and still be read as its key,
# when the piece closes on that key's tonic (`piece_key`): the Krumhansl-Schmuckler estimate reads a
# piece in its dominant where the music dwells there (a major-key movement that modulates, a chorale
# whose lines cadence on V); the bass of its last chord says which. 0.1 of correlation takes in those
# readings (the estimate's misses of the corpus's chorales, folk songs and quartets are 0.05-0.08 worse
# than the best fit at the median, 0.15-0.19 at the 90th percentile), while a piece that fits its final's
# key much worse keeps the estimate (a half close, a tune ending on its fifth).
FINAL_MARGIN = 0.1


def piece_key(seq: NoteSequence) -> tuple[int, str]:
    """The key of a whole piece, as a musician names it: the key whose tonic its bass closes on, where
    that key fits the piece's notes within `FINAL_MARGIN` of the best fit; else the best fit
    (`estimate_key`). For pieces read whole (the training pieces' labels, a melody to harmonise), not
    for a fragment (a primer stops anywhere), and not for measuring how pieces close: a measure of the
    close cannot take the key from the close."""
    fits = key_fits(pitch_class_histogram(seq.pitch, seq.duration + 1e-3))
    mode, tonic = (int(i) for i in np.unravel_index(int(np.argmax(fits)), fits.shape))
    bass = closing_bass(seq)
    if bass:
        final = bass[-1] % 12
        final_mode = int(np.argmax(fits[:, final]))
        if fits[final_mode, final] >= fits[mode, tonic] - FINAL_MARGIN:
            mode, tonic = final_mode, final
    return tonic, _PROFILE_MODES[mode]


def estimate_key(seq: NoteSequence) -> tuple[int, str]:
    """Krumhansl-Schmuckler key estimate from the duration-weighted pitch-class histogram."""
    return estimate_key_from_histogram(pitch_class_histogram(seq.pitch, seq.duration + 1e-3))


def estimate_key_from_histogram(histogram: np.ndarray) -> tuple[int, str]:
    fits = key_fits(histogram)
    mode, tonic = np.unravel_index(int(np.argmax(fits)), fits.shape)
    return int(tonic), _PROFILE_MODES[int(mode)]


_PROFILE_MODES = ("major", "minor")


def key_fits(histogram: np.ndarray) -> np.ndarray:
    """How well each key's Krumhansl-Kessler profile fits a pitch-class histogram: the correlation,
    [mode (major, minor), tonic]; 0 for an empty histogram, -2 where a correlation is undefined."""
    fits = np.zeros((2, 12))
    if not histogram.any():
        return fits
    for m, profile in enumerate((_MAJOR_PROFILE, _MINOR_PROFILE)):
        for tonic in range(12):
            fits[m, tonic] = np.corrcoef(histogram, np.roll(profile, tonic))[0, 1]
    return np.nan_to_num(fits, nan=-2.0)


_LETTERS = "CDEFGAB"
_NATURAL = (0, 2, 4, 5, 7, 9, 11)
# The scale degree (0 = the tonic's letter) each pitch class above the tonic is written on, in major
# and minor alike: the flat second (Neapolitan), the flat and natural third, the sharp fourth, the flat
# and natural sixth and seventh (the raised sixth and the leading note in minor).
_DEGREE_OF = (0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6)
# The tonic's spelling with the fewer accidentals in its key signature (Db major, C# minor).
_MAJOR_TONICS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
_MODE_SHIFT = {"dorian": 2, "mixolydian": 7}  # semitones from the major key whose notes a mode uses


def _spelled(letter: int, pitch_class: int) -> str:
    alter = (pitch_class - _NATURAL[letter % 7] + 6) % 12 - 6
    return _LETTERS[letter % 7] + ("#" * alter if alter > 0 else "b" * -alter)


def major_or_minor(mode: str) -> str:
    """The major or minor mode a mode is read as where only those two are known (the keys the
    training pieces were estimated in, the model's mode input): dorian as minor, mixolydian as major."""
    return "minor" if mode in ("minor", "dorian") else "major"


def tonic_name(tonic: int, mode: str) -> str:
    """The tonic as its key signature writes it: Db major, C# minor, and a mode as its parent major's
    degree (D dorian, G mixolydian, C# dorian with B major's signature)."""
    tonic %= 12
    if mode in _MODE_SHIFT:
        parent = (tonic - _MODE_SHIFT[mode]) % 12
        parent_name = _MAJOR_TONICS[parent]
        return _spelled(_LETTERS.index(parent_name[0]) + _DEGREE_OF[_MODE_SHIFT[mode]], tonic)
    return (_MINOR_TONICS if mode == "minor" else _MAJOR_TONICS)[tonic]


def key_name(tonic: int, mode: str) -> str:
    """ "Db major", "C# minor", "D dorian"."""
    return f"{tonic_name(tonic, mode)} {mode}"


_FIFTHS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F#": 6, "F": -1, "Bb": -2, "Eb": -3, "Ab": -4, "Db": -5}
_PARENT_SHIFT = {"major": 0, "minor": 3, "dorian": -2, "mixolydian": -7}  # to the major key of the same signature


def _signature_side(tonic: int, mode: str) -> int:
    """+1 for a key signature of sharps, -1 of flats, 0 for none."""
    name = tonic_name(tonic, mode)
    if len(name) > 1:
        return 1 if name.endswith("#") else -1
    fifths = _FIFTHS[_MAJOR_TONICS[(tonic + _PARENT_SHIFT.get(mode, 0)) % 12]]
    return (fifths > 0) - (fifths < 0)


def spell_pitch_class(pitch_class: int, tonic: int, mode: str) -> str:
    """A pitch class as a musician writes it in a key: a note of the scale on its own letter (B minor's
    A# leading note, F major's Bb); a note outside it with no accidental where it has none (E, not Fb, in
    Ab major), else sharp in a sharp key and flat in a flat one (Bb, not A#, in F; in C major the flat
    sixth and seventh, the sharp fourth); never a double sharp or flat."""
    name = tonic_name(tonic, mode)
    relative = (pitch_class - tonic) % 12
    if relative in SCALES.get(mode, SCALES["major"]):
        spelled = _spelled(_LETTERS.index(name[0]) + _DEGREE_OF[relative], pitch_class % 12)
        if len(spelled) <= 2:
            return spelled
    pitch_class %= 12
    if pitch_class in _NATURAL:
        return _LETTERS[_NATURAL.index(pitch_class)]
    side = _signature_side(tonic, mode)
    if side > 0:
        return _LETTERS[_NATURAL.index(pitch_class - 1)] + "#"
    if side < 0:
        return _LETTERS[_NATURAL.index(pitch_class + 1)] + "b"
    return _spelled(_LETTERS.index(name[0]) + _DEGREE_OF[relative], pitch_class)


def chord_labels(seq: NoteSequence, key: tuple[int, str] | None = None) -> list[str | None]:
    """Name the chord sounding at each note's onset (None where fewer than three pitch classes sound).

    Every note that is still held at an onset counts, so suspensions and held basses are part of
    the chord, as a listener hears it. With a key, the chord's notes are spelled in it (Bb major, not
    A# major, in F); without, as music21 spells pitch classes.
    """
    start = seq.start
    end = start + seq.duration
    labels: list[str | None] = [None] * len(seq)
    onsets, first = np.unique(np.round(start, 6), return_index=True)
    bounds = list(first) + [len(seq)]
    for k, onset in enumerate(onsets):
        sounding = (start <= onset + 1e-6) & (end > onset + 1e-6)
        pitches = seq.pitch[sounding]
        if len(pitches):
            label = chord_name(tuple(sorted({int(p) % 12 for p in pitches})), int(pitches.min()) % 12, key)
            labels[bounds[k]:bounds[k + 1]] = [label] * (bounds[k + 1] - bounds[k])
    return labels


@lru_cache(maxsize=8192)
def chord_name(pitch_classes: tuple[int, ...], bass: int, key: tuple[int, str] | None = None) -> str | None:
    """music21's name for a pitch-class set, e.g. "D minor triad", its notes spelled in `key` where one
    is given; cached, since sets repeat."""
    if len(pitch_classes) < 3:
        return None
    from music21 import chord  # music21 is heavy to import; only harmony analysis needs it

    if key is None:
        c = chord.Chord([60 + pc for pc in pitch_classes])
    else:
        c = chord.Chord([spell_pitch_class(pc, *key).replace("b", "-") + "4" for pc in pitch_classes])
    root = c.root().name.replace("-", "b")
    return f"{root} {c.commonName}"
