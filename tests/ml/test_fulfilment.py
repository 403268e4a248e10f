"""The report of what was asked and what the piece did."""

from __future__ import annotations

import numpy as np

from ml.data.notes import NoteSequence
from ml.evaluation.fulfilment import ending_check, fulfilment, key_check, metre_check


def _seq(pitches: list[int], beats: list[float], *, tempo: float = 60.0,
         time_signature: tuple[int, int] = (4, 4)) -> NoteSequence:
    start = np.cumsum([0.0, *beats[:-1]]) * 60.0 / tempo
    return NoteSequence.from_notes(start=start, pitch=np.array(pitches), duration=np.array(beats) * 60.0 / tempo,
                                   velocity=np.full(len(pitches), 80), tempo_bpm=tempo, time_signature=time_signature)


SCALE_TUNE = _seq([62, 66, 69, 74, 73, 71, 69, 67, 66, 64, 62, 61, 62, 66, 69, 62], [2, .5, .5, 1] * 4)


def test_the_key_is_met_when_it_is_heard_and_not_when_another_is() -> None:
    assert key_check(SCALE_TUNE, 2, "major").met is True
    wrong = key_check(SCALE_TUNE, 5, "major")
    assert wrong.met is False and "D major" in wrong.did


def test_the_metre_is_met_when_bars_are_accented_on_their_first_beat() -> None:
    assert metre_check(SCALE_TUNE).met is True
    shifted = _seq([62] + [66, 69, 74, 73] * 4, [1.0] + [.5, .5, .5, 2.5] * 4)  # long notes off the beat
    assert metre_check(shifted).met is False


def test_a_report_names_each_control_and_says_plainly_what_was_not_met() -> None:
    settings = {"key": "F", "mode": "major", "pitch_low": 60, "pitch_high": 70, "form": "AB"}
    form = {"bars": 4, "bar_beats": 4.0, "phrases": [{"letter": "A", "varied": False}, {"letter": "B", "varied": True}]}
    checks = {c.control: c for c in fulfilment(parts=[SCALE_TUNE], settings=settings, form=form,
                                               requested_seconds=16.0)}
    assert checks["key"].met is False
    assert checks["range"].met is False and "notes outside" in checks["range"].did
    assert checks["form"].did.startswith("AB′") and checks["form"].met is True
    assert checks["length"].met is True


def test_the_ending_asked_for_is_judged_on_the_close_as_heard() -> None:
    five_one = _seq([64, 62, 69, 62], [1, 1, 1, 1])  # ... A then D: a line's 5-1 in D
    three_one = _seq([64, 62, 66, 62], [1, 1, 1, 1])  # F sharp then D: 3-1
    on_a = _seq([62, 66, 64, 69], [1, 1, 1, 1])  # ends on A, the dominant
    assert ending_check(five_one, 2, "perfect").met is True
    assert ending_check(three_one, 2, "perfect").met is False and ending_check(three_one, 2, "tonic").met is True
    open_close = ending_check(on_a, 2, "open")
    assert open_close.met is None and "dominant" in open_close.did  # reported, not judged
    assert ending_check(on_a, 2, "tonic").met is False and ending_check(five_one, 2, "tonic").met is False
    after_g_sharp = ending_check(_seq([64, 68, 62], [1, 1, 1]), 2, "tonic")  # spelled in D: G sharp, not A flat
    assert after_g_sharp.did == "closes on the tonic, after G#" and after_g_sharp.met is True
    # In the report only when an ending was asked for, and not under requested chords, which decide it.
    report = {c.control for c in fulfilment(parts=[five_one], settings={"ending": "perfect"}, form=None, tonic=2)}
    assert "ending" in report
    for settings in ({"ending": "style"}, {"ending": "perfect", "chords": "D A D"}):
        assert "ending" not in {c.control for c in fulfilment(parts=[five_one], settings=settings, form=None, tonic=2)}
