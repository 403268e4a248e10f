"""A generated piece: its notes, its form, its key, and the dynamics shaped over it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ml.data.notes import NoteSequence
from ml.generation.form import FormPlan

_DYNAMIC_LEVELS = {"soft": (50, 50), "medium": (80, 80), "loud": (108, 108),
                   "crescendo": (40, 112), "diminuendo": (112, 40)}

@dataclass
class GeneratedPiece:
    notes: NoteSequence
    primer_length: int  # index of the first generated note
    primer_end: float  # seconds where the continuation starts
    seed: int  # the seed that reproduces this piece (its variation's own stream)
    plan: FormPlan | None = None  # the form the continuation follows
    plan_start: float = 0.0  # seconds where the plan's first bar starts
    key: tuple[int, str] = (0, "major")  # the key it was written in (tonic pitch class, mode)
    accompaniment: NoteSequence | None = None  # bass and chords on their own track, under a single line

    def renotated(self, time_signature: tuple[int, int], factor: float) -> GeneratedPiece:
        """The same sounds notated with `factor` times longer beats (1/factor of the note values)."""
        def renote(seq: NoteSequence) -> NoteSequence:
            return replace(seq, tempo_bpm=seq.tempo_bpm / factor, time_signature=time_signature,
                           tempo_changes=[], time_signatures=[], bar_phase=seq.bar_phase / factor)

        notes = renote(self.notes)
        backing = renote(self.accompaniment) if self.accompaniment is not None else None
        plan = self.plan
        if plan is not None:
            plan = replace(plan, bar_beats=plan.bar_beats / factor, phrases=tuple(
                replace(p, start=p.start / factor, end=p.end / factor, copy_until=p.copy_until / factor,
                        cadence_at=p.cadence_at / factor) for p in plan.phrases))
        return replace(self, notes=notes, plan=plan, accompaniment=backing)

    @property
    def parts(self) -> list[NoteSequence]:
        """The piece's tracks: its notes, and the accompaniment where it has one."""
        return [self.notes] + ([self.accompaniment] if self.accompaniment is not None and len(self.accompaniment)
                               else [])

    def form(self) -> dict[str, Any] | None:
        """The plan with each phrase's start and end in seconds, as the site shows it."""
        if self.plan is None:
            return None
        spb = 60.0 / self.notes.tempo_bpm
        data = self.plan.to_dict()
        for phrase in data["phrases"]:
            phrase["start_s"] = round(self.plan_start + float(phrase["start"]) * spb, 3)
            phrase["end_s"] = round(self.plan_start + float(phrase["end"]) * spb, 3)
        return data


def apply_dynamics(velocity: np.ndarray, onset_beats: np.ndarray, dynamics: str) -> np.ndarray:
    """Shape model velocities (0..127) to a dynamic level or a crescendo/diminuendo line.

    The model's own note-to-note accents are kept as deviations from its mean; the level comes
    from the user's choice.
    """
    if not len(velocity):
        return velocity
    begin, end = _DYNAMIC_LEVELS[dynamics]
    span = float(onset_beats.max()) or 1.0
    curve = begin + (end - begin) * (onset_beats / span)
    accents = np.clip(velocity - velocity.mean(), -20, 20)
    return np.clip(curve + accents, 1, 127)
