"""Which voice sings each note: soprano, alto, tenor, bass; violin I and II, viola, cello; a melody.

Notes arrive as chords at onsets; a voice is a line through them. At each onset the voices that
hold a note on keep it; the new notes take the free voices in pitch order (no voice crosses
another) and, among the orders that allow, the one in which each voice moves least from its
last note, as singers and players lead their parts.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from ml.data.notes import NoteSequence

VOICE_NAMES: dict[str, tuple[str, ...]] = {  # from the lowest voice up
    "chorale": ("Bass", "Tenor", "Alto", "Soprano"),
    "string-quartet": ("Cello", "Viola", "Violin II", "Violin I"),
    "renaissance": ("Bassus", "Tenor", "Altus", "Cantus"),
    "fiddle": ("Melody",),
    "folk": ("Melody",),
}


def voice_names(style: str, voices: int) -> tuple[str, ...]:
    names = VOICE_NAMES.get(style)
    if names is not None and len(names) == voices:
        return names
    return tuple(f"Voice {i + 1}" for i in range(voices))


# Where each voice of a style sings or plays, from the lowest voice up (MIDI pitches): the singers'
# ranges of harmony books, the strings' playable ranges where they sound best.
VOICE_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "chorale": ((40, 62), (48, 67), (55, 74), (60, 81)),
    "renaissance": ((40, 62), (48, 67), (53, 72), (60, 79)),
    "string-quartet": ((36, 72), (48, 84), (55, 93), (55, 100)),
}
OUT_OF_RANGE = 3.0  # a semitone outside a voice's range counts as much as three of motion


def assign_voices(seq: NoteSequence, voices: int, ranges: tuple[tuple[int, int], ...] | None = None) -> np.ndarray:
    """The voice (0 = the lowest) of every note of `seq`; each note gets exactly one.

    With `ranges` (one per voice, from the lowest), a note outside a voice's range weighs against
    giving it that voice, so a cello does not take a high line while a violin rests. Where more notes
    sound at once than there are voices, the extra ones double the nearest voice.
    """
    if ranges is not None and len(ranges) != voices:
        ranges = None
    if voices < 1:
        raise ValueError("A piece has at least one voice.")
    assigned = np.full(len(seq), -1, dtype=np.int64)
    start = np.round(seq.start, 6)
    end = start + np.asarray(seq.duration, dtype=np.float64)
    last_pitch = np.linspace(48, 72, voices) if voices > 1 else np.array([60.0])
    if ranges is not None:  # each voice starts from the middle of its range
        last_pitch = np.array([(low + high) / 2 for low, high in ranges], dtype=np.float64)
    for at in np.unique(start):
        new = np.flatnonzero(start == at)
        new = new[np.argsort(seq.pitch[new], kind="stable")]
        held = np.flatnonzero((start < at) & (end > at + 1e-6) & (assigned >= 0))
        taken = {int(assigned[i]): int(seq.pitch[i]) for i in held}
        free = [v for v in range(voices) if v not in taken]
        fits = []
        size = min(len(new), len(free))
        for notes in combinations(new.tolist(), size):  # which new notes get a voice of their own
            for chosen in combinations(free, size):
                order = sorted([*taken.items(), *zip(chosen, (int(seq.pitch[i]) for i in notes))])
                crossing = any(a[1] > b[1] for a, b in zip(order, order[1:]))
                motion = sum(abs(int(seq.pitch[i]) - last_pitch[v]) + _outside(int(seq.pitch[i]), ranges, v)
                             for v, i in zip(chosen, notes))
                fits.append((crossing, motion, chosen, notes))
        _, _, best, placed = min(fits)
        for v, i in zip(best, placed):
            assigned[i] = v
            last_pitch[v] = seq.pitch[i]
        for extra in new.tolist():  # more notes than free voices: the rest double the nearest voice
            if assigned[extra] < 0:
                assigned[extra] = int(np.abs(last_pitch - seq.pitch[extra]).argmin())
    return assigned


def _outside(pitch: int, ranges: tuple[tuple[int, int], ...] | None, voice: int) -> float:
    if ranges is None:
        return 0.0
    low, high = ranges[voice]
    return OUT_OF_RANGE * (max(0, low - pitch) + max(0, pitch - high))
