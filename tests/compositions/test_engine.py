from __future__ import annotations

import numpy as np
import pytest

from compositions import engine
from ml.notes import NoteSequence


def test_chord_changes_name_each_new_chord_once() -> None:
    # C major for a second (held), then G7 for a second, then a lone melody note.
    start = [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 2.0]
    pitch = [48, 64, 67, 72, 43, 59, 62, 65, 72]
    duration = [1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    notes = NoteSequence.from_notes(np.array(start), np.array(pitch), np.array(duration), np.full(9, 80))

    assert engine.chord_changes(notes) == [[0.0, "C major triad"], [1.0, "G dominant seventh chord"], [2.0, None]]


def test_a_melody_has_no_chords() -> None:
    notes = NoteSequence.from_notes(np.arange(4.0), np.array([60, 62, 64, 65]), np.ones(4), np.full(4, 80))
    assert engine.chord_changes(notes) == []


@pytest.mark.parametrize(("text", "expected"), [("3/4", (3, 4)), (" 6 / 8 ", (6, 8)), ("12/8", (12, 8))])
def test_time_signatures_parse(text: str, expected: tuple[int, int]) -> None:
    assert engine.parse_time_signature(text) == expected


@pytest.mark.parametrize("text", ["", "4", "4-4", "three/four", "3/4/4"])
def test_malformed_time_signatures_are_explained(text: str) -> None:
    with pytest.raises(ValueError, match="is not like 4/4, 3/4 or 6/8"):
        engine.parse_time_signature(text)


def test_stored_params_round_trip_through_a_request(style: str) -> None:
    request = engine.request_from_params({"style": style, "notes": 64, "time_signature": "5/4", "pitch_low": 40})
    stored = engine.stored_params(request)
    assert (stored["time_signature"], stored["notes"], stored["seconds"], stored["pitch_low"]) == ("5/4", 64, None, 40)
    assert engine.request_from_params(stored) == request  # type: ignore[arg-type]
