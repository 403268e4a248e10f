"""The harmony of a style's pieces as a chain: which half-bar harmony follows which.

A piece is read as a sequence of harmony spans, the same spans the network's chord inputs use
(`ml.data.windows.harmony_span`: half bars in bars of four beats or more, whole bars in shorter
ones), each with the key-relative pitch classes that sound longest in it
(`ml.data.windows.half_bar_harmony`). A span where no note starts holds the harmony before it.

The table counts, per context, the harmony that comes next. A context is where the span falls
(the first or the second half of its bar), how near it is to a cadence (the span of a marked phrase
end or of the last note, the span before it, or neither; the piece's last cadence apart from inner
ones) and the harmonies of the one or two spans before it. `ml.generation.harmony` draws a plan
from it for a piece nobody gave chords for.

Sets are written as 12-bit numbers (bit k: pitch class k above the tonic), contexts as strings,
so that the table is JSON and lives in the model file's statistics.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np

from ml.data.notes import NoteSequence
from ml.data.windows import half_bar_harmony, harmony_span
from ml.model.config import key_shift

START = "^"  # the harmony "before" a piece's first span
# How near a span is to a cadence: its own span holds it, the next one does, or neither.
# The piece's last cadence ("F") apart from the inner ones ("C").
FAR = "-"
# Contexts seen fewer times than this are left out of the stored table (their spans still count
# in the shorter contexts).
MIN_CONTEXT = 2


def bits(chord: np.ndarray) -> int:
    """A 12-vector of 0/1 as a 12-bit number."""
    return int(np.dot(np.asarray(chord, dtype=np.int64) > 0, 1 << np.arange(12)))


def near(distance: int, final: bool) -> str:
    """The cadence part of a context: `distance` spans to the next cadence (0: this one)."""
    if distance > 1:
        return FAR
    return ("F" if final else "C") + str(distance)


def piece_spans(seq: NoteSequence, tonic: int) -> list[tuple[int, str, int]]:
    """(slot, cadence, harmony) per harmony span of a piece, in order: slot 1 for a span that starts
    in the middle of its bar, else 0; cadence as `near`; harmony as `bits` (0: silence)."""
    if len(seq) == 0:
        return []
    onset = np.round(seq.seconds_to_beats(seq.start) * 48) / 48
    in_bar, _, bar_length = seq.bar_positions()
    into, span = harmony_span(in_bar, bar_length)
    _, duration = seq.to_beats()
    pitch = seq.pitch.astype(np.int64) - key_shift(tonic)
    harmony = half_bar_harmony(onset, duration.astype(np.float64), pitch, in_bar, bar_length)
    starts = np.round((onset - into) * 48) / 48
    marked = seq.seconds_to_beats(np.array(seq.phrase_ends, dtype=np.float64)) if seq.phrase_ends else np.zeros(0)
    last = float(onset.max())
    ends = sorted({round(float(e) * 48) / 48 for e in marked if e < last - 1e-9} | {last})
    rows: list[tuple[float, float, int, int]] = []  # (start, length, slot, harmony)
    for k in np.flatnonzero(np.r_[True, np.diff(starts) > 1e-9]):
        start, length = float(starts[k]), float(span[k])
        slot = int(in_bar[k] - into[k] > 1e-6)
        harm = bits(harmony[k])
        if rows:  # spans where no note starts hold the harmony before them
            previous_start, previous_length, previous_slot, previous_harm = rows[-1]
            halves = previous_length < bar_length[k] - 1e-9
            at, s = previous_start + previous_length, previous_slot
            while at < start - 1e-6 and len(rows) < 100_000:
                s = 1 - s if halves else 0
                rows.append((at, previous_length, s, previous_harm))
                at += previous_length
        rows.append((start, length, slot, harm))
    out = []
    for start, length, slot, harm in rows:
        coming = [e for e in ends if e >= start - 1e-9]
        if not coming:
            out.append((slot, FAR, harm))
            continue
        distance = 0 if coming[0] < start + length - 1e-9 else (1 if coming[0] < start + 2 * length - 1e-9 else 2)
        out.append((slot, near(distance, coming[0] >= last - 1e-9), harm))
    return out


def context(slot: int, cadence: str, before: Iterable[int | str]) -> str:
    return ",".join([str(slot), cadence, *(str(b) for b in before)])


def harmony_table(pieces: Iterable[tuple[NoteSequence, int]]) -> dict[str, dict[str, int]]:
    """The chain of some pieces (each with its tonic): context -> {next harmony: count}, for the
    contexts of two spans back, one back and none (the backing-off order of
    `ml.generation.harmony`). Silent spans are read as the harmony before them."""
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    for seq, tonic in pieces:
        before: list[int | str] = [START, START]
        for slot, cadence, harm in piece_spans(seq, tonic):
            if harm == 0:
                if before[-1] == START:
                    continue
                harm = int(before[-1])
            for back in (2, 1, 0):
                counts[context(slot, cadence, before[len(before) - back:] if back else [])][harm] += 1
            before = [before[-1], harm]
    return {key: {str(h): c for h, c in counted.most_common()} for key, counted in sorted(counts.items())
            if sum(counted.values()) >= MIN_CONTEXT or key.count(",") == 1}
