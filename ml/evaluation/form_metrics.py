"""What a listener hears of form: key, metre, repetition, endings and voice leading, per piece.

Histogram features (ml.evaluation.mgeval) can match while a piece wanders. These measures look at the
piece in time, in the units musicians use (beats, bars, keys). Each is defined in one sentence
in `DEFINITIONS`, which the evaluation report prints, and each is meant to be read beside real
held-out pieces of the same style cropped to the same length.

Only numpy: no Django, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ml.data.notes import NoteSequence, estimate_key_from_histogram, pitch_class_histogram

KEY_WINDOW_BEATS = 8.0
MOTIF_LENGTH = 4  # notes in a top-line motif: 3 intervals and 4 durations
GRID_TOLERANCE_BEATS = 1 / 48
# The sixteenth and the eighth-note triplet grids, in quarter-note beats.
GRIDS = (1 / 4, 1 / 3)

DEFINITIONS = {
    "key_stability": "Share of 8-beat windows whose Krumhansl-Schmuckler key is the piece's key or a fifth "
                     "away from it (relative major/minor counts as the same key).",
    "requested_key": "Share of pieces whose whole-piece key estimate is the key and mode that was asked for.",
    "tonic_ending": "Share of pieces whose bass (the lowest sounding note) at the last onset is the tonic of "
                    "the piece's key.",
    "cadence": "Share of pieces that close V-I: where the final onset is a chord, its bass is the tonic and "
               "the bass at the onset before it the dominant; in a single line, the last note is the tonic and "
               "the one before it a tone of the dominant chord (scale degrees 5, 7 or 2).",
    "downbeat_alignment": "Share of bars with a note starting on their first beat, the bar lines where the "
                          "score puts them (its pickup included; a generated piece starts on a bar line).",
    "downbeat_accent": "Share of bars whose heaviest onset (notes starting there, weighted by duration) is on "
                       "their first beat, the bar lines as for downbeat alignment.",
    "off_grid_onsets": "Share of onsets on neither the sixteenth nor the eighth-triplet grid.",
    "motif_recurrence": "Share of 4-note top-line motifs (intervals and durations) that come back later "
                        "in the piece, not overlapping themselves.",
    "parallels_per_100": "Parallel fifths and octaves between any two of four voices, per 100 changes between "
                         "consecutive four-note chords.",
}


@dataclass
class FormScores:
    """The measures of one piece (None where a measure does not apply, e.g. no four-voice chords)."""

    key_stability: float | None
    key: tuple[int, str]
    tonic_ending: bool
    cadence: bool
    downbeat_alignment: float | None
    downbeat_accent: float | None
    off_grid_onsets: float
    motif_recurrence: float | None
    parallels_per_100: float | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _fifths_apart(a: tuple[int, str], b: tuple[int, str]) -> int:
    """Steps around the circle of fifths between two keys, a minor key taken as its relative major."""
    def major_of(key: tuple[int, str]) -> int:
        tonic, mode = key
        return (tonic + 3) % 12 if mode == "minor" else tonic

    distance = ((major_of(a) - major_of(b)) * 7) % 12  # pitch-class difference -> fifths
    return min(distance, 12 - distance)


def _onsets(seq: NoteSequence) -> tuple[np.ndarray, np.ndarray]:
    """Onset and duration of every note, in quarter-note beats."""
    start = seq.start
    onset_beats = seq.seconds_to_beats(start)
    end_beats = seq.seconds_to_beats(start + seq.duration)
    return onset_beats, end_beats - onset_beats


def key_stability(seq: NoteSequence, key: tuple[int, str]) -> float | None:
    onset, duration = _onsets(seq)
    if not len(onset):
        return None
    windows = np.arange(0.0, float(onset.max()) + 1e-9, KEY_WINDOW_BEATS)
    stable = total = 0
    for begin in windows:
        inside = (onset >= begin) & (onset < begin + KEY_WINDOW_BEATS)
        if inside.sum() < 4:  # too few notes to call a key
            continue
        window_key = estimate_key_from_histogram(pitch_class_histogram(seq.pitch[inside], duration[inside] + 1e-3))
        stable += _fifths_apart(window_key, key) <= 1
        total += 1
    return stable / total if total else None


def _bass_line(seq: NoteSequence) -> list[int]:
    """The lowest sounding pitch at each onset, in order (a held bass is still the bass)."""
    onset, duration = _onsets(seq)
    end = onset + duration
    bass: list[int] = []
    for at in np.unique(np.round(onset, 4)):
        sounding = seq.pitch[(np.round(onset, 4) <= at) & (end > at + 1e-4)]
        if not len(sounding):
            sounding = seq.pitch[np.round(onset, 4) == at]
        bass.append(int(sounding.min()))
    return bass


def ending(seq: NoteSequence, key: tuple[int, str]) -> tuple[bool, bool]:
    """(the last bass note is the tonic, the piece closes V-I)."""
    bass = _bass_line(seq)
    if not bass:
        return False, False
    tonic = key[0]
    tonic_end = bass[-1] % 12 == tonic
    if len(bass) < 2 or not tonic_end:
        return tonic_end, False
    onset, _ = _onsets(seq)
    last = np.round(onset, 4) == np.round(onset.max(), 4)
    if last.sum() >= 2:  # a final chord: V-I in the bass
        return True, bass[-2] % 12 == (tonic + 7) % 12
    return True, (bass[-2] - tonic) % 12 in (7, 11, 2)


def _bar_length(seq: NoteSequence) -> float:
    numerator, denominator = seq.time_signature
    return numerator * 4.0 / denominator


def _bar_onsets(seq: NoteSequence, bar_beats: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Onsets (beats from the first bar line, snapped to 1/48 beat), durations and the bar length.

    Onsets come back from seconds (float32) with noise: a note on beat 1 can read 3.99999 of the
    bar before, hence the snapping. `bar_beats` measures the piece in bars of another length
    (the metre checks), from time 0.
    """
    onset, duration = _onsets(seq)
    bar = bar_beats or _bar_length(seq)
    phase = 0.0 if bar_beats else float(seq.bar_phase)
    return np.round((np.asarray(onset, dtype=np.float64) + phase) * 48) / 48, duration, bar


