"""Regenerate a passage: write some bars of a piece again and keep every other note exactly.

The network reads only the notes before the one it writes, so a passage is written as a
continuation of the bars before it, several candidates at once, and the one kept is the one
after which the network finds the kept bars that follow most likely (it is fed them, as a
listener hears them, and scored): the passage leads into what follows, not only out of what
precedes. The constraints hold inside the passage as everywhere (key, voice leading, metre,
chords); the copied repeats do not (a regenerated bar of a repeated phrase changes that
occurrence only, and the form marks it varied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ml.data.notes import NoteSequence
from ml.generation.form import FormPlan
from ml.generation.piece import GeneratedPiece
from ml.generation.sampler import Line, Primer
from ml.model.config import ModelConfig

JOIN_NOTES = 12  # notes after the gap that score how well a candidate leads into them
EDGE = 1e-6


class PassageError(ValueError):
    """Bars that cannot be regenerated; the message says why."""


def check_bars(first_bar: object, last_bar: object, bars: int) -> None:
    """PassageError unless bars first..last (1-based, inclusive) are a part of a piece of `bars` bars."""
    if not (isinstance(first_bar, int) and isinstance(last_bar, int)) or isinstance(first_bar, bool) \
            or isinstance(last_bar, bool):
        raise PassageError("Give the bars as two whole numbers, such as 5 and 8.")
    if first_bar > last_bar:
        raise PassageError(f"Bars {first_bar}-{last_bar} are an empty range: the first bar comes after the last.")
    if first_bar < 1 or last_bar > bars:
        raise PassageError(f"The piece has bars 1 to {bars}; bars {first_bar}-{last_bar} are outside it.")
    if first_bar == 1 and last_bar == bars:
        raise PassageError("These bars are the whole piece: use Again to write a new piece instead.")


@dataclass
class Passage:
    """A piece, the form it was written to, and the bars to write again (1-based, inclusive)."""

    notes: NoteSequence
    plan: FormPlan
    plan_start: float  # seconds where the plan's first bar starts
    key: tuple[int, str]
    first_bar: int
    last_bar: int

    def __post_init__(self) -> None:
        check_bars(self.first_bar, self.last_bar, self.plan.bars)

    @property
    def spb(self) -> float:
        return 60.0 / float(self.notes.tempo_bpm)

    @property
    def gap(self) -> tuple[float, float]:
        """Beats from the plan's start where the passage begins and ends."""
        bar = self.plan.bar_beats
        return (self.first_bar - 1) * bar, self.last_bar * bar

    def _beats(self) -> np.ndarray:
        return np.round((self.notes.start - self.plan_start) / self.spb * 48) / 48

    def _before(self) -> np.ndarray:
        return self._beats() < self.gap[0] - EDGE

    def _after(self) -> np.ndarray:
        return self._beats() >= self.gap[1] - EDGE

    def primer(self, config: ModelConfig, shift: int) -> Primer | None:
        """The notes before the gap as the network's window (cut where they are held into it)."""
        before = self._before()
        if not before.any():
            return None
        onset = self._beats()[before]
        duration = np.minimum(self.notes.duration[before] / self.spb, self.gap[0] - onset)
        step = np.diff(onset, prepend=onset[0])
        pitch = self.notes.pitch[before].astype(np.int64)
        signals = [self.plan.next_signal(float(b)) for b in onset]
        upcoming = np.array([math.inf if s is None else s for s in signals])
        final = np.array([self.plan.is_final(s) for s in signals])
        return Primer(pitch=np.clip(pitch - shift, 0, 127).astype(np.int32), step=config.quantize_beats(step),
                      duration=config.quantize_beats(duration),
                      velocity=(self.notes.velocity[before] / 127.0).astype(np.float32),
                      position=config.position_class(np.mod(onset, self.plan.bar_beats)),
                      cadence=config.cadence_input(upcoming - onset, final=final),
                      output=(onset, pitch, duration, self.notes.velocity[before].astype(np.float64)), plan_start=0.0)

    def after(self, shift: int) -> list[tuple[float, int, float, float]]:
        """The first notes after the gap, key-relative, as the sampler feeds them (to score the join)."""
        after = self._after()
        onset = self._beats()[after][:JOIN_NOTES]
        return [(float(o), int(p) - shift, float(d) / self.spb, float(v) / 127.0)
                for o, p, d, v in zip(onset, self.notes.pitch[after][:JOIN_NOTES],
                                      self.notes.duration[after][:JOIN_NOTES],
                                      self.notes.velocity[after][:JOIN_NOTES])]

    def filled(self, line: Line, *, seed: int) -> GeneratedPiece:
        """The piece with `line`'s notes in the gap: every note outside it kept exactly, a note held
        into the gap cut at its edge, and written notes cut where the kept bars resume."""
        start, end = self.gap
        beats = self._beats()
        before, after = self._before(), self._after()
        keep_duration = self.notes.duration.astype(np.float64).copy()
        held_in = before & (beats + keep_duration / self.spb > start + EDGE)
        keep_duration[held_in] = (start - beats[held_in]) * self.spb
        written = [(o, p, d, v) for o, p, d, v in zip(line.onsets, line.pitches, line.durations, line.velocities)
                   if start - EDGE <= o < end - EDGE]
        kept = before | after
        velocity_level = float(np.mean(self.notes.velocity[kept])) if kept.any() else 80.0
        new_velocity = np.array([v for *_, v in written]) * 127.0
        if len(new_velocity):  # the passage at the level of the music around it, its accents kept
            new_velocity = np.clip(velocity_level + np.clip(new_velocity - new_velocity.mean(), -20, 20), 1, 127)
        seq = NoteSequence.from_notes(
            start=np.concatenate([self.notes.start[kept], [self.plan_start + o * self.spb for o, *_ in written]]),
            pitch=np.concatenate([self.notes.pitch[kept].astype(np.int64),
                                  np.clip([p + line.shift for _, p, _, _ in written], 0, 127).astype(np.int64)]),
            duration=np.concatenate([keep_duration[kept],
                                     [min(d, end - o) * self.spb for o, _, d, _ in written]]),
            velocity=np.concatenate([self.notes.velocity[kept].astype(np.int64),
                                     np.round(new_velocity).astype(np.int64)]),
            tempo_bpm=self.notes.tempo_bpm, time_signature=self.notes.time_signature, program=self.notes.program,
            time_signatures=list(self.notes.time_signatures))
        plan = replace(self.plan, phrases=tuple(
            replace(p, varied=True, copy_until=min(p.copy_until, max(0.0, start - p.start)))
            if p.start < end - EDGE and p.end > start + EDGE else p for p in self.plan.phrases))
        return GeneratedPiece(notes=seq, primer_length=0, primer_end=0.0, seed=seed, plan=plan,
                              plan_start=self.plan_start, key=self.key)
