"""The Django-free pipeline's outputs for the page: chord changes and the piano roll."""

from __future__ import annotations

import numpy as np

from ml.data.notes import NoteSequence
from ml.pipeline import chord_changes, notes_from_piano_roll, piano_roll


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