def downbeat_alignment(seq: NoteSequence, bar_beats: float | None = None) -> float | None:
    """Bars with an onset on beat 1; `bar_beats` overrides the notated bar (metre checks)."""
    onset, _, bar = _bar_onsets(seq, bar_beats)
    if not len(onset) or bar <= 0:
        return None
    index = np.floor(onset / bar + 1e-9)
    bars = np.unique(index)
    on_one = np.unique(index[np.abs(onset - index * bar) < 1e-6])
    return len(on_one) / len(bars)


def downbeat_accent(seq: NoteSequence, bar_beats: float | None = None) -> float | None:
    """Bars whose heaviest onset is on beat 1 (bars with a single onset say nothing and are left out)."""
    onset, duration, bar = _bar_onsets(seq, bar_beats)
    if not len(onset) or bar <= 0:
        return None
    weights: dict[int, dict[float, float]] = {}
    for at, length in zip(onset, duration):
        index = int(np.floor(at / bar + 1e-9))
        position = round(float(at - index * bar), 3)
        bar_weights = weights.setdefault(index, {})
        bar_weights[position] = bar_weights.get(position, 0.0) + float(min(length, bar))
    full = [w for w in weights.values() if len(w) > 1]
    if not full:
        return None
    return sum(max(w, key=lambda p: (w[p], -p)) == 0.0 for w in full) / len(full)


def off_grid_onsets(seq: NoteSequence) -> float:
    onset, _ = _onsets(seq)
    if not len(onset):
        return 0.0
    on_grid = np.zeros(len(onset), dtype=bool)
    for grid in GRIDS:
        on_grid |= np.abs(onset / grid - np.round(onset / grid)) * grid < GRID_TOLERANCE_BEATS
    return float(1.0 - on_grid.mean())


def _top_line(seq: NoteSequence) -> tuple[np.ndarray, np.ndarray]:
    """The highest pitch at each onset and the time to the next onset (its length in the melody)."""
    onset, _ = _onsets(seq)
    rounded = np.round(onset, 4)
    times = np.unique(rounded)
    top = np.array([seq.pitch[rounded == t].max() for t in times])
    lengths = np.diff(times, append=times[-1] + 1.0) if len(times) else times
    return top, lengths


def motif_recurrence(seq: NoteSequence) -> float | None:
    top, lengths = _top_line(seq)
    n = len(top) - MOTIF_LENGTH + 1
    if n < 2:
        return None
    intervals = np.diff(top)
    quantised = np.round(lengths * 12).astype(int)  # durations on a 1/12-beat grid
    motifs = [(tuple(intervals[i:i + MOTIF_LENGTH - 1]), tuple(quantised[i:i + MOTIF_LENGTH]))
              for i in range(n)]
    later: dict[tuple[tuple[int, ...], tuple[int, ...]], list[int]] = {}
    for i, motif in enumerate(motifs):
        later.setdefault(motif, []).append(i)
    recurring = sum(any(j >= i + MOTIF_LENGTH for j in later[motif]) for i, motif in enumerate(motifs))
    return recurring / n


