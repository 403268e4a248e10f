"""MGEval-style comparison of two sets of pieces, and a detector for degenerate loops.

Follows Yang & Lerch (2018), "On the evaluation of generative models in music": every piece is
reduced to a few musical features; for each feature, the distances between pieces of one set
(intra-set) and between pieces of two sets (inter-set) form distributions, smoothed with a
Gaussian kernel density estimate. If generated pieces resemble held-out pieces, the inter-set
distance distribution overlaps the held-out intra-set one: the overlap area (OA) is near 1 and
the Kullback-Leibler divergence near 0.

This module needs only numpy. The generator's loop guard (`ml.generation.generator.loop_completions`) uses
the same thresholds and bans the note that would complete a loop this detector counts, so the
loop rate of guarded output is zero by construction: it says something only with the guard off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from ml.data.notes import NoteSequence, chord_labels

# MGEval's twelve note-length classes, in quarter-note beats: whole, half, quarter, eighth,
# sixteenth; their dotted values; then half, quarter and eighth triplets.
NOTE_LENGTH_BEATS: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5, 0.25, 3.0, 1.5, 0.75, 0.375, 4 / 3, 2 / 3, 1 / 3)

SCALAR_FEATURES = ("pitch_count", "note_count", "pitch_range", "avg_pitch_interval", "avg_ioi")
HISTOGRAM_FEATURES = ("pitch_class_histogram", "pitch_class_transition_matrix", "note_length_histogram")
FEATURES = SCALAR_FEATURES + HISTOGRAM_FEATURES

# Degenerate-loop thresholds (see `find_degenerate_loop`).
MAX_SAME_PITCH = 6
FIGURE_REPEATS = {2: 4, 3: 3, 4: 3}
MAX_CHORD_NOTES = 12
MAX_STEP_BEATS = 8.0

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
# 12 major scales (which are also the 12 natural minors) and 12 harmonic minors, as masks over
# pitch classes: the "major/minor scales" of MGEval's scale consistency.
_SCALE_MASKS = np.array([[(pc - tonic) % 12 in scale for pc in range(12)]
                         for scale in (_MAJOR, _HARMONIC_MINOR) for tonic in range(12)], dtype=np.float64)


def find_degenerate_loop(pitch: np.ndarray, step_beats: np.ndarray) -> str | None:
    """Say why a note sequence is a degenerate loop, or return None if it is not one.

    A sequence is degenerate if one pitch sounds 6 or more times in a row; a figure of 2 pitches
    repeats 4 or more times in a row, or one of 3-4 pitches 3 or more times; 12 or more
    consecutive notes share one onset; or any step (after the first note) is longer than 8 beats.

    Args:
        pitch: MIDI pitches in note order.
        step_beats: Beats since the previous onset, same length (the first value is ignored:
            it is the first note's onset, not a step).

    Returns:
        A short English reason, e.g. "pitch 60 repeated 7 times from note 3", or None.
    """
    pitch = np.asarray(pitch, dtype=np.int64)
    step_beats = np.asarray(step_beats, dtype=np.float64)
    if len(pitch) != len(step_beats):
        raise ValueError("pitch and step_beats must have the same length")
    run, start = _longest_run(pitch[1:] == pitch[:-1])
    if run + 1 >= MAX_SAME_PITCH:
        return f"pitch {pitch[start]} repeated {run + 1} times from note {start}"
    for length, repeats in FIGURE_REPEATS.items():
        if len(pitch) < length * repeats:
            continue
        # A stretch of k*L notes is one figure of L pitches repeated k times exactly when every
        # pitch equals the one L notes later, over (k-1)*L consecutive positions.
        run, start = _longest_run(pitch[length:] == pitch[:-length])
        if run >= length * (repeats - 1):
            figure = " ".join(str(p) for p in pitch[start:start + length])
            times = run // length + 1
            return f"figure {figure} repeated {times} times from note {start}"
    run, start = _longest_run(step_beats[1:] == 0)
    if run + 1 >= MAX_CHORD_NOTES:
        return f"{run + 1} notes share one onset from note {start}"
    long_steps = np.flatnonzero(step_beats[1:] > MAX_STEP_BEATS)
    if len(long_steps):
        i = int(long_steps[0]) + 1
        return f"a step of {step_beats[i]:.1f} beats before note {i}"
    return None


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """Length and start index of the longest run of True values (0, 0 when there is none)."""
    if not mask.any():
        return 0, 0
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return int(ends[k] - starts[k]), int(starts[k])


# -- features ----------------------------------------------------------------------------------

@dataclass
class PieceFeatures:
    """MGEval features of one piece, plus per-piece quality measures."""

    pitch_count: float  # distinct pitches used
    note_count: float  # notes played (MGEval's total_used_note)
    pitch_range: float  # semitones between highest and lowest
    avg_pitch_interval: float  # mean |pitch difference| of consecutive notes, semitones
    avg_ioi: float  # mean inter-onset interval, seconds (chord notes count, as in MGEval)
    pitch_class_histogram: np.ndarray  # [12], sums to 1
    pitch_class_transition_matrix: np.ndarray  # [12, 12], sums to 1
    note_length_histogram: np.ndarray  # [len(NOTE_LENGTH_BEATS)], sums to 1
    scale_consistency: float  # largest fraction of notes inside one major or harmonic-minor scale
    pitch_class_entropy: float  # bits, of the pitch-class histogram
    loop: str | None  # find_degenerate_loop's reason
    chord_onsets: int  # onsets where three or more pitch classes sound
    common_chord_share: float  # of those, the share that are triads or seventh chords

    def vector(self, name: str) -> np.ndarray:
        return np.atleast_1d(np.asarray(getattr(self, name), dtype=np.float64)).ravel()


def piece_features(seq: NoteSequence) -> PieceFeatures:
    """Compute every feature of one piece (at least one note)."""
    if not len(seq):
        raise ValueError("A piece needs at least one note to be described.")
    pitch = seq.pitch.astype(np.int64)
    pc = pitch % 12
    histogram = np.bincount(pc, minlength=12).astype(np.float64)
    histogram /= histogram.sum()
    transitions = np.zeros((12, 12))
    if len(pc) > 1:
        np.add.at(transitions, (pc[:-1], pc[1:]), 1.0)
        transitions /= transitions.sum()
    step_beats, duration_beats = seq.to_beats()
    lengths = np.log(np.array(NOTE_LENGTH_BEATS))
    nearest = np.argmin(np.abs(np.log(np.maximum(duration_beats, 1e-3))[:, None] - lengths[None, :]), axis=1)
    length_hist = np.bincount(nearest, minlength=len(NOTE_LENGTH_BEATS)).astype(np.float64)
    length_hist /= length_hist.sum()
    nonzero = histogram[histogram > 0]
    return PieceFeatures(
        pitch_count=float(len(np.unique(pitch))),
        note_count=float(len(pitch)),
        pitch_range=float(pitch.max() - pitch.min()),
        avg_pitch_interval=float(np.mean(np.abs(np.diff(pitch)))) if len(pitch) > 1 else 0.0,
        avg_ioi=float(np.mean(seq.step[1:])) if len(pitch) > 1 else 0.0,
        pitch_class_histogram=histogram,
        pitch_class_transition_matrix=transitions,
        note_length_histogram=length_hist,
        scale_consistency=float(np.max(_SCALE_MASKS @ histogram)),
        pitch_class_entropy=float(-np.sum(nonzero * np.log2(nonzero))),
        loop=find_degenerate_loop(pitch, step_beats),
        **_harmony(seq),
    )


# Chord qualities (music21's common names) that tonal harmony is made of; anything else is a
# cluster or an incomplete sonority.
COMMON_CHORDS = ("major triad", "minor triad", "diminished triad", "augmented triad", "dominant seventh chord",
                 "minor seventh chord", "major seventh chord", "half-diminished seventh chord",
                 "diminished seventh chord", "incomplete dominant-seventh chord")


class _Harmony(TypedDict):
    chord_onsets: int
    common_chord_share: float


def _harmony(seq: NoteSequence) -> _Harmony:
    """How much of what sounds together is a common chord: measured once per onset."""
    labels = chord_labels(seq)
    first_of_onset = np.flatnonzero(np.r_[True, seq.step[1:] > 0])
    named = [label for label in (labels[i] for i in first_of_onset) if label is not None]
    common = sum(any(label.endswith(" " + quality) for quality in COMMON_CHORDS) for label in named)
    return {"chord_onsets": len(named), "common_chord_share": common / len(named) if named else 0.0}


def crop(seq: NoteSequence, seconds: float) -> NoteSequence:
    """The notes that start within `seconds` of the first onset (at least one note)."""
    start = seq.start
    keep = max(1, int(np.searchsorted(start, start[0] + seconds, side="left")))
    if keep >= len(seq):
        return seq
    return NoteSequence(pitch=seq.pitch[:keep], step=seq.step[:keep], duration=seq.duration[:keep],
                        velocity=seq.velocity[:keep], **seq.meta())  # type: ignore[arg-type]


# -- distances, densities, overlap --------------------------------------------------------------

def pairwise_distances(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances: all pairs within `a` (i < j) if `b` is None, else all of a x b.

    Args:
        a: Feature vectors [n, d].
        b: Feature vectors [m, d], or None.

    Returns:
        A flat array of distances.
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    other = a if b is None else np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    d = np.sqrt(np.maximum(((a[:, None, :] - other[None, :, :]) ** 2).sum(-1), 0.0))
    if b is None:
        return d[np.triu_indices(len(a), k=1)]
    return d.ravel()


def gaussian_kde(samples: np.ndarray, grid: np.ndarray, bandwidth: float | None = None) -> np.ndarray:
    """Gaussian kernel density of 1-D `samples`, evaluated on `grid`.

    The bandwidth defaults to Scott's rule, sigma * n^(-1/5) (scipy's default in one dimension).
    """
    samples = np.asarray(samples, dtype=np.float64)
    if not len(samples):
        raise ValueError("A density needs at least one sample.")
    h = bandwidth if bandwidth is not None else scott_bandwidth(samples)
    if h <= 0:
        raise ValueError("The samples have no spread: give a bandwidth.")
    density = np.empty(len(grid))
    for a in range(0, len(grid), 512):  # chunks keep the [grid, samples] matrix small
        z = (grid[a:a + 512, None] - samples[None, :]) / h
        density[a:a + 512] = np.exp(-0.5 * z ** 2).sum(axis=1)
    return density / (len(samples) * h * np.sqrt(2 * np.pi))


def scott_bandwidth(samples: np.ndarray) -> float:
    """Scott's rule, sigma * n^(-1/5); 0 when the samples have no spread."""
    sigma = float(np.std(samples, ddof=1)) if len(samples) > 1 else 0.0
    return sigma * len(samples) ** (-1 / 5)


