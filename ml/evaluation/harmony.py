"""What chord a stretch of music sounds as, measured on pitch-class sets (not chord names).

Written from the listener's side, with no code shared with the chord constraint: a stretch reads
as the chord, among the common chords on the twelve roots, whose tones best match what sounds in
it (each note weighted by how long it sounds inside the stretch, the bass at its start counted
once more).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ml.data.notes import NoteSequence

DEFINITION = ("Share of bars (or half bars) that read as the requested chord: among the major, minor, "
              "diminished, augmented, suspended, seventh and half-diminished chords on all twelve roots, the one "
              "whose tones best match what sounds there (cosine between the sounding time of each pitch class, "
              "the bass at the start counted once more, and the chord's tones; its root must sound) has the "
              "requested root, and its triad is among the requested chord's tones.")

# Chord qualities as intervals above the root; the first three intervals are the triad a listener
# names the chord by.
QUALITIES: dict[str, tuple[int, ...]] = {
    "major": (0, 4, 7), "minor": (0, 3, 7), "diminished": (0, 3, 6), "augmented": (0, 4, 8),
    "sus4": (0, 5, 7), "sus2": (0, 2, 7),
    "dominant7": (0, 4, 7, 10), "major7": (0, 4, 7, 11), "minor7": (0, 3, 7, 10), "half-diminished7": (0, 3, 6, 10),
    "diminished7": (0, 3, 6, 9), "minor-major7": (0, 3, 7, 11),
}


ROOT_SHARE = 0.05


@dataclass(frozen=True)
class Reading:
    root: int
    quality: str

    @property
    def triad(self) -> frozenset[int]:
        return frozenset((self.root + i) % 12 for i in QUALITIES[self.quality][:3])


def _templates() -> list[tuple[Reading, np.ndarray]]:
    out = []
    for root in range(12):
        for quality, intervals in QUALITIES.items():
            mask = np.zeros(12, dtype=bool)
            mask[[(root + i) % 12 for i in intervals]] = True
            out.append((Reading(root, quality), mask))
    return out


_TEMPLATES = _templates()


def read_chord(weights: np.ndarray) -> Reading | None:
    """The chord a pitch-class weight vector (12 values) sounds as; None where nothing sounds.

    The match is the cosine between the weights and the chord's tones (so a chord whose extra tone
    barely sounds is not preferred to the triad that does); a chord whose root does not sound at
    (under ROOT_SHARE of the sounding time: a grace note, or rounding at the edge) is passed over
    while another one matches.
    """
    total = float(weights.sum())
    if total <= 0:
        return None
    norm = float(np.linalg.norm(weights))
    best: tuple[bool, float, Reading] | None = None
    for reading, mask in _TEMPLATES:
        cosine = float(weights[mask].sum()) / (norm * float(np.sqrt(mask.sum())))
        key = (bool(weights[reading.root] >= ROOT_SHARE * total), round(cosine, 9), reading)
        if best is None or key[:2] > best[:2]:
            best = key
    assert best is not None
    return best[2]


def stretch_weights(seq: NoteSequence, start: float, end: float) -> np.ndarray:
    """Seconds each pitch class sounds within [start, end), the bass at `start` counted once more."""
    weights = np.zeros(12)
    onset = seq.start
    offset = onset + seq.duration
    inside = np.clip(np.minimum(offset, end) - np.maximum(onset, start), 0, None)
    np.add.at(weights, seq.pitch.astype(np.int64) % 12, inside)
    sounding = (onset <= start + 1e-6) & (offset > start + 1e-6)
    if sounding.any():
        weights[int(seq.pitch[sounding].min()) % 12] += (end - start) / 4
    return weights


def reads_as(seq: NoteSequence, start: float, end: float, tones: Iterable[int], root: int) -> bool:
    """Whether [start, end) reads as the chord with these pitch classes and this root."""
    reading = read_chord(stretch_weights(seq, start, end))
    if reading is None or reading.root != root % 12:
        return False
    # The triad heard must be among the chord's tones: G heard for G7 counts, Gm does not.
    return reading.triad <= frozenset(int(t) % 12 for t in tones)


def chord_follow_rate(seq: NoteSequence, spans: list[tuple[float, float, frozenset[int], int]]) -> float | None:
    """Share of (start s, end s, tones, root) spans that read as their chord."""
    if not spans:
        return None
    return float(np.mean([reads_as(seq, start, end, tones, root) for start, end, tones, root in spans]))
