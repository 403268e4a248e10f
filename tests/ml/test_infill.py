"""Regenerating a passage: the bars asked for are written again, every other note is kept exactly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ml.data.notes import NoteSequence
from ml.generation.form import plan_form, plan_from_dict
from ml.generation.generator import Generator
from ml.generation.infill import Passage, PassageError
from ml.generation.piece import GeneratedPiece
from ml.generation.request import GenerationRequest


def _piece(generator: Generator) -> GeneratedPiece:
    return generator.generate(GenerationRequest(style="alpha", seconds=16, tempo_bpm=120, seed=11))[0]


def _passage(piece: GeneratedPiece, first: int, last: int) -> Passage:
    assert piece.plan is not None
    return Passage(notes=piece.notes, plan=piece.plan, plan_start=piece.plan_start, key=piece.key,
                   first_bar=first, last_bar=last)


def _outside(seq: NoteSequence, start: float, end: float) -> list[tuple[float, int, float, int]]:
    notes = zip(seq.start, seq.pitch, seq.duration, seq.velocity)
    return [(round(float(s), 6), int(p), round(float(d), 6), int(v)) for s, p, d, v in notes
            if s < start - 1e-6 or s >= end - 1e-6]


def test_every_note_outside_the_bars_is_kept_and_the_bars_are_new(generator: Generator) -> None:
    piece = _piece(generator)
    passage = _passage(piece, 3, 4)
    new = generator.regenerate(passage, GenerationRequest(style="alpha", seconds=16, seed=5, variations=3))
    start, end = (piece.plan_start + b * 0.5 for b in passage.gap)  # 120 BPM: half a second a beat
    before = [n for n in _outside(piece.notes, start, end) if n[0] >= end - 1e-6]
    assert [n for n in _outside(new.notes, start, end) if n[0] >= end - 1e-6] == before
    kept_before = [n[:2] + n[3:] for n in _outside(new.notes, start, end) if n[0] < start]
    assert kept_before == [n[:2] + n[3:] for n in _outside(piece.notes, start, end) if n[0] < start]
    inside = (new.notes.start >= start - 1e-6) & (new.notes.start < end - 1e-6)
    assert inside.any()
    assert np.all(new.notes.start[inside] + new.notes.duration[inside] <= end + 1e-6)  # nothing runs on into bar 5
    old_inside = (piece.notes.start >= start - 1e-6) & (piece.notes.start < end - 1e-6)
    assert list(new.notes.pitch[inside]) != list(piece.notes.pitch[old_inside]) or \
        list(new.notes.start[inside]) != list(piece.notes.start[old_inside])


def test_a_note_held_into_the_bars_is_cut_at_their_edge() -> None:
    plan = plan_form("AB", phrase_bars=2, total_bars=4, bar_beats=4.0)
    notes = NoteSequence.from_notes(start=np.array([0.0, 3.0, 8.0, 12.0]), pitch=np.array([60, 62, 64, 65]),
                                    duration=np.array([1.0, 6.0, 1.0, 4.0]), velocity=np.array([80, 81, 82, 83]),
                                    tempo_bpm=60.0)
    passage = Passage(notes=notes, plan=plan, plan_start=0.0, key=(0, "major"), first_bar=2, last_bar=3)
    from ml.generation.sampler import Line

    line = Line(tonic=0, mode="major", shift=0, mode_index=0, primer=None,
                onsets=[4.0, 6.0], pitches=[67, 69], durations=[2.0, 9.0], velocities=[0.6, 0.6])
    filled = passage.filled(line, seed=1).notes
    assert list(filled.pitch) == [60, 62, 67, 69, 65]
    assert filled.duration[1] == pytest.approx(1.0)  # held from beat 3 into bar 2: cut at beat 4
    assert filled.duration[3] == pytest.approx(6.0)  # written to the end of bar 3, not into bar 4
    assert (filled.start[-1], filled.duration[-1], filled.velocity[-1]) == (12.0, 4.0, 83)


@pytest.mark.parametrize(("first", "last", "message"), [
    (0, 2, "outside"), (3, 9, "outside"), (3, 2, "empty range"), (1, 4, "whole piece: use Again"),
])
def test_bars_that_cannot_be_regenerated_say_why(first: int, last: int, message: str) -> None:
    plan = plan_form("AB", phrase_bars=2, total_bars=4, bar_beats=4.0)
    notes = NoteSequence.from_notes(start=np.array([0.0]), pitch=np.array([60]), duration=np.array([1.0]),
                                    velocity=np.array([80]))
    with pytest.raises(PassageError, match=message):
        Passage(notes=notes, plan=plan, plan_start=0.0, key=(0, "major"), first_bar=first, last_bar=last)


def test_the_regenerated_occurrence_of_a_repeated_phrase_is_marked_varied(generator: Generator) -> None:
    piece = generator.generate(GenerationRequest(style="alpha", seconds=16, tempo_bpm=120, seed=3, form="AA",
                                                 phrase_bars=2))[0]
    assert piece.plan is not None and piece.plan.phrases[1].copy_of == 0
    new = generator.regenerate(_passage(piece, 3, 3), GenerationRequest(style="alpha", seed=1))
    assert new.plan is not None
    before = [p["varied"] for p in piece.plan.to_dict()["phrases"]]  # the last A has its own close
    shown = [p["varied"] for p in new.plan.to_dict()["phrases"]]
    assert before[1] is False and shown == [before[0], True, *before[2:]]
    again = plan_from_dict(new.plan.to_dict())  # the stored plan reads back with its marks
    assert [p["varied"] for p in again.to_dict()["phrases"]] == shown


def test_a_melody_under_chords_keeps_its_accompaniment_when_bars_are_regenerated(generator: Generator) -> None:
    request = GenerationRequest(style="alpha", seconds=16, tempo_bpm=120, seed=3, key="C", chords="C F G C",
                                accompany=True)
    piece = generator.generate(request)[0]
    assert piece.accompaniment is not None and len(piece.accompaniment)
    new = generator.regenerate(_passage(piece, 2, 3), replace(request, variations=2))
    assert new.accompaniment is not None
    # The backing follows the same chords over the same bars.
    assert new.accompaniment.end_time == pytest.approx(piece.accompaniment.end_time, abs=0.01)
    assert sorted(set(new.accompaniment.pitch % 12)) == sorted(set(piece.accompaniment.pitch % 12))
    plain = generator.regenerate(_passage(piece, 2, 3), replace(request, accompany=False))
    assert plain.accompaniment is None
