"""Velocities from a score: its written dynamics, hairpins and accents, and the accent of the bar.

Scores carry no performed velocities. A player reads them from the markings (p, f, a crescendo
hairpin to the next marking, sf on one note, an accent sign) and from the metre (the downbeat
weighs most, then the other beats, then what falls between). This turns those into MIDI
velocities, so that the velocity head has a real target: contrast where a score writes it and
the pulse of the bar everywhere.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

# Written levels as MIDI velocities, evenly spaced in loudness from ppp to fff.
LEVELS: dict[str, int] = {
    "pppp": 20, "ppp": 30, "pp": 42, "p": 55, "mp": 68, "mf": 80, "f": 94, "ff": 106, "fff": 116, "ffff": 124,
}
DEFAULT_LEVEL = LEVELS["mf"]
# Sudden accents on one note (sforzando and its spellings): the note louder, the level unchanged.
SUDDEN: dict[str, int] = {"sf": 18, "sfz": 18, "sffz": 24, "fz": 18, "rfz": 14, "rf": 14, "sfp": 18, "fp": 14}
# After these the level is piano: fp and sfp are loud then soft.
SUDDEN_THEN: dict[str, int] = {"fp": LEVELS["p"], "sfp": LEVELS["p"]}
ACCENT_SIGN = 14  # an accent (>) or a strong accent (^)
# The pulse of the bar: the downbeat above the level, the other beats on it, what falls between
# them below it.
DOWNBEAT, BEAT, OFFBEAT = 6, 0, -6
# A hairpin with no marking after it in its direction moves the level by this much.
HAIRPIN_STEP = 12


@dataclass
class Markings:
    """A part's dynamics: levels at offsets (quarter notes), hairpins, and one-note accents."""

    levels: list[tuple[float, int]] = field(default_factory=list)  # sorted (offset, velocity)
    hairpins: list[tuple[float, float, int]] = field(default_factory=list)  # (start, end, +1 or -1)
    sudden: dict[float, int] = field(default_factory=dict)  # offset -> extra velocity

    def add(self, offset: float, text: str) -> None:
        text = text.strip().lower()
        if text in LEVELS:
            self.levels.append((offset, LEVELS[text]))
        if text in SUDDEN:
            self.sudden[round(offset, 4)] = max(self.sudden.get(round(offset, 4), 0), SUDDEN[text])
        if text in SUDDEN_THEN:
            self.levels.append((offset + 1e-3, SUDDEN_THEN[text]))

    def __bool__(self) -> bool:
        return bool(self.levels or self.hairpins or self.sudden)

    def level_at(self, offsets: np.ndarray) -> np.ndarray:
        """The written level at each offset, hairpins interpolated towards where they lead."""
        levels = sorted(self.levels)
        times = [t for t, _ in levels]

        def at(q: float) -> int:
            i = bisect_right(times, q + 1e-6) - 1
            return levels[i][1] if i >= 0 else DEFAULT_LEVEL

        out = np.array([at(float(q)) for q in offsets], dtype=np.float64)
        for start, end, direction in self.hairpins:
            if end <= start:
                continue
            begin = at(start)
            following = [v for t, v in levels if t >= end - 1e-6]
            target = following[0] if following and (following[0] - begin) * direction > 0 else \
                begin + direction * HAIRPIN_STEP
            inside = (offsets >= start) & (offsets <= end)
            out[inside] = begin + (target - begin) * (offsets[inside] - start) / (end - start)
        return out


def metric_accent(in_bar: np.ndarray, beat: float) -> np.ndarray:
    """The pulse at each onset: downbeat, another beat, or between beats (`beat` in quarters)."""
    in_bar = np.asarray(in_bar, dtype=np.float64)
    on_beat = np.abs(in_bar / beat - np.round(in_bar / beat)) < 1e-3
    return np.where(np.abs(in_bar) < 1e-3, DOWNBEAT, np.where(on_beat, BEAT, OFFBEAT))


def beat_length(time_signature: tuple[int, int]) -> float:
    """Quarter notes per beat: a dotted quarter in compound time (6/8, 9/8, 12/8)."""
    numerator, denominator = int(time_signature[0]), int(time_signature[1])
    unit = 4.0 / max(denominator, 1)
    return unit * 3 if denominator >= 8 and numerator % 3 == 0 and numerator > 3 else unit


def velocities(written: np.ndarray, accent: np.ndarray) -> np.ndarray:
    """The written level (with one-note accents) + the pulse of the bar, as MIDI velocities 1..127."""
    return np.clip(np.round(written + accent), 1, 127).astype(np.int64)


def part_markings(part: object) -> Markings:
    """The dynamics written in one music21 part (offsets from the part's start)."""
    from music21 import dynamics

    marks = Markings()
    flat = part.flatten()  # type: ignore[attr-defined]
    for d in flat.getElementsByClass(dynamics.Dynamic):
        marks.add(float(d.offset), str(d.value or ""))
    seen = set()
    for wedge in part.spannerBundle.getByClass(dynamics.DynamicWedge):  # type: ignore[attr-defined]
        first, last = wedge.getFirst(), wedge.getLast()
        if first is None or last is None or id(wedge) in seen:
            continue
        seen.add(id(wedge))
        try:
            start = float(first.getOffsetInHierarchy(part))
            end = float(last.getOffsetInHierarchy(part)) + float(last.quarterLength)
        except Exception:  # an element outside the part's hierarchy: leave the hairpin out
            continue
        direction = 1 if isinstance(wedge, dynamics.Crescendo) else -1 if isinstance(wedge, dynamics.Diminuendo) else 0
        if direction:
            marks.hairpins.append((start, end, direction))
    return marks


def accent_of(element: object) -> int:
    """Extra velocity for an accent sign on a note."""
    names = {type(a).__name__ for a in getattr(element, "articulations", ())}
    return ACCENT_SIGN if names & {"Accent", "StrongAccent"} else 0
