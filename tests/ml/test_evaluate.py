"""MGEval features, overlap areas, the loop detector, and the evaluation report end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ml.data.notes import NoteSequence
from ml.evaluation.mgeval import (
    FEATURES,
    compare_sets,
    crop,
    find_degenerate_loop,
    overlap_and_kl,
    pairwise_distances,
    piece_features,
)


def c_major_phrase() -> NoteSequence:
    # C4 E4 G4 C5 then a C-major chord (C4 E4 G4) at 2 s; 120 BPM, so 0.5 s is one beat.
    return NoteSequence(pitch=np.array([60, 64, 67, 72, 60, 64, 67]), step=np.array([0, 0.5, 0.5, 0.5, 0.5, 0, 0]),
                        duration=np.array([0.5, 0.5, 0.5, 0.5, 2.0, 2.0, 2.0]), velocity=np.full(7, 80),
                        tempo_bpm=120.0)


def test_features_of_a_hand_written_phrase() -> None:
    f = piece_features(c_major_phrase())
    assert f.pitch_count == 4
    assert f.pitch_range == 12
    assert f.pitch_class_histogram[[0, 4, 7]] == pytest.approx([3 / 7, 2 / 7, 2 / 7])
    assert f.pitch_class_histogram.sum() == pytest.approx(1.0)
    # Intervals 4, 3, 5, 12, 4, 3.
    assert f.avg_pitch_interval == pytest.approx(31 / 6)
    assert f.avg_ioi == pytest.approx(2.0 / 6)
    # Transitions C->E twice, E->G twice, G->C twice: each a third of six.
    assert f.pitch_class_transition_matrix[0, 4] == pytest.approx(2 / 6)
    assert f.pitch_class_transition_matrix.sum() == pytest.approx(1.0)
    # Four quarter notes and three whole notes.
    assert f.note_length_histogram[[2, 0]] == pytest.approx([4 / 7, 3 / 7])
    assert f.scale_consistency == pytest.approx(1.0)
    assert f.loop is None


def test_crop_keeps_notes_starting_within_the_time() -> None:
    assert len(crop(c_major_phrase(), 1.2)) == 3
    assert len(crop(c_major_phrase(), 100.0)) == 7


def test_identical_samples_overlap_fully() -> None:
    x = np.random.default_rng(0).normal(size=300)
    overlap, kl = overlap_and_kl(x, x.copy())
    assert overlap == pytest.approx(1.0, abs=1e-3)
    assert kl == pytest.approx(0.0, abs=1e-3)


def test_disjoint_samples_do_not_overlap() -> None:
    x = np.random.default_rng(0).normal(size=300)
    overlap, kl = overlap_and_kl(x, x + 50)
    assert overlap == pytest.approx(0.0, abs=1e-3)
    assert kl > 5


def test_pairwise_distances_within_and_between_sets() -> None:
    a = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert pairwise_distances(a).tolist() == [5.0]
    assert pairwise_distances(a, np.array([[0.0, 0.0]])).tolist() == [0.0, 5.0]


def random_pieces(rng: np.random.Generator, count: int, low: int, high: int, step: float) -> list[NoteSequence]:
    return [NoteSequence(pitch=rng.integers(low, high, 40), step=rng.choice([step, 2 * step], 40),
                         duration=np.full(40, step), velocity=np.full(40, 80)) for _ in range(count)]


def test_pieces_of_the_same_kind_overlap_more_than_pieces_of_another() -> None:
    rng = np.random.default_rng(3)
    reference = [piece_features(p) for p in random_pieces(rng, 30, 55, 80, 0.25)]
    same = compare_sets([piece_features(p) for p in random_pieces(rng, 30, 55, 80, 0.25)], reference)
    other = compare_sets([piece_features(p) for p in random_pieces(rng, 30, 60, 66, 1.0)], reference)
    assert set(same) == set(FEATURES)
    for feature in FEATURES:
        assert same[feature].overlap > 0.6
        if feature == "note_count":  # both sets have the same number of notes per piece by construction
            assert same[feature].overlap >= other[feature].overlap
            continue
        assert same[feature].overlap > other[feature].overlap
        assert same[feature].kl < other[feature].kl


@pytest.mark.parametrize(("pitch", "reason"), [
    ([60, 60, 60, 60, 60, 60, 62], "pitch 60 repeated 6 times"),
    ([60, 62] * 4, "figure 60 62 repeated 4 times"),
    ([60, 64, 67] * 3, "figure 60 64 67 repeated 3 times"),
    ([60, 64, 67, 64] * 3, "figure 60 64 67 64 repeated 3 times"),
])
def test_loops_are_found(pitch: list[int], reason: str) -> None:
    found = find_degenerate_loop(np.array(pitch), np.ones(len(pitch)))
    assert found is not None and found.startswith(reason)


@pytest.mark.parametrize("pitch", [
    [60, 60, 60, 60, 60, 62],  # five repeats are allowed
    [60, 62] * 3 + [64],  # a trill of three
    [60, 64, 67, 60, 64, 67, 72],  # an arpeggio twice
    [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60],
])
def test_music_is_not_a_loop(pitch: list[int]) -> None:
    assert find_degenerate_loop(np.array(pitch), np.ones(len(pitch))) is None


def test_twelve_notes_on_one_onset_and_long_steps_are_loops() -> None:
    pitch = np.arange(40, 60)
    chord = np.r_[1.0, np.zeros(11), np.ones(8)]
    assert find_degenerate_loop(pitch, chord) == "12 notes share one onset from note 0"
    assert find_degenerate_loop(pitch, np.r_[1.0, np.zeros(10), np.ones(9)]) is None
    assert find_degenerate_loop(pitch, np.r_[9.0, np.ones(19)]) is None  # the first onset is no step
    assert find_degenerate_loop(pitch, np.r_[1.0, np.ones(18), 8.5]) == "a step of 8.5 beats before note 19"


def test_loop_detector_imports_without_tensorflow(tmp_path: Path) -> None:
    import subprocess

    code = "import sys, ml.evaluation.mgeval; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_evaluate_writes_report_with_model_and_baselines(tiny_model_path: Path, tmp_path: Path) -> None:
    from ml.evaluation.evaluate import evaluate
    from tests.tiny import tiny_dataset

    report = evaluate(tiny_model_path, tiny_dataset(), tmp_path, pieces_per_style=3, seconds=8.0, seed=1)

    data = json.loads((tmp_path / "evaluation.json").read_text())
    overall = data["next_note"]["overall"]
    assert {"model", "joint-markov", "uniform", "unigram", "markov-1", "markov-2", "markov-3", "mean",
            "median"} <= set(overall)
    # The fair chain is scored like the model: step CE plus pitch CE given the true step.
    assert overall["joint-markov"]["joint_ce"] == pytest.approx(
        overall["joint-markov"]["step_ce"] + overall["joint-markov"]["pitch_ce"])
    # Everyone is scored on the same notes.
    assert len({s["notes"] for s in overall.values()}) == 1
    assert overall["uniform"]["pitch_ce"] == pytest.approx(np.log(128))
    assert {"pitch_ce", "pitch_top1", "step_ce", "joint_ce", "step_mae_s", "duration_mae_s",
            "velocity_mae"} <= set(overall["model"])
    assert set(data["next_note"]) == {"overall", "alpha", "beta"}
    mgeval = data["mgeval"]
    assert set(mgeval["mean"]) == {"model", "markov", "model_unconstrained"}  # every constraint off, too
    assert set(mgeval["mean"]["model"]) == set(FEATURES)
    assert 0 <= mgeval["model_overlap_at_least_markov"] <= len(FEATURES)
    for style in ("alpha", "beta"):
        assert set(mgeval["per_style"][style]["sets"]) == {"held_out", "model", "markov", "model_unconstrained"}
        form = mgeval["per_style"][style]["form"]
        assert set(form) == {"held_out", "model", "markov", "model_unconstrained"}
        against = mgeval["per_style"][style]["form_against_real"]
        assert set(against) == {"model", "markov", "model_unconstrained"}
        assert all(v["direction"] in ("same", "more", "less") for v in against["model"].values())
        assert 0 <= form["held_out"]["key_stability"] <= 1
        shared = mgeval["per_style"][style]["shared_with_training"]
        assert set(shared) == {"held_out", "model", "markov", "model_unconstrained"}
        assert all(0 <= v["median"] <= v["max"] for v in shared.values())
        # The discriminator, for every set: an accuracy with its interval and the real-against-real
        # floor, or the reason it could not be run (three pieces do not fill the folds).
        found = mgeval["per_style"][style]["discriminator"]
        assert set(found) == {"model", "markov", "model_unconstrained"}
        floor = mgeval["per_style"][style]["discriminator_training_floor"]
        assert "skipped" in floor or 0 <= floor["range"][0] <= floor["accuracy"] <= floor["range"][1] <= 1
        for row in found.values():
            assert "skipped" in row or 0 <= row["generated_vs_real"]["accuracy"] <= 1
        metre = data["requests"]["per_style"][style]["metre"]
        assert set(metre) == {"4/4", "3/4", "6/8", "same_notes_as_4/4"}
        assert set(data["requests"]["per_style"][style]["real_metre"]) == {"4/4", "3/4", "6/8"}
    markdown = (tmp_path / "evaluation.md").read_text()
    assert "Next-note scores" in markdown and "MGEval" in markdown and "loop rate" in markdown
    assert "## Form: key, metre, repetition, endings, voices" in markdown and "requested key" in markdown
    assert "### Like the real pieces, both ways" in markdown and "### Memorisation" in markdown
    assert "against the fair chain" in markdown and "training vs real" in markdown
    for plot in report["plots"]:
        assert (tmp_path / plot).stat().st_size > 0
    assert "pitch_class_histograms.png" in report["plots"]


def test_harmony_measure_counts_common_chords_once_per_onset() -> None:
    from ml.evaluation.mgeval import piece_features

    # C major triad, then a cluster C-C#-D, then a lone note.
    seq = NoteSequence.from_notes(start=np.array([0, 0, 0, 1, 1, 1, 2.0]), pitch=np.array([60, 64, 67, 60, 61, 62, 65]),
                                  duration=np.full(7, 1.0), velocity=np.full(7, 80))
    features = piece_features(seq)
    assert features.chord_onsets == 2
    assert features.common_chord_share == 0.5


def test_the_sampling_sweep_scores_each_setting_with_the_constraints_and_without(tiny_model_path: Path) -> None:
    from ml.evaluation.evaluate import sampling_sweep
    from tests.tiny import tiny_dataset

    sweep = sampling_sweep(tiny_model_path, tiny_dataset(), 4, 6.0, 1, settings=((1.0, 1.0), (0.5, 0.9)))
    assert [(r["temperature"], r["top_p"]) for r in sweep["settings"]] == [(1.0, 1.0), (0.5, 0.9)]
    for row in sweep["settings"]:
        assert {"defaults", "unconstrained"} <= set(row)
        assert row["defaults"]["per_style"].keys() == row["unconstrained"]["per_style"].keys() == {"alpha", "beta"}
        assert row["distance"] == row["defaults"]["distance"] >= 0
    assert (sweep["best"]["temperature"], sweep["best"]["top_p"]) in ((1.0, 1.0), (0.5, 0.9))


def test_the_metre_measure_is_read_on_real_pieces_notated_in_each_metre() -> None:
    from ml.data.datasets import NoteDataset
    from ml.evaluation.evaluate import real_metres

    def piece(lengths: list[float], bars: int, signature: tuple[int, int]) -> NoteSequence:
        beats = np.array(lengths * bars) * 0.5  # seconds at 120 quarter notes a minute
        step = np.concatenate([[0.0], beats[:-1]])
        return NoteSequence(pitch=np.full(len(beats), 60), step=step, duration=beats.copy(),
                            velocity=np.full(len(beats), 80), tempo_bpm=120.0, time_signature=signature)

    waltz = piece([2.0, 1.0], 8, (3, 4))  # a half note and a quarter in every bar: the weight on beat 1
    even = piece([1.0], 32, (4, 4))  # quarter notes: every onset of a bar weighs alike
    dataset = NoteDataset.from_pieces(["alpha"], [("waltz", "alpha", waltz, 2), ("even", "alpha", even, 2),
                                                 ("training", "alpha", waltz, 0)])
    found = real_metres(dataset, ["alpha"])["alpha"]
    assert found["3/4"]["pieces"] == 1  # the test piece alone, not the training one
    assert found["3/4"]["downbeat_accent"] == 1.0 and found["3/4"]["in_the_other_metre"] < 1.0
    assert found["3/4"]["follows"] is True
    # Real music in even motion does not stand apart from 3-beat bars: the first onset wins either way.
    assert found["4/4"]["downbeat_accent"] == found["4/4"]["in_the_other_metre"] == 1.0
    assert found["4/4"]["follows"] is False
    assert found["6/8"] == {"pieces": 0}
