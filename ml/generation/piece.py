"""A generated piece: its notes, its form, its key, and the dynamics shaped over it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ml.data.notes import NoteSequence
from ml.generation.form import FormPlan

_DYNAMIC_LEVELS = {"soft": (50, 50), "medium": (80, 80), "loud": (108, 108),
                   "crescendo": (40, 112), "diminuendo": (112, 40)}
# How far the written dynamics of a style's scores move the loudness from phrase to phrase: the
# standard deviation of the mean velocity of 4-bar stretches within a piece, median over its training
# pieces (`python -m ml.evaluation.velocity --phrases`). Only the quartets' scores mark dynamics
# that change the level (p, f, hairpins); the other styles carry the pulse of the bar (under 1).
STYLE_DYNAMICS = {"string-quartet": 14.0}
# How far the model's own velocities may move a note from the chosen level (a pp in a f piece is
# about 45 velocity units below it).
CONTRAST = 45.0

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


def phrase_dynamics(plan: FormPlan, onsets: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Dynamic markings as a score of the style would have them, in velocity units per note.

    Each phrase gets a level drawn around the piece's (standard deviation `spread`, at most twice
    that either way; the levels average to the piece's, so it may open p in a mezzo-forte piece): a
    phrase repeated straight away is an echo with a level of its own, while one that returns after
    other music (ABA's second A) comes back at its first level; a section in another key is a little
    softer. Within a phrase the line swells towards its last third and falls back by its cadence (a
    hairpin of a height drawn like the levels), and the last bar of each phrase moves to the next
    phrase's level. With no spread, nothing moves.
    """
    if spread <= 0 or not len(onsets):
        return np.zeros(len(onsets))
    levels: list[float] = []
    by_letter: dict[str, float] = {}
    for i, phrase in enumerate(plan.phrases):
        echo = i > 0 and plan.phrases[i - 1].letter == phrase.letter
        if phrase.letter in by_letter and not echo:
            levels.append(by_letter[phrase.letter])
            continue
        drawn = float(np.clip(rng.normal(0.0, spread), -2 * spread, 2 * spread))
        levels.append(drawn - (spread / 2 if phrase.key else 0.0))
        by_letter.setdefault(phrase.letter, levels[-1])
    # The chosen dynamic is the piece's level on average (it may open softer or louder).
    levels = [level - float(np.mean(levels)) for level in levels]
    offsets = np.zeros(len(onsets))
    for i, phrase in enumerate(plan.phrases):
        inside = (onsets >= phrase.start - 1e-9) & (onsets < phrase.end - 1e-9)
        following = levels[i + 1] if i + 1 < len(levels) else levels[i]
        into_last_bar = np.clip((onsets[inside] - (phrase.end - plan.bar_beats)) / plan.bar_beats, 0.0, 1.0)
        # The swell: 0 at the phrase's start, its height two thirds of the way, 0 again at the cadence.
        where = (onsets[inside] - phrase.start) / max(phrase.cadence_at - phrase.start, 1e-9)
        arch = np.clip(np.where(where < 2 / 3, where * 1.5, (1 - where) * 3), 0.0, 1.0)
        height = min(abs(float(rng.normal(0.0, spread))), 2 * spread)
        offsets[inside] = levels[i] + (following - levels[i]) * into_last_bar + height * arch
    return offsets


def apply_dynamics(velocity: np.ndarray, onset_beats: np.ndarray, dynamics: str) -> np.ndarray:
    """Shape model velocities (0..127) to a dynamic level or a crescendo/diminuendo line.

    The model's own contrast (its accents on the beat, its louder and softer passages as the scores'
    dynamics taught it) is kept as deviations from its mean, up to CONTRAST either way; the level
    comes from the user's choice.
    """
    if not len(velocity):
        return velocity
    begin, end = _DYNAMIC_LEVELS[dynamics]
    span = float(onset_beats.max()) or 1.0
    curve = begin + (end - begin) * (onset_beats / span)
    contrast = np.clip(velocity - velocity.mean(), -CONTRAST, CONTRAST)
    return np.clip(curve + contrast, 1, 127)
