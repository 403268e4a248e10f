"""Chord progressions: reading them, following them, and the accompaniment under a single line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.evaluation.harmony import chord_follow_rate, read_chord, reads_as
from ml.generation.accompaniment import accompaniment
from ml.generation.chords import ChordError, chord_spans, parse_chord, parse_progression, progression_key
from ml.generation.generator import Generator
from ml.generation.piece import GeneratedPiece
from ml.generation.request import GenerationRequest, RequestError

PRETRAINED = Path(__file__).resolve().parents[2] / "ml" / "pretrained" / "default.keras"


def test_chord_names_are_read_as_pitch_class_sets_with_their_bass() -> None:
    assert parse_chord("Bb7", None).tones == frozenset({10, 2, 5, 8})
    assert parse_chord("F#m7b5", None).tones == frozenset({6, 9, 0, 4})
    slash = parse_chord("C/E", None)
    assert (slash.root, slash.bass, slash.tones) == (0, 4, frozenset({0, 4, 7}))
    assert parse_chord("Ebm", None).tones == frozenset({3, 6, 10})


def test_a_chord_is_named_by_its_root_third_and_fifth() -> None:
    assert parse_chord("G7", None).triad == frozenset({7, 11, 2})  # the seventh adds colour
    assert parse_chord("Bdim7", None).triad == frozenset({11, 2, 5})
    assert parse_chord("Csus4", None).triad == frozenset({0, 5, 7})  # the fourth stands for the third
    assert parse_chord("Am", None).triad == frozenset({9, 0, 4})


def test_roman_numerals_are_read_in_the_key_and_need_one() -> None:
    five = parse_chord("V7", 2)  # in D: A C# E G
    assert five.tones == frozenset({9, 1, 4, 7}) and five.root == 9
    assert parse_chord("vi", 2).tones == frozenset({11, 2, 6})
    assert parse_chord("ii6", 0).bass == 5  # first inversion: F in the bass
    with pytest.raises(ValueError, match="needs a key"):
        parse_chord("IV", None)


def test_a_progression_is_one_chord_per_bar_two_in_a_barred_bar_or_per_phrase() -> None:
    plain = parse_progression("C Am F G7", tonic=None)
    assert [len(bar) for bar in plain.bars] == [1, 1, 1, 1]
    barred = parse_progression("| C G | Am | F G7 |", tonic=None)
    assert [[c.symbol for c in bar] for bar in barred.bars] == [["C", "G"], ["Am"], ["F", "G7"]]
    phrases = parse_progression("A: I IV V I; B: vi ii V I", tonic=7)
    assert set(phrases.by_letter) == {"A", "B"} and phrases.by_letter["B"][0][0].root == 4  # E minor in G


def test_every_bad_symbol_is_named_with_its_bar() -> None:
    with pytest.raises(ChordError) as caught:
        parse_progression("C Hx F Zm7", tonic=None)
    message = str(caught.value)
    assert "'Hx' (bar 2)" in message and "'Zm7' (bar 4)" in message
    with pytest.raises(ChordError, match="at most two per bar"):
        parse_progression("| C G Am |", tonic=None)


def test_the_request_reports_bad_chords_and_numerals_without_a_key_on_the_chords_field() -> None:
    with pytest.raises(RequestError) as caught:
        GenerationRequest.from_dict({"style": "chorale", "chords": "C Q7"})
    assert list(caught.value.errors) == ["chords"] and "'Q7'" in caught.value.errors["chords"][0]
    with pytest.raises(RequestError) as caught:
        GenerationRequest.from_dict({"style": "chorale", "chords": "I vi IV V"})
    assert "needs a key" in caught.value.errors["chords"][0]
    assert GenerationRequest.from_dict({"style": "chorale", "chords": "I vi IV V", "key": "D"}).progression


def test_chord_names_without_a_key_suggest_their_key() -> None:
    assert progression_key(parse_progression("D Bm G A7 D", tonic=None)) == (2, "major")
    assert progression_key(parse_progression("Am Dm E7 Am", tonic=None)) == (9, "minor")


def test_the_measure_reads_a_triad_with_passing_notes_as_its_chord() -> None:
    weights = np.zeros(12)
    weights[[0, 4, 7]] = [2.0, 1.0, 1.0]
    weights[[2, 5]] = [0.25, 0.25]  # passing D and F
    reading = read_chord(weights)
    assert reading is not None and reading.root == 0 and reading.triad == frozenset({0, 4, 7})
    minor = np.zeros(12)
    minor[[9, 0, 4]] = 1.0
    reading = read_chord(minor)
    assert reading is not None and reading.root == 9


def _spans(generator: Generator, request: GenerationRequest, piece: GeneratedPiece
           ) -> list[tuple[float, float, frozenset[int], int]]:
    assert piece.plan is not None
    spb = 60.0 / piece.notes.tempo_bpm
    return [(s.start * spb + piece.plan_start, s.end * spb + piece.plan_start, s.chord.tones, s.chord.root)
            for s in generator.chord_spans(request, piece.plan) or []]


def test_a_chorale_follows_the_progression_and_does_not_without_the_constraint() -> None:
    generator = Generator(PRETRAINED)
    request = GenerationRequest(style="chorale", seconds=16, seed=1, key="D", chords="I vi IV V7", variations=2)
    on = [chord_follow_rate(p.notes, _spans(generator, request, p)) or 0.0 for p in generator.generate(request)]
    generator.off = frozenset({"chords"})
    off = [chord_follow_rate(p.notes, _spans(generator, request, p)) or 0.0 for p in generator.generate(request)]
    assert np.mean(on) >= 0.9
    assert np.mean(off) < np.mean(on) - 0.3


def test_renaissance_voices_sound_each_chord_whole_where_it_changes_and_read_as_it() -> None:
    # Long notes held across a change of chord used to leave bars of a root and a fifth (F and C
    # read as C sus4 as well as F) or of one held note.
    generator = Generator(PRETRAINED)
    request = GenerationRequest(style="renaissance", seconds=20, seed=7, key="E", mode="minor", chords="i iv V i",
                                variations=2)
    pieces = generator.generate(request)
    for piece in pieces:
        seq = piece.notes
        spb = 60.0 / seq.tempo_bpm
        end = seq.start + seq.duration
        last_onset = float(seq.start.max())
        for span in generator.chord_spans(request, piece.plan) or []:  # type: ignore[arg-type]
            at = piece.plan_start + span.start * spb
            if at > last_onset + 1e-6:
                break  # after the final chord
            sounding = {int(p) % 12 for p in seq.pitch[(seq.start <= at + 1e-6) & (end > at + 1e-6)]}
            assert span.chord.triad <= sounding, (span.chord.symbol, span.start)
    assert np.mean([chord_follow_rate(p.notes, _spans(generator, request, p)) or 0.0 for p in pieces]) >= 0.9


def test_a_fiddle_tune_with_chords_gets_an_accompaniment_on_the_chords_roots() -> None:
    generator = Generator(PRETRAINED)
    request = GenerationRequest(style="fiddle", seconds=12, seed=2, chords="G C D G", tempo_bpm=100)
    piece = generator.generate(request)[0]
    assert piece.accompaniment is not None and len(piece.parts) == 2
    backing = piece.accompaniment
    spb = 60.0 / backing.tempo_bpm
    for span in generator.chord_spans(request, piece.plan) or []:  # type: ignore[arg-type]
        at = np.isclose(backing.start, piece.plan_start + span.start * spb)
        assert at.any() and int(backing.pitch[at].min()) % 12 == span.chord.bass
    assert backing.program != piece.notes.program or backing.program == 24
    assert not GenerationRequest(style="fiddle", chords="G C", accompany=False).accompany
    alone = generator.generate(GenerationRequest(style="fiddle", seconds=12, seed=2, chords="G C D G",
                                                 tempo_bpm=100, accompany=False))[0]
    assert alone.accompaniment is None


def test_the_accompaniment_keeps_below_the_melody_and_plays_each_chord() -> None:
    progression = parse_progression("| C G | Am F |", tonic=None)
    spans = chord_spans(progression, phrase_letters=[("A", 0.0, 8.0)], bar_beats=4.0, total_beats=8.0)
    backing = accompaniment(spans, time_signature=(4, 4), tempo_bpm=120, melody_low=67)
    assert backing.pitch.max() < 67
    for span in spans:
        start, end = span.start * 0.5, span.end * 0.5
        assert reads_as(backing, start, end, span.chord.tones, span.chord.root)
