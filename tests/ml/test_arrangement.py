"""Voices on their instruments: the tracks, programs, names and meta events of the MIDI file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from ml.audio.arrangement import (
    ACCOMPANIMENT_NAME,
    STYLE_PROGRAMS,
    Arrangement,
    InstrumentError,
    arrange,
    key_signature_number,
    parse_instruments,
)
from ml.data.notes import NoteSequence, notes_from_midi
from ml.generation.request import GenerationRequest, RequestError


def chorale_phrase() -> NoteSequence:
    """Four bars of four-part harmony in D minor (bass, tenor, alto, soprano per chord), 4/4 at 60."""
    chords = [(38, 53, 57, 62), (43, 55, 58, 62), (45, 52, 57, 61), (38, 50, 57, 62)]
    start = np.repeat(np.arange(4) * 4.0, 4)
    return NoteSequence.from_notes(start=start, pitch=np.array(chords).ravel(), duration=np.full(16, 4.0),
                                   velocity=np.full(16, 80), tempo_bpm=60, time_signature=(4, 4))


def melody() -> NoteSequence:
    return NoteSequence.from_notes(start=np.arange(8) * 0.5, pitch=np.array([62, 64, 65, 67, 69, 67, 65, 64]),
                                   duration=np.full(8, 0.5), velocity=np.full(8, 90), tempo_bpm=120,
                                   time_signature=(6, 8))


def read_back(arrangement: Arrangement) -> pretty_midi.PrettyMIDI:
    buffer = io.BytesIO()
    arrangement.to_midi().write(buffer)
    return pretty_midi.PrettyMIDI(io.BytesIO(buffer.getvalue()))


def test_a_chorale_is_four_named_voices_each_on_its_own_track() -> None:
    midi = read_back(arrange(chorale_phrase(), style="chorale", key=(2, "minor")))
    assert [(i.name, i.program) for i in midi.instruments] == [
        ("Soprano", 52), ("Alto", 52), ("Tenor", 52), ("Bass", 52)]
    # Every note is in exactly one voice, and the voices do not cross: each track holds its own line.
    assert [[n.pitch for n in i.notes] for i in midi.instruments] == [
        [62, 62, 61, 62], [57, 58, 57, 57], [53, 55, 52, 50], [38, 43, 45, 38]]
    assert [(k.key_number, k.time) for k in midi.key_signature_changes] == [(14, 0.0)]  # D minor
    assert [(t.numerator, t.denominator) for t in midi.time_signature_changes] == [(4, 4)]
    assert midi.get_tempo_changes()[1][0] == pytest.approx(60)


def test_a_quartet_plays_on_violins_viola_and_cello_spread_across_the_stereo_field() -> None:
    midi = read_back(arrange(chorale_phrase(), style="string-quartet", key=(5, "major")))
    assert [(i.name, i.program) for i in midi.instruments] == [
        ("Violin I", 40), ("Violin II", 40), ("Viola", 41), ("Cello", 42)]
    pans = [next(c.value for c in i.control_changes if c.number == 10) for i in midi.instruments]
    assert pans == sorted(pans) and pans[0] < 64 < pans[-1]
    reverb = {next(c.value for c in i.control_changes if c.number == 91) for i in midi.instruments}
    assert reverb and min(reverb) > 0  # the room is in the file, for any player


@pytest.mark.parametrize("style", sorted(STYLE_PROGRAMS))
def test_every_style_has_its_own_instruments_by_default(style: str) -> None:
    notes = melody() if len(STYLE_PROGRAMS[style]) == 1 else chorale_phrase()
    midi = read_back(arrange(notes, style=style))
    assert tuple(i.program for i in midi.instruments) == STYLE_PROGRAMS[style]
    assert sum(len(i.notes) for i in midi.instruments) == len(notes)


def test_a_single_line_and_its_accompaniment_are_two_tracks() -> None:
    backing = NoteSequence.from_notes(start=np.array([0.0, 0.0, 2.0]), pitch=np.array([38, 50, 45]),
                                      duration=np.full(3, 2.0), velocity=np.full(3, 60), program=24)
    midi = read_back(arrange(melody(), style="fiddle", key=(2, "dorian"), accompaniment=backing))
    assert [(i.name, i.program, len(i.notes)) for i in midi.instruments] == [
        ("Melody", 110, 8), (ACCOMPANIMENT_NAME, 24, 3)]
    assert midi.key_signature_changes[0].key_number == 0  # D dorian is written with C major's signature


def test_one_instrument_or_one_per_voice_replaces_the_styles_own() -> None:
    assert [i.program for i in read_back(arrange(chorale_phrase(), style="chorale", instrument=19)).instruments] \
        == [19, 19, 19, 19]
    chosen = parse_instruments("Flute, oboe, Clarinet, bassoon")
    assert [i.program for i in read_back(arrange(chorale_phrase(), style="chorale", instruments=chosen)).instruments] \
        == [73, 68, 71, 70]


def test_music21_and_pretty_midi_read_the_same_notes_key_metre_and_instruments(tmp_path: Path) -> None:
    from music21 import converter, instrument, key, meter, stream

    path = tmp_path / "quartet.mid"
    read_back(arrange(chorale_phrase(), style="string-quartet", key=(2, "minor"))).write(str(path))
    score = converter.parse(str(path))
    assert isinstance(score, stream.Score)
    parts = score.parts
    assert len(parts) == 4
    assert [p.partName for p in parts] == ["Violin I", "Violin II", "Viola", "Cello"]
    played = [p.recurse().getElementsByClass(instrument.Instrument).last() for p in parts]
    assert [type(i) for i in played] == [instrument.Violin, instrument.Violin, instrument.Viola,
                                         instrument.Violoncello]
    assert [i.midiProgram for i in played if i is not None] == [40, 40, 41, 42]
    signature = score.recurse().getElementsByClass(key.KeySignature).first()
    assert signature is not None and signature.sharps == -1  # D minor: one flat
    metre = score.recurse().getElementsByClass(meter.TimeSignature).first()
    assert metre is not None and metre.ratioString == "4/4"
    pitches = sorted(p.midi for n in score.recurse().notes for p in n.pitches)
    assert pitches == sorted(notes_from_midi(path).pitch.tolist()) == sorted(chorale_phrase().pitch.tolist())


@pytest.mark.parametrize(("text", "programs"), [
    ("Violin, Violin, Viola, Cello", (40, 40, 41, 42)),
    ("40 40 41 42", (40, 40, 41, 42)),
    ("choir aahs", (52,)),
    ("Acoustic Guitar (nylon); 0", (24, 0)),
])
def test_instrument_lists_read_names_and_numbers(text: str, programs: tuple[int, ...]) -> None:
    assert parse_instruments(text) == programs


@pytest.mark.parametrize(("text", "message"), [
    ("", "at least one"), ("Violin, Kazoo", "'Kazoo' is not a General MIDI instrument"),
    ("128", "between 0 and 127"),
])
def test_bad_instrument_lists_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InstrumentError, match=message):
        parse_instruments(text)


def test_a_request_names_one_instrument_per_voice_or_one_for_all() -> None:
    assert GenerationRequest(style="string-quartet", instruments="Violin, Violin, Viola, Cello").programs == (
        40, 40, 41, 42)
    assert GenerationRequest(style="chorale", instruments="Church Organ").programs == (19,)
    with pytest.raises(RequestError, match="4 voices: name 4 instruments") as caught:
        GenerationRequest(style="chorale", instruments="Violin, Viola")
    assert list(caught.value.errors) == ["instruments"]
    with pytest.raises(RequestError, match="Kazoo"):
        GenerationRequest.from_dict({"style": "folk", "instruments": "Kazoo"})


def test_key_signatures_follow_the_mode() -> None:
    assert key_signature_number(9, "minor") == 21
    assert key_signature_number(7, "mixolydian") == 0  # G mixolydian: no sharps
    assert key_signature_number(10, "major") == 10


def test_a_line_above_the_cellos_range_goes_to_the_viola() -> None:
    # A chord with the cello high, then a line alone just above it: nearest to the cello's last note,
    # but above where a cello plays well, so the viola takes it (and no voice crosses another).
    start = np.array([0.0] * 4 + [1.0 + 0.5 * k for k in range(4)])
    pitch = np.array([70, 80, 90, 97, 75, 76, 77, 78])
    seq = NoteSequence.from_notes(start=start, pitch=pitch, duration=np.array([0.9] * 4 + [0.5] * 4),
                                  velocity=np.full(8, 80), tempo_bpm=60)
    parts = {p.name: p.notes.pitch.tolist() for p in arrange(seq, style="string-quartet").parts}
    assert parts["Cello"] == [70]
    assert parts["Viola"] == [80, 75, 76, 77, 78]
    # Without the ranges (a style this code does not know) the nearest voice, the lowest, would take it.
    unknown = {p.name: p.notes.pitch.tolist() for p in arrange(seq, style="consort").parts}
    assert unknown["Voice 1"] == [70, 75, 76, 77, 78]
