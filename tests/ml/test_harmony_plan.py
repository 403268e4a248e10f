"""The harmony chain of a style's pieces, and the harmony drawn from it for a piece without chords."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import ml.generation.sampler as sampler
from ml.data.notes import NoteSequence
from ml.data.progressions import harmony_table, piece_spans
from ml.generation.constraints import HarmonyPlan, build_constraints
from ml.generation.form import FormPlan, Phrase
from ml.generation.generator import Generator
from ml.generation.harmony_plan import plan_harmony
from ml.generation.request import GenerationRequest
from ml.model.network import load_model

TONIC, SUBDOMINANT, DOMINANT = [60, 64, 67], [53, 57, 60], [55, 59, 62]


def bits(*pitch_classes: int) -> int:
    return sum(1 << (p % 12) for p in set(pitch_classes))


def chords_piece(chords: Sequence[tuple[float, list[int]]], tonic: int = 0, ends: Sequence[float] = ()) -> NoteSequence:
    """Block chords of the given lengths (beats) at 120 BPM in 4/4, moved up to `tonic`; `ends` marks
    phrase ends (beats)."""
    pitch, step, duration = [], [], []
    at = previous = 0.0
    for beats, chord in chords:
        for k, p in enumerate(chord):
            pitch.append(p + tonic)
            step.append((at - previous) * 0.5 if k == 0 else 0.0)
            duration.append(beats * 0.5)
        previous = at
        at += beats
    return NoteSequence(pitch=np.array(pitch), step=np.array(step), duration=np.array(duration),
                        velocity=np.full(len(pitch), 80), tempo_bpm=120.0,
                        phrase_ends=[e * 0.5 for e in ends])


def test_a_piece_reads_as_half_bar_harmonies_relative_to_its_tonic_with_its_cadences() -> None:
    piece = [(2, TONIC), (2, DOMINANT), (4, TONIC)]
    spans = piece_spans(chords_piece(piece), 0)
    assert spans == [(0, "-", bits(0, 4, 7)), (1, "F1", bits(7, 11, 2)), (0, "F0", bits(0, 4, 7))]
    assert piece_spans(chords_piece(piece, tonic=7), 7) == spans  # in G, the same degrees
    # A span where no note starts holds the harmony before it; a marked phrase end is an inner cadence.
    held = piece_spans(chords_piece([(4, SUBDOMINANT), (2, DOMINANT), (2, TONIC), (4, TONIC)], ends=[6]), 0)
    assert [h for _, _, h in held] == [bits(5, 9, 0), bits(5, 9, 0), bits(7, 11, 2), bits(0, 4, 7), bits(0, 4, 7)]
    assert [c for _, c, _ in held] == ["-", "-", "C1", "C0", "F0"]
    assert [s for s, _, _ in held] == [0, 1, 0, 1, 0]


def test_the_table_counts_what_follows_each_context_backing_off_to_shorter_ones() -> None:
    pieces = [(chords_piece([(2, TONIC), (2, SUBDOMINANT), (2, DOMINANT), (2, TONIC)]), 0) for _ in range(3)]
    pieces.append((chords_piece([(2, TONIC), (2, DOMINANT), (2, DOMINANT), (2, TONIC)]), 0))
    table = harmony_table(pieces)
    assert table[f"1,-,^,{bits(0, 4, 7)}"] == {str(bits(5, 9, 0)): 3, str(bits(7, 11, 2)): 1}
    assert table[f"1,F0,{bits(7, 11, 2)}"] == {str(bits(0, 4, 7)): 4}
    assert sum(table["0,-"].values()) == 4  # the shortest context: every span in the first half of a bar


def test_a_plan_draws_from_the_chain_copies_repeated_phrases_and_holds_the_last_chord() -> None:
    chords = [(2, TONIC), (2, DOMINANT), (2, DOMINANT), (2, TONIC), (2, SUBDOMINANT), (2, DOMINANT), (4, TONIC)]
    pieces = [(chords_piece(chords), 0) for _ in range(4)]
    tables = {"major": harmony_table(pieces)}
    # A A': the second phrase copies its model's first half bar, then closes the piece at beat 12.
    first = Phrase(letter="A", start=0.0, end=8.0, copy_of=None, copy_until=0.0, cadence=False, cadence_at=4.0,
                   final=False)
    second = Phrase(letter="A", start=8.0, end=16.0, copy_of=0, copy_until=2.0, cadence=True, cadence_at=12.0,
                    final=True)
    plan = FormPlan(form="AA", bar_beats=4.0, bars=4, phrases=(first, second))
    tonic, dominant = bits(0, 4, 7), bits(7, 11, 2)
    for seed in range(5):
        spans = plan_harmony(tables, plan, "major", np.random.default_rng(seed))
        assert [s[0] for s in spans] == [0, 2, 4, 6, 8, 10, 12, 14]
        sets = [bits(*np.flatnonzero(v)) for _, _, v in spans]
        assert sets[0] == tonic  # every training piece opens on the tonic
        assert sets[4] == sets[0]  # copied with the notes
        assert sets[5:] == [dominant, tonic, tonic]  # V before the close, I on it, held to the end
    assert plan_harmony({"minor": tables["major"]}, plan, "major", np.random.default_rng(0)) == []


def test_harmony_is_drawn_only_where_nobody_asked_for_chords_and_has_a_switch() -> None:
    table = {"major": {"0,-": {"145": 1}}}
    assert any(isinstance(c, HarmonyPlan) for c in build_constraints(harmony=table))
    assert not any(isinstance(c, HarmonyPlan) for c in build_constraints(frozenset({"harmony"}), harmony=table))
    assert not any(isinstance(c, HarmonyPlan) for c in build_constraints())


def test_the_network_reads_the_drawn_harmony_and_not_without_it(tiny_model_path: Path, style: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    tables = load_model(tiny_model_path).extra["stats"][style]["harmony"]
    assert tables["major"], "a trained model stores its styles' harmony chains"
    seen: list[np.ndarray] = []
    chord_vector = sampler.Batch.chord_vector

    def spy(self: sampler.Batch, line: sampler.Line, onset: float) -> np.ndarray:
        vector = chord_vector(self, line, onset)
        seen.append(vector.copy())
        return vector

    monkeypatch.setattr(sampler.Batch, "chord_vector", spy)
    request = GenerationRequest(style=style, seconds=8, seed=5, variations=2)
    read = {}
    for name, off in (("on", frozenset()), ("off", frozenset({"harmony"}))):
        seen.clear()
        pieces = Generator(tiny_model_path, off=off).generate(request)
        assert all(len(p.notes) for p in pieces)
        read[name] = [v for v in seen]
    assert any(v.any() for v in read["on"]) and not any(v.any() for v in read["off"])
