"""The Django-free pipeline's outputs for the page: chord changes and the piano roll."""

from __future__ import annotations

import numpy as np
import pytest

from ml.data.notes import NoteSequence
from ml.generation.generator import Generator
from ml.generation.request import GenerationRequest
from ml.pipeline import PipelineError, Stopped, chord_changes, compose, notes_from_piano_roll, piano_roll


def test_chord_changes_name_each_new_chord_once() -> None:
    # C major for a second (held), then G7 for a second, then a lone melody note.
    start = [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 2.0]
    pitch = [48, 64, 67, 72, 43, 59, 62, 65, 72]
    duration = [1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    notes = NoteSequence.from_notes(np.array(start), np.array(pitch), np.array(duration), np.full(9, 80))

    assert chord_changes(notes) == [[0.0, "C major triad"], [1.0, "G dominant seventh chord"], [2.0, None]]


def test_a_melody_has_no_chords() -> None:
    notes = NoteSequence.from_notes(np.arange(4.0), np.array([60, 62, 64, 65]), np.ones(4), np.full(4, 80))
    assert chord_changes(notes) == []


def test_the_piano_roll_gives_back_the_notes_it_was_made_from() -> None:
    notes = NoteSequence.from_notes(np.array([0.0, 0.5, 0.5]), np.array([60, 64, 67]), np.array([0.5, 1.0, 1.0]),
                                    np.array([70, 80, 90]))
    again = notes_from_piano_roll(piano_roll(notes), tempo_bpm=90, time_signature=(3, 4), program=40)
    assert piano_roll(again) == piano_roll(notes)
    assert (again.tempo_bpm, again.time_signature, again.program) == (90, (3, 4), 40)


def test_a_callback_that_stops_the_run_reaches_the_caller_as_raised_not_as_a_failure(generator: Generator) -> None:
    class Cancelled(Stopped):
        pass

    calls: list[float] = []

    def progress(fraction: float) -> None:
        calls.append(fraction)
        if fraction > 0.3:
            raise Cancelled

    with pytest.raises(Cancelled):
        compose(generator, GenerationRequest(style="alpha", seconds=8, seed=1), progress=progress)
    assert calls and calls[-1] > 0.3 and max(calls) < 1.0  # it stopped there, before the end

    def broken(fraction: float) -> None:
        raise RuntimeError("a bug in the caller")

    with pytest.raises(PipelineError, match="could not write") as failure:
        compose(generator, GenerationRequest(style="alpha", seconds=8, seed=1), progress=broken)
    assert "RuntimeError: a bug in the caller" in failure.value.detail
