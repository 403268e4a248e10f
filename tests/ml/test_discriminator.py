"""The classifier two-sample test: its features on music whose statistics are known, and its
verdicts on pieces that differ and pieces that do not."""

from __future__ import annotations

import numpy as np
import pytest

from ml.data.notes import NoteSequence
from ml.evaluation.discriminator import (
    FEATURE_NAMES,
    discriminator_report,
    piece_features,
    two_sample_test,
    wilson,
)


def _line(pitches: list[int], beats: float = 0.5, tempo: float = 120.0) -> NoteSequence:
    step = np.full(len(pitches), beats * 60 / tempo)
    step[0] = 0.0
    return NoteSequence(pitch=np.array(pitches), step=step, duration=np.full(len(pitches), beats * 60 / tempo),
                        velocity=np.full(len(pitches), 80), tempo_bpm=tempo, time_signature=(4, 4))


def _feature(values: np.ndarray, name: str) -> float:
    return float(values[FEATURE_NAMES.index(name)])


def test_the_features_of_a_c_major_scale_in_eighths() -> None:
    # Two bars up and down a C major scale in eighths, then a last bar that the features leave out.
    scale = [60, 62, 64, 65, 67, 69, 71, 72, 72, 71, 69, 67, 65, 64, 62, 60]
    values = piece_features(_line(scale + [61, 61, 61, 61, 61, 61, 61, 61]))
    assert _feature(values, "degree_1") == pytest.approx(4 / 16)  # C (60 or 72) four times in 16 notes
    assert _feature(values, "outside_scale") == 0.0  # the C#s are in the last bar, left out
    assert _feature(values, "interval_1") == pytest.approx(14 / 15)  # steps; one repeated C
    assert _feature(values, "interval_0") == pytest.approx(1 / 15)
    assert _feature(values, "ioi_1/2") == 1.0 and _feature(values, "duration_1/2") == 1.0
    assert _feature(values, "position_0") == pytest.approx(2 / 16)  # two bar lines among 16 onsets
    assert _feature(values, "position_1") == pytest.approx(6 / 16)  # the other quarters
    assert _feature(values, "position_2") == pytest.approx(8 / 16)  # the off-beat eighths
    assert _feature(values, "onsets_per_beat") == pytest.approx(16 / 7.5)
    assert _feature(values, "range") == 12.0


def test_a_chromatic_note_and_a_chord_are_counted() -> None:
    notes = NoteSequence.from_notes(start=np.array([0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 4.0]),
                                    pitch=np.array([48, 52, 55, 66, 67, 64, 62, 60, 60]),
                                    duration=np.full(9, 0.5), velocity=np.full(9, 80), tempo_bpm=120.0)
    values = piece_features(notes)
    assert _feature(values, "outside_scale") == pytest.approx(1 / 8)  # the F# among 8 equal notes
    assert _feature(values, "notes_per_onset") == pytest.approx(8 / 6)


def _pieces(rng: np.random.Generator, leaps: bool, n: int) -> list[NoteSequence]:
    out = []
    for _ in range(n):
        moves = rng.choice([-7, -5, 5, 7] if leaps else [-2, -1, 1, 2], size=40)
        pitches = list(np.clip(60 + np.cumsum(moves), 40, 90))
        out.append(_line(pitches, beats=1.0 if leaps else 0.5))
    return out


def test_the_test_tells_different_music_apart_and_not_the_same_music() -> None:
    rng = np.random.default_rng(0)
    steps, leaps, more_steps = _pieces(rng, False, 30), _pieces(rng, True, 30), _pieces(rng, False, 30)
    different = discriminator_report(steps, leaps, list(range(30)), "test", repeats=2)
    assert different["generated_vs_real"]["accuracy"] >= 0.9
    words = " ".join(s["words"] for s in different["separating"])
    assert "real test pieces" in words
    same = two_sample_test(np.array([piece_features(p) for p in steps]),
                           np.array([piece_features(p) for p in more_steps]), list(range(30)), list(range(30)),
                           repeats=2)
    low, high = same["ci95"]
    assert same["accuracy"] < 0.75 and low < 0.5 + 0.1