def overlap_and_kl(reference: np.ndarray, other: np.ndarray, points: int = 1000) -> tuple[float, float]:
    """Overlap area and KL(reference || other) of the two samples' Gaussian KDEs.

    Args:
        reference: Distances whose density is P (MGEval: the held-out intra-set distances).
        other: Distances whose density is Q (MGEval: the generated-vs-held-out distances).
        points: Grid points for the numerical integrals.

    Returns:
        (OA in [0, 1], KL in nats, >= 0).
    """
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    # A sample without spread (one distance, or all equal) has no Scott bandwidth: it borrows the
    # pooled one, or a small width relative to the values when nothing varies at all.
    pooled = scott_bandwidth(np.concatenate([reference, other]))
    floor = pooled if pooled > 1e-9 else 1e-3 * max(1.0, float(np.max(np.abs(np.concatenate([reference, other])))))
    h_ref, h_other = (h if h > 1e-9 else floor for h in (scott_bandwidth(reference), scott_bandwidth(other)))
    lo = min(reference.min() - 4 * h_ref, other.min() - 4 * h_other)
    hi = max(reference.max() + 4 * h_ref, other.max() + 4 * h_other)
    # The grid must resolve the narrower kernel, or the integrals miss its mass.
    points = int(min(20_000, max(points, 8 * (hi - lo) / min(h_ref, h_other))))
    grid = np.linspace(lo, hi, points)
    p = gaussian_kde(reference, grid, h_ref)
    q = gaussian_kde(other, grid, h_other)
    overlap = float(np.trapezoid(np.minimum(p, q), grid))
    # A floor on q keeps KL finite where the other set has (numerically) no mass.
    eps = 1e-10
    kl = float(np.trapezoid(p * (np.log(p + eps) - np.log(q + eps)), grid))
    return min(1.0, max(0.0, overlap)), max(0.0, kl)


