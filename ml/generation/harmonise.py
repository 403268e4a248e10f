"""Harmonise a melody: its line kept verbatim as the top voice, the phrases read from the melody.

A melody arrives as MIDI: one line, or a texture whose top line is taken. Its phrases end where a
note is held (a fermata in a hymn book, a long note at a cadence), and the last note closes the
piece; the plan built here puts a cadence at each of those ends, so that the network, which was
trained with the beats to the next cadence as an input, writes towards them.
"""

from __future__ import annotations

import math

import numpy as np

from ml.data.notes import NoteSequence
from ml.generation.form import FormPlan, Phrase

MAX_MELODY_BARS = 64
# A held note that ends a phrase is longer than this many times the melody's median duration (a
# dotted note in a tune of plain ones is a figure of the rhythm, not a close), and at least a beat.
LONG_NOTE = 1.5


class MelodyError(ValueError):
    """A melody that cannot be harmonised; the message says why."""


def melody_line(seq: NoteSequence) -> NoteSequence:
    """The top line: the highest note of each onset, each cut where the next one starts.

    In a texture (some onsets start several notes), an onset under a higher note that is still
    held (an alto moving under a soprano's half note) is not the tune: the held note goes on. A
    slight overlap of a legato line (the next note starts before the last one is released) does not
    count as held: the higher note must sound on through at least half of the lower one. A file of
    one note at each onset is a line: every note of it is the tune's, however it overlaps.
    """
    if len(seq) == 0:
        raise MelodyError("The melody file holds no notes.")
    start = np.round(seq.start, 4)
    onsets, counts = np.unique(start, return_counts=True)
    if len(onsets) > 0 and counts.min() >= 3:
        raise MelodyError("The file holds only chords, not a melody: give a single line (or a piece whose top "
                          "line is the tune).")
    texture = counts.max() > 1
    kept: list[int] = []
    for at in onsets:
        here = np.flatnonzero(start == at)
        highest = int(here[np.argmax(seq.pitch[here])])
        if texture and kept:
            last = kept[-1]
            if seq.pitch[last] > seq.pitch[highest] and float(seq.start[last] + seq.duration[last]) > float(
                    seq.start[highest] + 0.5 * seq.duration[highest]) - 1e-6:
                continue  # under the tune's held note
        kept.append(highest)
    top = np.array(kept, dtype=np.int64)
    begin = seq.start[top].astype(np.float64)
    end = np.minimum(begin + seq.duration[top], np.append(begin[1:], np.inf))
    return NoteSequence.from_notes(start=begin, pitch=seq.pitch[top], duration=end - begin,
                                   velocity=seq.velocity[top], tempo_bpm=seq.tempo_bpm,
                                   time_signature=seq.time_signature, program=seq.program,
                                   phrase_ends=list(seq.phrase_ends))


def melody_notes(line: NoteSequence, bar_beats: float) -> tuple[list[tuple[float, int, float, float]], float]:
    """(onset beats, pitch, duration beats, velocity 0..1) of the melody from the plan's first bar
    line, and how many beats of rest open that bar (a pickup)."""
    spb = 60.0 / float(line.tempo_bpm)
    onset = np.round((line.start - line.start[0]) / spb * 48) / 48
    # Ends on the same grid as onsets: a note cut where the next starts must not sound on past it
    # by a rounding error (it would be heard as held under the next melody note).
    end = np.maximum(np.round((line.start + line.duration - line.start[0]) / spb * 48) / 48, onset + 1 / 48)
    pickup = float(line.bar_phase) % bar_beats if line.bar_phase else 0.0
    notes = [(float(o + pickup), int(p), float(e - o), float(v) / 127.0)
             for o, e, p, v in zip(onset, end, line.pitch, line.velocity)]
    return notes, pickup


def melody_plan(notes: list[tuple[float, int, float, float]], bar_beats: float,
                marked_ends: list[float] | None = None) -> FormPlan:
    """Phrases that end at the melody's held notes (or its marked phrase ends, in beats), each
    closing on a cadence; the last closes on the melody's last note."""
    onsets = np.array([n[0] for n in notes])
    durations = np.array([n[2] for n in notes])
    total_bars = max(1, math.ceil((onsets[-1] + durations[-1]) / bar_beats - 1e-6))
    if total_bars > MAX_MELODY_BARS:
        raise MelodyError(f"The melody is {total_bars} bars long; at most {MAX_MELODY_BARS} bars can be harmonised.")
    median = float(np.median(durations))
    if marked_ends:
        ends = [float(onsets[np.abs(onsets - e).argmin()]) for e in marked_ends]
    else:
        ends = [float(o) for o, d in zip(onsets[:-1], durations[:-1])
                if d > LONG_NOTE * median + 1e-9 and d >= 1.0 - 1e-9]
    ends = sorted({e for e in ends if e < onsets[-1] - 1e-9} | {float(onsets[-1])})
    phrases: list[Phrase] = []
    start = 0.0
    for i, cadence_at in enumerate(ends):
        final = i == len(ends) - 1
        end = total_bars * bar_beats if final else min(total_bars * bar_beats,
                                                       math.ceil((cadence_at + 1e-6) / bar_beats) * bar_beats)
        if not final and (end <= start + 1e-9 or end >= total_bars * bar_beats - 1e-9):
            continue  # no room for a phrase after it: the last phrase takes this cadence in
        phrases.append(Phrase(letter=chr(ord("A") + min(len(phrases), 25)), start=start, end=end, copy_of=None,
                              copy_until=0.0, cadence=True, cadence_at=cadence_at, final=final))
        start = end
    return FormPlan(form="through", bar_beats=bar_beats, bars=total_bars, phrases=tuple(phrases))
