"""Passing notes: a voice's beat-to-beat third filled with an eighth, as the style's pieces do."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml.data.notes import NoteSequence
from ml.generation import constraints, voices
from ml.generation.constraints import PassingNotes, build_constraints
from ml.generation.figuration import fill_rates, passing_notes
from ml.generation.generator import Generator
from ml.generation.infill import Passage
from ml.generation.piece import GeneratedPiece
from ml.generation.request import GenerationRequest
from ml.model.config import write_model_extra

BEAT = 0.5  # seconds at 120 BPM


def voices_piece(lines: Sequence[Sequence[int]], *, time_signature: tuple[int, int] = (4, 4)) -> NoteSequence:
    """Voices in quarter notes, one pitch per beat (from the lowest voice up), a last note of two beats."""
    start, pitch, duration = [], [], []
    for line in lines:
        for k, p in enumerate(line):
            start.append(k * BEAT)
            pitch.append(p)
            duration.append(BEAT * (2 if k == len(line) - 1 else 1))
    return NoteSequence.from_notes(np.array(start), np.array(pitch), np.array(duration),
                                   np.full(len(pitch), 80), tempo_bpm=120.0, time_signature=time_signature)


def notes_of(seq: NoteSequence) -> list[tuple[float, int, float]]:
    return [(round(float(s) / BEAT, 3), int(p), round(float(d) / BEAT, 3))
            for s, p, d in zip(seq.start, seq.pitch, seq.duration)]


def test_a_third_from_beat_to_beat_is_passed_through_by_step_in_the_key() -> None:
    # Bass C3 E3 (a third), upper voice G3 G3: the bass passes through D3.
    seq = voices_piece([[48, 52], [55, 55]])
    out = passing_notes(seq, 0, "major", [1.0, 1.0], np.random.default_rng(0))
    assert notes_of(out) == [(0.0, 48, 0.5), (0.0, 55, 1.0), (0.5, 50, 0.5), (1.0, 52, 2.0), (1.0, 55, 2.0)]
    assert int(out.velocity[2]) < int(out.velocity[0])  # off the beat, softer
    assert notes_of(passing_notes(seq, 0, "major", [0.0, 0.0], np.random.default_rng(0))) == notes_of(seq)
    # E3 to G3 in C major passes through F3; in A minor E to G# through F#, and G down to E through F.
    assert 53 in passing_notes(voices_piece([[52, 55], [60, 60]]), 0, "major", [1, 1], np.random.default_rng(0)).pitch
    up = passing_notes(voices_piece([[52, 56], [64, 64]]), 9, "minor", [1, 1], np.random.default_rng(0))
    down = passing_notes(voices_piece([[55, 52], [60, 60]]), 9, "minor", [1, 1], np.random.default_rng(0))
    assert 54 in up.pitch and 53 in down.pitch
    # Not in a metre whose beat is a dotted quarter, and not over a step or a leap.
    assert len(passing_notes(voices_piece([[48, 52], [55, 55]], time_signature=(6, 8)), 0, "major", [1, 1],
                             np.random.default_rng(0))) == 4
    assert len(passing_notes(voices_piece([[48, 50], [55, 60]]), 0, "major", [1, 1], np.random.default_rng(0))) == 4


def test_no_passing_note_makes_parallel_fifths_or_octaves() -> None:
    # Bass A2 -> C3 through B2, upper F#3 -> G3: B2-F#3 then C3-G3 are fifths in parallel. Skipped.
    parallel = voices_piece([[45, 48], [54, 55]])
    assert len(passing_notes(parallel, 0, "major", [1.0, 1.0], np.random.default_rng(0))) == 4
    # Upper F3 -> G3: B2-F3 is a tritone, nothing parallel. Filled.
    assert len(passing_notes(voices_piece([[45, 48], [53, 55]]), 0, "major", [1.0, 1.0], np.random.default_rng(0))) == 5
    # Bass G3 -> B3 through A3 under a held Ab4 (a minor ninth): skipped; under G4, filled.
    assert len(passing_notes(voices_piece([[55, 59], [68, 68]]), 0, "major", [1.0, 0.0], np.random.default_rng(0))) == 4
    assert len(passing_notes(voices_piece([[55, 59], [67, 67]]), 0, "major", [1.0, 0.0], np.random.default_rng(0))) == 5
    # Two voices passing at once in parallel octaves: only one of them gets its eighth.
    octaves = voices_piece([[48, 52], [60, 64]])
    assert len(passing_notes(octaves, 0, "major", [1.0, 1.0], np.random.default_rng(0))) == 5


def test_rates_count_filled_thirds_against_open_ones_per_voice() -> None:
    open_third = voices_piece([[48, 52], [55, 55]])
    filled = passing_notes(open_third, 0, "major", [1.0, 1.0], np.random.default_rng(0))
    assert fill_rates([open_third], 2) == [0.0, 0.0]
    assert fill_rates([filled], 2) == [1.0, 0.0]
    assert fill_rates([open_third, filled, filled, filled], 2) == [0.75, 0.0]
    # A piece whose voice already fills its share is left as it is.
    assert len(passing_notes(filled, 0, "major", [0.5, 0.0], np.random.default_rng(0))) == len(filled)


def test_the_constraint_figures_a_voiced_style_after_its_primer_and_has_a_switch() -> None:
    assert any(isinstance(c, PassingNotes) for c in build_constraints(passing=[0.5] * 4))
    assert not any(isinstance(c, PassingNotes) for c in build_constraints(frozenset({"passing"}), passing=[0.5] * 4))
    assert not any(isinstance(c, PassingNotes) for c in build_constraints())
    seq = voices_piece([[48, 52, 55, 52], [55, 55, 59, 60], [64, 67, 62, 65], [72, 72, 71, 72]])
    piece = GeneratedPiece(notes=seq, primer_length=0, primer_end=0.0, seed=3, key=(0, "major"))
    rule = PassingNotes([1.0, 1.0, 1.0, 1.0])
    figured = rule.figure(piece, "chorale")
    assert len(figured.notes) > len(seq)
    assert rule.figure(piece, "chorale").notes.pitch.tolist() == figured.notes.pitch.tolist()  # by its seed
    assert len(rule.figure(piece, "fiddle").notes) == len(seq)  # a single line has no voices to fill
    # The notes of a primer (before primer_end) are the user's: left alone.
    kept = rule.figure(GeneratedPiece(notes=seq, primer_length=8, primer_end=2 * BEAT, seed=3), "chorale")
    before = [n for n in notes_of(kept.notes) if n[0] < 2]
    assert before == [n for n in notes_of(seq) if n[0] < 2]
    assert len(kept.notes) > len(seq)


def test_a_model_file_with_rates_figures_what_it_writes_whole_and_each_passage_it_writes_again(
        tiny_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The rates are read from the model file's extras, without loading the network.
    path = tmp_path / "voiced.keras"
    shutil.copy(tiny_model_path, path)
    write_model_extra(path, "passing", {"alpha": [1.0, 1.0, 1.0, 1.0]})
    assert Generator(path).passing("alpha") == [1.0] * 4 and Generator(path).passing("beta") is None
    assert Generator(tiny_model_path).passing("alpha") is None
    # The tiny model's style given four voices and those rates (its own network, already compiled).
    monkeypatch.setitem(voices.VOICE_RANGES, "alpha", voices.VOICE_RANGES["chorale"])
    monkeypatch.setattr(Generator, "passing", lambda self, style: [1.0] * 4 if style == "alpha" else None)
    calls: list[tuple[list[float], tuple[float, float] | None]] = []

    def spy(seq: NoteSequence, tonic: int, mode: str, rates: Sequence[float], rng: np.random.Generator,
            **options: Any) -> NoteSequence:
        calls.append((list(rates), options.get("within")))
        return passing_notes(seq, tonic, mode, rates, rng, **options)

    monkeypatch.setattr(constraints, "passing_notes", spy)
    request = GenerationRequest(style="alpha", seconds=8, tempo_bpm=120, seed=4, variations=2)
    pieces = Generator(tiny_model_path).generate(request)
    assert calls == [([1.0] * 4, (0.0, math.inf))] * 2
    calls.clear()
    assert Generator(tiny_model_path, off=frozenset({"passing"})).generate(request) and calls == []
    piece = pieces[0]
    assert piece.plan is not None
    passage = Passage(notes=piece.notes, plan=piece.plan, plan_start=piece.plan_start, key=piece.key,
                      first_bar=2, last_bar=3)
    Generator(tiny_model_path).regenerate(passage, GenerationRequest(style="alpha", seed=1, variations=1))
    bar = passage.plan.bar_beats * passage.spb
    assert calls == [([1.0] * 4, (piece.plan_start + bar, piece.plan_start + 3 * bar))]
