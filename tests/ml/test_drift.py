"""The rhythm drift report: step shares of real notes, of the network's predictions for them, and of
what the network writes alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.evaluation.drift import GROUPS, LABELS, distance, drift_report, group_of, predicted_shares, shares
from tests.tiny import tiny_dataset


def test_steps_fall_in_the_groups_a_musician_names() -> None:
    beats = np.array([0.0, 0.0, 0.125, 1 / 3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    assert [LABELS[g] for g in group_of(beats)] == [
        "same onset", "same onset", "up to 1/4 beat", "1/4 to 1/2 beat", "1/2 beat", "1/2 to 1 beat", "1 beat",
        "1 to 2 beats", "1 to 2 beats", "over 2 beats"]
    assert shares(beats)[0] == pytest.approx(0.2) and shares(beats).sum() == pytest.approx(1.0)
    assert len(GROUPS) == len(LABELS)


def test_predicted_shares_add_each_class_probability_to_its_group() -> None:
    grid = np.array([0.0, 0.25, 0.5, 1.0, 4.0])
    probabilities = np.array([[0.5, 0.0, 0.5, 0.0, 0.0], [0.0, 0.2, 0.0, 0.4, 0.4]])
    expected = np.zeros(len(GROUPS))
    expected[LABELS.index("same onset")] = 0.25
    expected[LABELS.index("up to 1/4 beat")] = 0.1
    expected[LABELS.index("1/2 beat")] = 0.25
    expected[LABELS.index("1 beat")] = 0.2
    expected[LABELS.index("over 2 beats")] = 0.2
    assert predicted_shares(probabilities, grid) == pytest.approx(expected)
    assert distance(expected, expected) == 0.0
    assert distance(np.eye(len(GROUPS))[0], np.eye(len(GROUPS))[1]) == pytest.approx(1.0)


def test_the_report_reads_the_held_out_notes_and_what_the_network_writes(tiny_model_path: Path) -> None:
    dataset = tiny_dataset()
    report = drift_report(tiny_model_path, dataset, ["alpha", "beta"], pieces=2, seconds=5.0, max_notes=200)
    alpha, beta = report["styles"]["alpha"], report["styles"]["beta"]
    # The tiny data at 120 bpm: alpha moves in quarter notes (1 beat), beta in eighths, after a first note.
    test = [i for i in dataset.indices("test", "alpha")]
    steps = np.concatenate([dataset.piece(int(i)).to_beats()[0] for i in test])
    assert alpha["real"][LABELS.index("1 beat")] == pytest.approx(np.mean(np.isclose(steps, 1.0)), abs=1e-4)
    assert alpha["real"][LABELS.index("1 beat")] > 0.9 and beta["real"][LABELS.index("1/2 beat")] > 0.9
    for row in (alpha, beta):
        for name in ("real", "predicted", "generated"):
            assert sum(row[name]) == pytest.approx(1.0, abs=1e-3)
        assert row["generated_to_real"] == pytest.approx(distance(row["generated"], row["real"]), abs=1e-3)
    with pytest.raises(ValueError, match="gamma"):
        drift_report(tiny_model_path, dataset, ["gamma"], pieces=1, seconds=5.0)
