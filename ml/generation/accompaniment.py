"""An accompaniment that follows a chord progression: a bass and chords under a single melody.

A fiddle tune or a folk song implies its chords in the tune; the accompaniment states them, as a
guitar or a piano would: the root (or the named bass) on the chord's first beat, the fifth on the
bar's other strong beat, and the chord in close position on the beats between, kept below the
melody. It is written by rule, on its own track, from the chords the user asked for.
"""

from __future__ import annotations

import numpy as np

from ml.data.notes import NoteSequence
from ml.generation.chords import ChordSpan

BASS_LOW, BASS_HIGH = 36, 52  # C2..E3
CHORD_LOW = 52  # E3: the chord's lowest note sits at or above it
ACCOMPANIMENT_PROGRAM = 24  # General MIDI: nylon-string guitar
ACCOMPANIMENT_VELOCITY = 62


def _pattern(time_signature: tuple[int, int]) -> tuple[float, list[tuple[float, str]]]:
    """The beat, and (beat offset in the bar, "bass" | "fifth" | "chord") events of one bar."""
    numerator, denominator = time_signature
    beat = 4.0 / denominator
    if denominator == 8 and numerator % 3 == 0 and numerator > 3:  # compound: dotted-quarter beats
        beats = numerator // 3
        events = [(i * 1.5, "bass" if i == 0 else ("fifth" if i == beats // 2 and beats >= 4 else "chord"))
                  for i in range(beats)]
        return 1.5, events
    if numerator == 4:
        return beat, [(0.0, "bass"), (beat, "chord"), (2 * beat, "fifth"), (3 * beat, "chord")]
    return beat, [(i * beat, "bass" if i == 0 else "chord") for i in range(numerator)]


def _nearest(pitch_class: int, low: int, high: int, near: float) -> int:
    options = [p for p in range(low, high + 1) if p % 12 == pitch_class]
    return min(options, key=lambda p: abs(p - near))


def accompaniment(spans: list[ChordSpan], *, time_signature: tuple[int, int], tempo_bpm: float,
                  melody_low: int, start_seconds: float = 0.0) -> NoteSequence:
    """Bass and chords for `spans` (beats from the piece's first bar line, at `start_seconds`)."""
    if not spans:
        return NoteSequence.from_notes(start=np.zeros(0), pitch=np.zeros(0, np.int16), duration=np.zeros(0),
                                       velocity=np.zeros(0, np.int16), tempo_bpm=tempo_bpm,
                                       time_signature=time_signature, program=ACCOMPANIMENT_PROGRAM)
    bar = time_signature[0] * 4.0 / time_signature[1]
    beat, pattern = _pattern(time_signature)
    chord_high = max(CHORD_LOW + 11, min(72, melody_low - 1))  # every pitch class has a place
    notes: list[tuple[float, int, float, int]] = []
    previous_chord: list[int] = [CHORD_LOW + 4, CHORD_LOW + 7, CHORD_LOW + 12]
    bass_near = 43.0
    for span in spans:
        chord = span.chord
        events = [(span.start + offset - (span.start % bar), kind) for offset, kind in pattern]
        events = [(at, kind) for at, kind in events if span.start - 1e-9 <= at < span.end - 1e-9]
        if not events or abs(events[0][0] - span.start) > 1e-9:
            events.insert(0, (span.start, "bass"))
        else:
            events[0] = (span.start, "bass")
        # Close position, each voice moved to the nearest tone of the new chord (smooth, as a player's hand).
        tones = sorted(chord.tones, key=lambda pc: (pc - chord.root) % 12)[:4]
        voicing = sorted({_nearest(pc, CHORD_LOW, chord_high, float(np.mean(previous_chord))) for pc in tones})
        previous_chord = voicing
        for k, (at, kind) in enumerate(events):
            until = events[k + 1][0] if k + 1 < len(events) else span.end
            length = max(0.25, min(until - at, beat) * 0.95)
            if kind == "chord":
                notes += [(at, p, length, ACCOMPANIMENT_VELOCITY - 6) for p in voicing]
            else:
                pc = chord.bass if kind == "bass" else (chord.root + 7) % 12
                if kind == "fifth" and pc not in chord.tones:
                    pc = chord.root
                pitch = _nearest(pc, BASS_LOW, BASS_HIGH, bass_near)
                bass_near = pitch
                notes.append((at, pitch, (until - at) * 0.95, ACCOMPANIMENT_VELOCITY))
    spb = 60.0 / tempo_bpm
    table = np.array(notes, dtype=np.float64)
    return NoteSequence.from_notes(
        start=start_seconds + table[:, 0] * spb, pitch=table[:, 1].astype(np.int16), duration=table[:, 2] * spb,
        velocity=table[:, 3].astype(np.int16), tempo_bpm=tempo_bpm, time_signature=time_signature,
        program=ACCOMPANIMENT_PROGRAM)
