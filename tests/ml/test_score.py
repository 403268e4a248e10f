"""The score: MusicXML written by music21 from the voices, engraved as SVG by Verovio."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ml.audio.arrangement import STYLE_PROGRAMS, arrange
from ml.audio.score import MOST_NOTES, ScoreError, engrave, engrave_apart
from ml.data.notes import NoteSequence


def satb() -> NoteSequence:
    """Four bars of four-part harmony in D minor, a chord on each beat of 4/4 (quarter note = 60)."""
    chords = [(38, 53, 57, 62), (43, 55, 58, 62), (45, 52, 57, 61), (38, 50, 57, 62)] * 4
    start = np.repeat(np.arange(16, dtype=np.float64), 4)
    return NoteSequence.from_notes(start=start, pitch=np.array(chords).ravel(), duration=np.full(64, 1.0),
                                   velocity=np.full(64, 80), tempo_bpm=60, time_signature=(4, 4))


def melody(bar_phase: float = 0.0) -> NoteSequence:
    """A jig tune: 6/8 at 120 quarters per minute, eighths and a dotted quarter, after a pickup if asked."""
    pitch = np.array([62, 64, 66, 67, 69, 71, 69, 67, 66, 64, 62, 62])
    step = np.array([0.5] * 10 + [1.5, 1.5])
    start = np.concatenate([[0.0], np.cumsum(step)[:-1]]) * 0.5
    seq = NoteSequence.from_notes(start=start, pitch=pitch, duration=step * 0.5, velocity=np.full(12, 90),
                                  tempo_bpm=120, time_signature=(6, 8))
    seq.bar_phase = bar_phase
    return seq


def svg_counts(svg: str) -> tuple[int, int]:
    """(bars, staves per bar) of a Verovio engraving."""
    bars = len(re.findall(r'<g [^>]*class="measure', svg))
    staves = len(re.findall(r'<g [^>]*class="staff', svg))
    return bars, staves // max(bars, 1)


def test_a_four_bar_satb_chorale_is_written_voice_by_voice() -> None:
    from music21 import clef, converter, stream

    score = engrave(arrange(satb(), style="chorale", key=(2, "minor")))
    assert (score.bars, score.staves) == (4, 4)
    assert svg_counts(score.svg) == (4, 4)
    parsed = converter.parseData(score.musicxml, format="musicxml")
    assert isinstance(parsed, stream.Score)
    parts = list(parsed.parts)
    assert [p.partName for p in parts] == ["Soprano", "Alto", "Tenor", "Bass"]
    clefs = [type(p.recurse().getElementsByClass(clef.Clef).first()) for p in parts]
    assert clefs == [clef.TrebleClef, clef.TrebleClef, clef.Treble8vbClef, clef.BassClef]
    # Voice by voice, the pitches as a musician spells them in D minor (C#, the leading note, not Db).
    lines = [[n.pitch.nameWithOctave for n in p.recurse().notes] for p in parts]
    assert lines[0][:4] == ["D4", "D4", "C#4", "D4"]
    assert lines[1][:4] == ["A3", "B-3", "A3", "A3"]
    assert lines[2][:4] == ["F3", "G3", "E3", "D3"]
    assert lines[3][:4] == ["D2", "G2", "A2", "D2"]
    assert all(len(line) == 16 for line in lines)
    assert all(n.quarterLength == 1.0 for p in parts for n in p.recurse().notes)
    signature = parsed.recurse().getElementsByClass("KeySignature").first()
    metre = parsed.recurse().getElementsByClass("TimeSignature").first()
    assert signature is not None and signature.sharps == -1
    assert metre is not None and metre.ratioString == "4/4"
    assert score.bar_times == [0.0, 4.0, 8.0, 12.0]


def test_a_musicxml_round_trip_through_music21_keeps_the_notes() -> None:
    from music21 import converter

    piece = satb()
    parsed = converter.parseData(engrave(arrange(piece, style="string-quartet", key=(2, "minor"))).musicxml,
                                 format="musicxml")
    heard = sorted((float(n.getOffsetInHierarchy(parsed)), p.midi) for n in parsed.recurse().notes
                   for p in n.pitches)
    assert heard == sorted(zip(piece.start.tolist(), piece.pitch.tolist()))


@pytest.mark.parametrize("style", sorted(STYLE_PROGRAMS))
def test_every_style_has_a_staff_per_voice_and_its_bars(style: str) -> None:
    single = len(STYLE_PROGRAMS[style]) == 1
    score = engrave(arrange(melody() if single else satb(), style=style, key=(2, "major" if single else "minor")))
    assert score.staves == (1 if single else 4)
    assert svg_counts(score.svg) == ((3, 1) if single else (4, 4))
    assert "keySig" in score.svg and "meterSig" in score.svg


def test_a_pickup_is_bar_zero_and_the_bars_start_after_it() -> None:
    from music21 import converter, stream

    score = engrave(arrange(melody(bar_phase=2.5), style="fiddle", key=(2, "major")))  # one eighth of pickup
    parsed = converter.parseData(score.musicxml, format="musicxml")
    assert isinstance(parsed, stream.Score)
    measures = list(parsed.parts[0].getElementsByClass(stream.Measure))
    assert measures[0].number == 0
    assert score.bar_times[:3] == [0.0, 0.25, 1.75]  # the pickup, then bars of 1.5 s


def test_odd_note_values_and_crowded_chords_still_make_a_score() -> None:
    # A user's file: quintuplets and notes off any grid, and eight notes at once in a quartet.
    start = np.concatenate([np.arange(10) * 0.2 + 0.013, np.full(8, 2.5)])
    pitch = np.concatenate([np.arange(60, 70), np.arange(40, 88, 6)])
    seq = NoteSequence.from_notes(start=start, pitch=pitch, duration=np.full(18, 0.17), velocity=np.full(18, 70),
                                  tempo_bpm=60, time_signature=(4, 4))
    score = engrave(arrange(seq, style="string-quartet"))
    assert score.staves == 4 and score.bars == 1 and "<svg" in score.svg
    assert len(re.findall(r'<g [^>]*class="note', score.svg)) >= 18


def test_no_score_for_an_empty_or_enormous_piece_says_why() -> None:
    empty = NoteSequence.from_notes(start=np.zeros(0), pitch=np.zeros(0, dtype=int), duration=np.zeros(0),
                                    velocity=np.zeros(0, dtype=int))
    with pytest.raises(ScoreError, match="no notes"):
        engrave(arrange(empty, style="folk"))
    n = MOST_NOTES + 1
    huge = NoteSequence.from_notes(start=np.arange(n) * 0.1, pitch=np.full(n, 60), duration=np.full(n, 0.1),
                                   velocity=np.full(n, 80))
    with pytest.raises(ScoreError, match="up to"):
        engrave(arrange(huge, style="folk"))


def test_engraving_apart_gives_the_same_score_and_keeps_to_its_time_limit() -> None:
    arrangement = arrange(satb(), style="chorale", key=(2, "minor"))
    apart = engrave_apart(arrangement, timeout=60)
    assert (apart.bars, apart.staves, apart.bar_times) == (4, 4, [0.0, 4.0, 8.0, 12.0])
    assert svg_counts(apart.svg) == (4, 4)
    with pytest.raises(ScoreError, match="longer than"):
        engrave_apart(arrangement, timeout=0.01)
