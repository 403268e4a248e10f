from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.data.notes import (
    MidiError,
    NoteSequence,
    chord_labels,
    close_kind,
    estimate_key,
    notes_from_midi,
    notes_to_midi,
    parse_key,
    piece_key,
    scale_pitch_classes,
)
from tests.ml.conftest import write_midi


def test_midi_notes_have_known_steps_durations_and_chord_steps_of_zero(tmp_path: Path) -> None:
    # A C major chord at 0, then two melody notes half a second apart.
    path = write_midi(tmp_path / "a.mid", [(60, 0.0, 1.0), (64, 0.0, 1.0), (67, 0.0, 1.0),
                                           (72, 1.0, 1.25), (74, 1.5, 2.5)], tempo=90, time_signature=(3, 4))
    seq = notes_from_midi(path)
    assert seq.pitch.tolist() == [60, 64, 67, 72, 74]
    np.testing.assert_allclose(seq.step, [0, 0, 0, 1.0, 0.5], atol=1e-3)
    np.testing.assert_allclose(seq.duration, [1, 1, 1, 0.25, 1.0], atol=5e-3)  # tick rounding
    assert seq.tempo_bpm == pytest.approx(90, rel=1e-4)
    assert seq.time_signature == (3, 4)
    step_beats, duration_beats = seq.to_beats()
    # At 90 BPM one second is 1.5 beats.
    np.testing.assert_allclose(step_beats, [0, 0, 0, 1.5, 0.75], atol=1e-3)
    np.testing.assert_allclose(duration_beats, [1.5, 1.5, 1.5, 0.375, 1.5], atol=5e-3)


def test_notes_survive_a_midi_round_trip_with_tempo_and_time_signature(tmp_path: Path) -> None:
    seq = NoteSequence.from_notes(start=np.array([0.0, 0.5, 0.5, 1.25]), pitch=np.array([60, 67, 64, 62]),
                                  duration=np.array([0.5, 0.5, 0.5, 0.75]), velocity=np.array([70, 80, 90, 100]),
                                  tempo_bpm=100.0, time_signature=(6, 8), program=40)
    path = tmp_path / "round.mid"
    notes_to_midi(seq).write(str(path))
    back = notes_from_midi(path)
    assert back.pitch.tolist() == [60, 64, 67, 62]  # sorted by onset, then pitch
    np.testing.assert_allclose(back.step, seq.step, atol=2e-3)
    np.testing.assert_allclose(back.duration, seq.duration, atol=2e-3)
    assert back.velocity.tolist() == [70, 90, 80, 100]
    assert back.tempo_bpm == pytest.approx(100, abs=0.01)
    assert back.time_signature == (6, 8)
    assert back.program == 40


@pytest.mark.parametrize("content, message", [
    (b"hello, not a midi file", "not a MIDI"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x05\x01", "corrupt"),
])
def test_bad_midi_bytes_raise_a_clear_error(content: bytes, message: str) -> None:
    with pytest.raises(MidiError, match=message):
        notes_from_midi(content)


def test_drums_only_and_empty_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MidiError, match="only drums"):
        notes_from_midi(write_midi(tmp_path / "d.mid", [(36, 0, 0.5)], drums=True))
    with pytest.raises(MidiError, match="no notes"):
        notes_from_midi(write_midi(tmp_path / "e.mid", []))


def test_key_estimate_finds_g_major_and_a_minor() -> None:
    g_major = [67, 69, 71, 72, 74, 76, 78, 79, 74, 71, 67]
    seq = NoteSequence.from_notes(np.arange(len(g_major)) * 0.5, np.array(g_major), np.full(len(g_major), 0.5),
                                  np.full(len(g_major), 80))
    assert estimate_key(seq) == (7, "major")
    a_minor = [57, 60, 64, 57, 59, 60, 62, 64, 65, 64, 62, 60, 59, 57, 56, 57]
    seq = NoteSequence.from_notes(np.arange(len(a_minor)) * 0.5, np.array(a_minor), np.full(len(a_minor), 0.5),
                                  np.full(len(a_minor), 80))
    assert estimate_key(seq) == (9, "minor")


def test_chord_labels_name_what_sounds_together() -> None:
    seq = NoteSequence.from_notes(start=np.array([0, 0, 0, 1.0, 2.0, 2.0, 2.0]),
                                  pitch=np.array([60, 64, 67, 72, 62, 65, 69]),
                                  duration=np.array([1, 1, 1, 0.5, 1, 1, 1.0]), velocity=np.full(7, 80))
    labels = chord_labels(seq)
    assert labels[0] == "C major triad"
    assert labels[3] is None  # a lone note is no chord
    assert labels[4] == "D minor triad"


def test_key_names_and_scales() -> None:
    assert parse_key("Bb") == 10 and parse_key("f#") == 6 and parse_key("C") == 0
    assert scale_pitch_classes(2, "major") == {2, 4, 6, 7, 9, 11, 1}
    with pytest.raises(ValueError, match="Unknown key"):
        parse_key("H")


def test_keys_are_named_with_the_signature_of_fewer_accidentals() -> None:
    from ml.data.notes import key_name

    assert [key_name(t, "major") for t in (1, 6, 8, 10)] == ["Db major", "F# major", "Ab major", "Bb major"]
    assert [key_name(t, "minor") for t in (1, 3, 8, 10)] == ["C# minor", "Eb minor", "G# minor", "Bb minor"]
    assert key_name(1, "dorian") == "C# dorian" and key_name(10, "mixolydian") == "Bb mixolydian"