def parallels_per_100(seq: NoteSequence) -> float | None:
    """Parallel perfect fifths and octaves between voices of consecutive four-note chords."""
    onset, duration = _onsets(seq)
    end = onset + duration
    chords = []
    for at in np.unique(np.round(onset, 4)):
        sounding = np.sort(seq.pitch[(onset <= at + 1e-4) & (end > at + 1e-4)])
        chords.append(tuple(int(p) for p in sounding) if len(sounding) == 4 else None)
    changes = parallels = 0
    for before, after in zip(chords, chords[1:]):
        if before is None or after is None or before == after:
            continue
        changes += 1
        for low in range(4):
            for high in range(low + 1, 4):
                first, second = before[high] - before[low], after[high] - after[low]
                moved = after[low] != before[low] and after[high] != before[high]
                same_way = (after[low] - before[low]) * (after[high] - before[high]) > 0
                perfect = first % 12 in (0, 7) and second % 12 == first % 12 and first > 0
                parallels += moved and same_way and perfect
    return 100.0 * parallels / changes if changes else None


def form_scores(seq: NoteSequence) -> FormScores:
    """Every measure of one piece (its key estimated from the whole piece)."""
    key = estimate_key_from_histogram(pitch_class_histogram(seq.pitch, seq.duration + 1e-3))
    tonic_end, cadence = ending(seq, key)
    return FormScores(
        key_stability=key_stability(seq, key), key=key, tonic_ending=tonic_end, cadence=cadence,
        downbeat_alignment=downbeat_alignment(seq), downbeat_accent=downbeat_accent(seq),
        off_grid_onsets=off_grid_onsets(seq),
        motif_recurrence=motif_recurrence(seq), parallels_per_100=parallels_per_100(seq),
    )


def summarise(scores: list[FormScores], requested: tuple[int, str] | None = None) -> dict[str, float | None]:
    """Means over pieces (rates for the yes/no measures); `requested_key` when a key was asked for."""
    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return float(np.mean(present)) if present else None

    summary: dict[str, float | None] = {
        "pieces": float(len(scores)),
        "key_stability": mean([s.key_stability for s in scores]),
        "tonic_ending": mean([float(s.tonic_ending) for s in scores]),
        "cadence": mean([float(s.cadence) for s in scores]),
        "downbeat_alignment": mean([s.downbeat_alignment for s in scores]),
        "downbeat_accent": mean([s.downbeat_accent for s in scores]),
        "off_grid_onsets": mean([s.off_grid_onsets for s in scores]),
        "motif_recurrence": mean([s.motif_recurrence for s in scores]),
        "parallels_per_100": mean([s.parallels_per_100 for s in scores]),
    }
    if requested is not None:
        summary["requested_key"] = mean([float(s.key == requested) for s in scores])
    return summary


# Measures whose per-piece values spread (shares of windows, bars, motifs): a set is like the real
# pieces when its mean is within WITHIN_REAL of theirs or inside their interquartile range. The
# yes/no measures (tonic ending, cadence) have no spread per piece: only the first test applies.
SPREAD_MEASURES = ("key_stability", "downbeat_alignment", "downbeat_accent", "motif_recurrence")
RATE_MEASURES = ("tonic_ending", "cadence")
WITHIN_REAL = 0.10


def against_real(generated: list[FormScores], real: list[FormScores]) -> dict[str, dict[str, Any]]:
    """Per measure, whether generated pieces are as tonal, metrical and repetitive as real ones, both
    ways (neither less nor more): the two means, the real interquartile range and the verdict."""
    verdicts: dict[str, dict[str, Any]] = {}
    for name in (*RATE_MEASURES, *SPREAD_MEASURES):
        def values(scores: list[FormScores], name: str = name) -> np.ndarray:
            picked = [getattr(s, name) for s in scores]
            return np.array([float(v) for v in picked if v is not None], dtype=np.float64)

        ours, theirs = values(generated), values(real)
        if not len(ours) or not len(theirs):
            continue
        mean, real_mean = float(ours.mean()), float(theirs.mean())
        entry: dict[str, Any] = {"generated": mean, "real": real_mean}
        within = abs(mean - real_mean) <= WITHIN_REAL + 1e-9
        if name in SPREAD_MEASURES:
            low, high = (float(q) for q in np.percentile(theirs, [25, 75]))
            entry["real_iqr"] = [low, high]
            within = within or low <= mean <= high
        entry["within"] = bool(within)
        entry["direction"] = "same" if within else ("more" if mean > real_mean else "less")
        verdicts[name] = entry
    return verdicts
