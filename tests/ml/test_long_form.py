"""The long-form measures, on hand-written notes and plans (no corpus, no model)."""

from __future__ import annotations

import numpy as np

from ml.data.notes import NoteSequence
from ml.evaluation.long_form import leading_note, most_heard, named_is_lane, phrase_bars


def _seq(notes: list[tuple[float, int, float]], tempo: float = 60.0) -> NoteSequence:
    """(onset beats, pitch, duration beats) at 60 BPM, so beats are seconds."""
    onset, pitch, duration = (np.array(column, dtype=np.float64) for column in zip(*notes))
    return NoteSequence.from_notes(start=onset, pitch=pitch.astype(np.int16), duration=duration,
                                   velocity=np.full(len(notes), 80, np.int16), tempo_bpm=tempo,
                                   time_signature=(4, 4))


def _form(letters: list[str], bars: int = 1, sections: list[int] | None = None, name: str | None = None) -> dict:
    return {"form": name if name is not None else "".join(letters), "bar_beats": 4.0,
            "phrases": [{"letter": letter, "start": 4.0 * bars * i, "end": 4.0 * bars * (i + 1),
                         "section": (sections or [0] * len(letters))[i]} for i, letter in enumerate(letters)]}


def test_a_phrase_heard_four_times_note_for_note_is_counted_and_a_changed_ending_is_not_the_same() -> None:
    tune = [(0.0, 60, 1.0), (1.0, 62, 1.0), (2.0, 64, 2.0)]
    changed = [(0.0, 60, 1.0), (1.0, 62, 1.0), (2.0, 67, 2.0)]
    notes = [(4.0 * i + o, p, d) for i, phrase in enumerate([tune, tune, tune, changed, tune]) for o, p, d in phrase]
    assert most_heard(_seq(notes), _form(list("AAAAA"))) == 4
    assert most_heard(_seq(notes[:9] + [(12.0 + o, p, d) for o, p, d in changed]), _form(list("AAAA"))) == 3


def test_the_named_form_must_be_what_the_lane_draws() -> None:
    assert named_is_lane(_form(list("AABA")))
    assert not named_is_lane(_form(list("AABA"), name="AAB"))  # a chorale called AAB that plays A A B A
    long = _form(["A1", "A1", "A2", "B1", "B1", "A1", "A2"], sections=[0, 0, 0, 1, 1, 2, 2], name="ABA")
    assert named_is_lane(long) and not named_is_lane({**long, "form": "AB"})
    assert phrase_bars(_form(list("AB"), bars=4)) == [4.0, 4.0]


def test_the_leading_note_is_heard_in_the_bar_before_the_last() -> None:
    # D minor: C sharp (61) in bar 3, the final D in bar 4.
    with_it = _seq([(0.0, 62, 4.0), (4.0, 65, 4.0), (8.0, 64, 2.0), (10.0, 61, 2.0), (12.0, 62, 4.0)])
    without = _seq([(0.0, 62, 4.0), (4.0, 65, 4.0), (8.0, 64, 2.0), (10.0, 60, 2.0), (12.0, 62, 4.0)])
    assert leading_note(with_it, 2, 4.0) and not leading_note(without, 2, 4.0)


def test_velocity_measures_read_the_level_of_phrases_and_the_pulse() -> None:
    from ml.evaluation.velocity import phrase_spread, pulse

    # 12 bars of 4/4 quarter notes: loud bars 1-4 and 9-12, soft 5-8; downbeats 10 louder.
    notes = [(float(b), 60, 1.0) for b in range(48)]
    seq = _seq(notes)
    seq.velocity[:] = [(100 if (b // 16) != 1 else 50) + (10 if b % 4 == 0 else 0) for b in range(48)]
    assert phrase_spread(seq) is not None and 20 < phrase_spread(seq) < 30  # type: ignore[operator]
    eighths = _seq([(b * 0.5, 60, 0.5) for b in range(32)])
    eighths.velocity[:] = [90 if b % 8 == 0 else 70 for b in range(32)]
    assert pulse(eighths) == 20.0
