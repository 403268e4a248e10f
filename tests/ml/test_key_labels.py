"""The key labels checked against the keys scores write (`ml.evaluation.key_labels`), on small scores."""

from __future__ import annotations

from music21 import converter, key, stream

from ml.evaluation.key_labels import agrees, check, written_key
from tests.ml.test_notes import BB, C7, DM, C, F, G, _chords


def test_a_named_mode_and_a_bare_signature_are_read_as_written() -> None:
    tune = converter.parse("X:1\nT:t\nM:4/4\nL:1/4\nK:Ador\nA B c d|e d c B|A4|]\n", format="abc")
    assert written_key(tune) == ("named", 9, None)  # A Dorian: its final is A
    one_flat = stream.Score([stream.Part([key.KeySignature(-1)])])
    assert written_key(one_flat) == ("signature", 5, 2)  # F major or D minor
    assert written_key(stream.Score([stream.Part()])) is None
    assert agrees((9, "minor"), ("named", 9, None)) and not agrees((0, "major"), ("named", 9, None))
    assert agrees((2, "minor"), ("signature", 5, 2)) and not agrees((2, "major"), ("signature", 5, 2))


def test_the_close_confirmed_label_agrees_where_the_profile_estimate_reads_the_dominant() -> None:
    # In F under one flat, dwelling on C before closing V7-I: the profile alone says C major.
    in_f = _chords(F, BB, C7, F, DM, C, G, C, DM, G, C, C7, F)
    in_c = _chords(C, F, G, C, DM, G, C, F, C, DM, G)  # in C, a half close: both labels say C
    report = check([(in_f, ("signature", 5, 2)), (in_c, ("signature", 0, 9))])
    assert report == {"signature": {"pieces": 2, "estimate": 0.5, "piece_key": 1.0}}
