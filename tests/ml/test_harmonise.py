"""Harmonising a melody, and the voices of a texture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.data.notes import NoteSequence, estimate_key
from ml.generation.generator import Generator
from ml.generation.harmonise import MAX_MELODY_BARS, MelodyError, melody_line, melody_notes, melody_plan
from ml.generation.request import GenerationRequest
from ml.generation.voices import assign_voices, voice_names

PRETRAINED = Path(__file__).resolve().parents[2] / "ml" / "pretrained" / "default.keras"
# A folk tune in D at 90 BPM, quarter notes, each half closing on a held note.
TUNE = [66, 66, 67, 69, 69, 67, 66, 64, 62, 62, 64, 66, 66, 64, 64, 66, 66, 67, 69, 69, 67, 66, 64, 62, 62, 64, 66,
        64, 62, 62]
BEATS = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.5, .5, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1.5, .5, 2]


def tune() -> NoteSequence:
    spb = 60 / 90
    start = np.cumsum([0.0, *BEATS[:-1]]) * spb
    return NoteSequence.from_notes(start=start, pitch=np.array(TUNE), duration=np.array(BEATS) * spb,
                                   velocity=np.full(len(TUNE), 80), tempo_bpm=90.0)


def test_the_phrases_end_at_the_held_notes_and_the_last_note() -> None:
    notes, pickup = melody_notes(melody_line(tune()), 4.0)
    plan = melody_plan(notes, 4.0)
    assert pickup == 0.0
    assert [p.cadence_at for p in plan.phrases] == [14.0, 30.0]  # the two held Es and Ds
    assert plan.bars == 8 and plan.phrases[-1].final


def test_a_held_note_in_the_last_bar_does_not_make_an_empty_phrase() -> None:
    notes = [(0.0, 62, 1.0, 0.6), (1.0, 64, 1.0, 0.6), (2.0, 66, 1.0, 0.6), (3.0, 67, 1.0, 0.6),
             (4.0, 69, 2.0, 0.6), (6.0, 67, 0.5, 0.6), (6.5, 66, 1.5, 0.6)]
    plan = melody_plan(notes, 4.0)
    assert all(p.end > p.start for p in plan.phrases) and plan.phrases[-1].end == 8.0


def test_a_melody_with_no_notes_or_only_chords_or_too_long_is_refused() -> None:
    empty = NoteSequence(pitch=np.zeros(0, np.int16), step=np.zeros(0), duration=np.zeros(0),
                         velocity=np.zeros(0, np.int16))
    with pytest.raises(MelodyError, match="no notes"):
        melody_line(empty)
    chords = NoteSequence.from_notes(start=np.repeat([0.0, 1.0], 3), pitch=np.array([60, 64, 67, 62, 65, 69]),
                                     duration=np.ones(6), velocity=np.full(6, 80))
    with pytest.raises(MelodyError, match="only chords"):
        melody_line(chords)
    long_notes = [(float(i), 60, 1.0, 0.6) for i in range(4 * (MAX_MELODY_BARS + 1))]
    with pytest.raises(MelodyError, match="at most"):
        melody_plan(long_notes, 4.0)


def test_the_top_line_of_a_texture_is_the_melody() -> None:
    texture = NoteSequence.from_notes(start=np.array([0.0, 0.0, 1.0, 1.0, 2.0]), pitch=np.array([48, 72, 50, 74, 76]),
                                      duration=np.array([2.0, 1.0, 1.0, 1.0, 1.0]), velocity=np.full(5, 80))
    assert list(melody_line(texture).pitch) == [72, 74, 76]


def test_a_soprano_held_over_a_moving_alto_is_still_the_melody() -> None:
    # A half note over two quarters of the alto, then a legato line whose notes overlap a little.
    texture = NoteSequence.from_notes(start=np.array([0.0, 0.0, 1.0, 2.0, 2.0, 2.95]),
                                      pitch=np.array([72, 64, 62, 74, 65, 71]),
                                      duration=np.array([2.0, 1.0, 1.0, 1.05, 1.0, 1.0]), velocity=np.full(6, 80))
    line = melody_line(texture)
    assert list(line.pitch) == [72, 74, 71]
    assert list(np.round(line.duration, 6)) == [2.0, 0.95, 1.0]
    # A file of one note at each onset is a line, every note of it the tune's, however long it rings.
    pedalled = NoteSequence.from_notes(start=np.array([0.0, 1.0, 2.0]), pitch=np.array([72, 67, 64]),
                                       duration=np.array([3.0, 2.0, 1.0]), velocity=np.full(3, 80))
    assert list(melody_line(pedalled).pitch) == [72, 67, 64]


def test_each_melody_note_ends_where_the_next_begins() -> None:
    notes, _ = melody_notes(melody_line(tune()), 4.0)  # 90 BPM: beats from seconds are inexact
    for (onset, _, duration, _), (following, _, _, _) in zip(notes, notes[1:]):
        assert abs(onset + duration - following) < 1e-9


@pytest.fixture(scope="module")
def generator() -> Generator:
    """The shipped model, loaded once for the module (every constraint on)."""
    return Generator(PRETRAINED)


@pytest.fixture(scope="module")
def harmonised(generator: Generator) -> dict[str, list[NoteSequence]]:
    out = {}
    for name, off in (("on", ()), ("melody off", ("melody",))):
        generator.off = frozenset(off)
        out[name] = [p.notes for p in generator.harmonise(tune(), GenerationRequest(style="chorale", seed=1,
                                                                                     variations=2))]
    generator.off = frozenset()
    return out


def _melody_onsets(seq: NoteSequence) -> list[tuple[bool, bool]]:
    """Per note of the tune: (it is in the piece, it is the highest note at its onset)."""
    spb = 60 / 90
    found = []
    for at, pitch in zip(np.cumsum([0.0, *BEATS[:-1]]) * spb, TUNE):
        here = np.isclose(seq.start, at, atol=1e-3)
        found.append((bool(np.any(here & (seq.pitch == pitch))), bool(here.any() and seq.pitch[here].max() == pitch)))
    return found


def test_the_melody_is_kept_note_for_note_as_the_top_voice(harmonised: dict[str, list[NoteSequence]]) -> None:
    for seq in harmonised["on"]:
        found = _melody_onsets(seq)
        assert all(kept for kept, _ in found)
        assert sum(top for _, top in found) >= len(TUNE) - 2
        assert len(seq) >= 3 * len(TUNE)  # voices under it, not the bare tune
    assert not all(kept for kept, _ in _melody_onsets(harmonised["melody off"][0]))


def test_every_note_gets_one_voice_and_voices_seldom_cross(harmonised: dict[str, list[NoteSequence]]) -> None:
    seq = harmonised["on"][0]
    voices = assign_voices(seq, 4)
    assert voices.min() >= 0 and voices.max() <= 3 and len(voices) == len(seq)
    end = seq.start + seq.duration
    crossed = []
    for at in np.unique(seq.start):
        sounding = np.flatnonzero((seq.start <= at + 1e-6) & (end > at + 1e-6))
        by_voice = sorted((int(voices[i]), int(seq.pitch[i])) for i in sounding)
        if len(sounding) <= 4:  # more notes than voices are doublings: they may sit anywhere
            crossed.append(any(a[1] > b[1] for a, b in zip(by_voice, by_voice[1:]) if a[0] != b[0]))
    # The assignment is greedy, onset by onset: a held note keeps the voice it started in, so a
    # texture can leave no crossing-free choice later. Known limit: at most one onset in ten.
    assert sum(crossed) <= 0.1 * len(crossed)


def test_voices_follow_the_nearest_line_and_double_when_too_many_sound() -> None:
    seq = NoteSequence.from_notes(start=np.array([0.0, 0.0, 1.0, 2.0, 2.0, 2.0]),
                                  pitch=np.array([48, 72, 50, 47, 60, 74]),
                                  duration=np.array([1.0, 2.0, 1.0, 1.0, 1.0, 1.0]), velocity=np.full(6, 80))
    voices = assign_voices(seq, 2)
    assert list(voices) == [0, 1, 0, 0, 0, 1]  # 60 has no free voice at beat 2: it doubles the nearer line
    assert voice_names("chorale", 4) == ("Bass", "Tenor", "Alto", "Soprano")
    assert voice_names("chorale", 3) == ("Voice 1", "Voice 2", "Voice 3")


# The four singers' ranges (MIDI), from the bass up, as harmony books give them.
SINGERS = ((40, 62), (48, 67), (55, 74))


def test_the_voices_under_the_melody_keep_their_ranges_and_move_in_no_parallels(
        harmonised: dict[str, list[NoteSequence]]) -> None:
    for seq in harmonised["on"]:
        end = seq.start + seq.duration
        chords = [sorted(int(p) for p in seq.pitch[(seq.start <= at + 1e-6) & (end > at + 1e-6)])
                  for at in np.unique(np.round(seq.start, 6))]
        four = [c for c in chords if len(c) == 4]
        assert len(four) >= 0.8 * len(chords)
        assert all(low <= p <= high for c in four for p, (low, high) in zip(c, SINGERS))
        for before, after in zip(chords, chords[1:]):
            if len(before) != 4 or len(after) != 4:
                continue
            for low in range(4):
                for high in range(low + 1, 4):
                    was, now = before[high] - before[low], after[high] - after[low]
                    both_move = (after[low] - before[low]) * (after[high] - before[high]) > 0
                    assert not (both_move and was % 12 in (0, 7) and now % 12 == was % 12), (before, after)


def test_a_harmonisation_closes_as_asked(generator: Generator) -> None:
    for ending in ("perfect", "tonic"):
        for seq in (p.notes for p in generator.harmonise(tune(), GenerationRequest(style="chorale", seed=3,
                                                                                   ending=ending))):
            start, end = np.round(seq.start, 4), np.round(seq.start + seq.duration, 4)
            bass = [int(seq.pitch[(start <= at) & (end > at)].min()) % 12 for at in np.unique(start)[-2:]]
            assert bass[-1] == 2  # D, the tune's tonic, in the bass
            assert ending != "perfect" or bass[0] == 9  # after A, the dominant


def test_a_melody_is_harmonised_in_the_key_it_closes_in(generator: Generator) -> None:
    # In F, dwelling on C: the profile estimate alone reads C major; the melody closes on F, a key its
    # notes fit nearly as well, and is harmonised in F (`piece_key`).
    pitches = [60, 64, 60, 64, 67, 67, 62, 65, 65, 64, 70, 60, 60, 72, 69, 65]
    beats = [1.0] * 15 + [2.0]
    melody = NoteSequence.from_notes(start=np.cumsum([0.0, *beats[:-1]]) * 0.6, pitch=np.array(pitches),
                                     duration=np.array(beats) * 0.6, velocity=np.full(16, 80), tempo_bpm=100.0)
    assert estimate_key(melody) == (0, "major")
    piece = generator.harmonise(melody, GenerationRequest(style="chorale", seed=2, variations=1))[0]
    assert piece.key == (5, "major")
    lowest = [int(piece.notes.pitch[np.isclose(piece.notes.start, piece.notes.start.max())].min()) % 12]
    assert lowest == [5]  # and closes on its tonic