@dataclass
class FeatureComparison:
    """One feature's distance distributions and their agreement."""

    overlap: float
    kl: float
    intra_reference_mean: float
    intra_generated_mean: float
    inter_mean: float


def compare_sets(generated: Sequence[PieceFeatures], reference: Sequence[PieceFeatures],
                 features: Sequence[str] = FEATURES) -> dict[str, FeatureComparison]:
    """MGEval comparison of generated pieces against reference (held-out) pieces, per feature.

    Needs at least two pieces in each set (intra-set distances need a pair).
    """
    if len(generated) < 2 or len(reference) < 2:
        raise ValueError("Comparing sets needs at least two pieces in each.")
    results: dict[str, FeatureComparison] = {}
    for name in features:
        g = np.stack([f.vector(name) for f in generated])
        r = np.stack([f.vector(name) for f in reference])
        intra_r, intra_g, inter = pairwise_distances(r), pairwise_distances(g), pairwise_distances(g, r)
        overlap, kl = overlap_and_kl(intra_r, inter)
        results[name] = FeatureComparison(overlap=overlap, kl=kl, intra_reference_mean=float(intra_r.mean()),
                                          intra_generated_mean=float(intra_g.mean()),
                                          inter_mean=float(inter.mean()))
    return results


@dataclass
class SetSummary:
    """Per-piece quality measures averaged over a set, and its mean pitch-class histogram."""

    pieces: int
    notes_mean: float
    scale_consistency: float
    pitch_class_entropy: float
    loop_rate: float
    loop_examples: list[str]
    pitch_class_histogram: list[float]
    common_chord_share: float  # over every chord onset of the set


def summarize(features: Sequence[PieceFeatures], lengths: Sequence[int]) -> SetSummary:
    loops = [f.loop for f in features if f.loop]
    return SetSummary(
        pieces=len(features),
        notes_mean=float(np.mean(lengths)) if len(lengths) else 0.0,
        scale_consistency=float(np.mean([f.scale_consistency for f in features])) if features else 0.0,
        pitch_class_entropy=float(np.mean([f.pitch_class_entropy for f in features])) if features else 0.0,
        loop_rate=len(loops) / len(features) if features else 0.0,
        loop_examples=loops[:3],
        pitch_class_histogram=(np.mean([f.pitch_class_histogram for f in features], axis=0).tolist()
                               if features else [0.0] * 12),
        common_chord_share=(sum(f.common_chord_share * f.chord_onsets for f in features)
                            / max(1, sum(f.chord_onsets for f in features))),
    )