def test_variations_of_one_request_stay_in_one_fold() -> None:
    rng = np.random.default_rng(1)
    # Ten "requests" of three identical variations each: with grouped folds a copy never sits on
    # the other side of a split, so copies cannot make the classifier look better than it is.
    base = _pieces(rng, False, 10)
    generated = [p for p in base for _ in range(3)]
    real = _pieces(rng, False, 30)
    report = two_sample_test(np.array([piece_features(p) for p in generated]),
                             np.array([piece_features(p) for p in real]), [i // 3 for i in range(30)],
                             list(range(30)), repeats=2)
    assert report["folds"] >= 2 and report["accuracy"] < 0.8


def test_repeated_cross_validation_averages_subsamples_and_folds() -> None:
    rng = np.random.default_rng(3)
    a = np.array([piece_features(p) for p in _pieces(rng, False, 40)])
    b = np.array([piece_features(p) for p in _pieces(rng, False, 16)])
    once = two_sample_test(a, b, list(range(40)), list(range(16)), repeats=1)
    many = two_sample_test(a, b, list(range(40)), list(range(16)), repeats=3)
    assert once["repeats"] == 1 and many["repeats"] == 3
    for name, row in many["classifiers"].items():
        low, high = row["spread"]
        assert low <= row["accuracy"] <= high
        assert once["classifiers"][name]["spread"][0] == once["classifiers"][name]["spread"][1]
    # Each repetition draws its own 16 of the 40 and its own folds: the figures differ between them.
    assert any(row["spread"][0] < row["spread"][1] for row in many["classifiers"].values())


def test_too_few_pieces_say_so() -> None:
    with pytest.raises(ValueError, match="Too few"):
        two_sample_test(np.zeros((2, 3)), np.zeros((9, 3)), [0, 1], list(range(9)))
    assert wilson(50, 100)[0] < 0.5 < wilson(50, 100)[1]


def test_real_pieces_are_cropped_to_the_generated_length() -> None:
    from ml.evaluation.discriminator import crop

    piece = _line(list(range(60, 84)), beats=1.0)  # 24 quarter notes
    short = crop(piece, 10.5)
    assert len(short) == 11 and float(short.duration[-1]) == pytest.approx(0.25)  # half a beat at 120 BPM
    rng = np.random.default_rng(2)
    report = discriminator_report([_line(list(range(60, 84)), beats=1.0) for _ in range(12)],
                                  _pieces(rng, False, 12), list(range(12)), "test", repeats=1)
    assert report["real_cropped_to_beats"] == pytest.approx(20.0)  # the generated pieces: 40 eighth notes



def test_the_training_floor_tells_training_pieces_from_other_music_and_not_from_their_own() -> None:
    from ml.evaluation.discriminator import training_floor
    from tests.tiny import tiny_dataset

    dataset = tiny_dataset(pieces_per_style=30, notes=48)
    held = {style: [dataset.piece(int(i)) for split in ("validation", "test") for i in dataset.indices(split, style)]
            for style in ("alpha", "beta")}
    own = training_floor(dataset, held["alpha"], "alpha", 12, 16.0, draws=2, repeats=2)
    other = training_floor(dataset, held["beta"], "alpha", 12, 16.0, draws=1, repeats=1)
    assert own["training_pieces"] == 12 and own["draws"] == 2
    assert own["range"][0] <= own["accuracy"] <= own["range"][1]
    assert other["accuracy"] >= 0.9 > 0.7 >= own["accuracy"]
    # At most the pieces there are.
    assert training_floor(dataset, held["alpha"], "alpha", 999, 16.0, draws=1, repeats=1)["training_pieces"] == \
        len(dataset.indices("train", "alpha"))