def test_chords_are_spelled_in_their_key() -> None:
    from ml.data.notes import chord_name, spell_pitch_class

    # The scale's own letters, the leading note of minor raised, chromatic degrees as musicians write them.
    assert [spell_pitch_class(pc, 11, "minor") for pc in (11, 1, 2, 4, 6, 7, 9, 10)] == [
        "B", "C#", "D", "E", "F#", "G", "A", "A#"]
    assert [spell_pitch_class(pc, 5, "major") for pc in (10, 3, 8, 11)] == ["Bb", "Eb", "Ab", "B"]
    # B minor's tonic triad and A major's dominant, where pitch classes alone gave Cb and Fb.
    assert chord_name((2, 6, 11), 11, (11, "minor")) == "B minor triad"
    assert chord_name((4, 8, 11), 4, (9, "major")) == "E major triad"
    assert chord_name((3, 6, 9, 11), 11, (9, "major")) == "B dominant seventh chord"  # V/V in A
    # In a flat key, Bb and Eb, never A# and D#.
    assert chord_name((2, 5, 10), 10, (5, "major")) == "Bb major triad"
    assert chord_name((3, 7, 10), 3, (10, "major")) == "Eb major triad"
    assert chord_name((2, 6, 10), 10, (11, "minor")) == "D augmented triad"  # III+ of harmonic B minor


def _chords(*bars: tuple[int, ...]) -> NoteSequence:
    """One chord a beat (a half second at 120), the lowest pitch its bass."""
    rows = [(beat * 0.5, pitch) for beat, chord in enumerate(bars) for pitch in chord]
    return NoteSequence.from_notes(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                                   np.full(len(rows), 0.5), np.full(len(rows), 80), tempo_bpm=120.0)


@pytest.mark.parametrize(("notes", "kind"), [
    (((48, 52, 55), (43, 50, 55, 59), (43, 50, 55, 59), (48, 52, 55)), "perfect"),  # V, held, then I
    (((48, 52, 55), (41, 53, 57, 60), (48, 52, 55, 60)), "tonic"),  # IV-I, the plagal close
    (((48, 52, 55), (50, 53, 57), (43, 50, 55, 59)), "open"),  # ii-V, a half close
    (((64,), (62,), (60,)), "perfect"),  # a line: 3-2-1
    (((64,), (62,), (60,), (60,)), "tonic"),  # the tonic repeated: its approach is the tonic
    (((67,), (64,), (60,)), "tonic"),  # 5-3-1: the third is no tone of V
    (((60,), (59,), (55,)), "open"),
])
def test_a_close_is_read_from_the_bass_against_the_tonic(notes: tuple[tuple[int, ...], ...], kind: str) -> None:
    assert close_kind(_chords(*notes), 0) == kind
    assert close_kind(_chords(*(tuple(p + 2 for p in chord) for chord in notes)), 2) == kind  # in D
    assert close_kind(_chords(*notes), 5) == "open"  # F is not where any of them ends


def test_a_held_bass_is_the_bass_of_the_chords_above_it() -> None:
    # The dominant held under a 6-4 and a 5-3 above it, then the tonic: still V-I.
    rows = [(0.0, 43, 1.0), (0.0, 60, 0.5), (0.0, 64, 0.5), (0.5, 59, 0.5), (0.5, 62, 0.5), (1.0, 48, 0.5),
            (1.0, 60, 0.5)]
    seq = NoteSequence.from_notes(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                                  np.array([r[2] for r in rows]), np.full(len(rows), 80), tempo_bpm=120.0)
    assert close_kind(seq, 0) == "perfect"
    assert close_kind(NoteSequence.from_notes(np.zeros(0), np.zeros(0, int), np.zeros(0), np.zeros(0, int)), 0) is None


# Chords of four voices, the lowest the bass: F major's I, IV, V7, ii, and C major's I and V.
F, BB, C7, DM = (41, 57, 60, 65), (46, 58, 62, 65), (48, 58, 60, 64), (50, 57, 62, 65)
C, G = (48, 55, 60, 64), (43, 55, 59, 62)


def test_a_piece_is_in_the_key_it_closes_in_where_its_notes_fit_that_key_nearly_as_well() -> None:
    # In F, a phrase in F, then one dwelling in C, its dominant, then home: V7-I in F. The profile
    # estimate reads C major (C, G and E sound most); the close says F.
    seq = _chords(F, BB, C7, F, DM, C, G, C, DM, G, C, C7, F)
    assert estimate_key(seq) == (0, "major")
    assert piece_key(seq) == (5, "major")
    assert close_kind(seq, piece_key(seq)[0]) == "perfect"


def test_a_close_elsewhere_keeps_the_key_the_notes_fit() -> None:
    # In C, closing on V (a half close): G major fits far worse, so the piece stays in C.
    half = _chords(C, F, G, C, DM, G, C, F, C, DM, G)
    assert piece_key(half) == estimate_key(half) == (0, "major")
    # A tune in A minor closing on its tonic: both read A minor; a piece with no notes: C major, as ever.
    a_minor = [57, 60, 64, 57, 59, 60, 62, 64, 65, 64, 62, 60, 59, 57, 56, 57]
    seq = NoteSequence.from_notes(np.arange(len(a_minor)) * 0.5, np.array(a_minor), np.full(len(a_minor), 0.5),
                                  np.full(len(a_minor), 80))
    assert piece_key(seq) == estimate_key(seq) == (9, "minor")
    empty = NoteSequence.from_notes(np.zeros(0), np.zeros(0, int), np.zeros(0), np.zeros(0, int))
    assert piece_key(empty) == estimate_key(empty) == (0, "major")
