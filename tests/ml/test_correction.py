"""The drift constraint: its tables counted from notes, fitted, stored in the model file and obeyed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ml.data.notes import NoteSequence
from ml.generation import correction
from ml.generation.constraints import CONSTRAINTS, DRIFT_DOWNBEAT, DRIFT_ROWS, step_row
from ml.generation.generator import Generator
from ml.generation.request import GenerationRequest
from ml.model.config import TIME_GRID_BEATS, ModelConfig, read_model_info, write_model_extra

CONFIG = ModelConfig(styles=("alpha",), default_tempos=(120.0,))
GRID = list(TIME_GRID_BEATS)


def _klass(beats: float) -> int:
    return int(CONFIG.quantize_beats(np.array([beats]))[0])


def _line(steps_beats: list[float], pitches: list[int], durations: list[float]) -> NoteSequence:
    """A line at 60 bpm in 4/4 (a beat is a second), its first note on the downbeat."""
    start = np.cumsum([0.0, *steps_beats])
    return NoteSequence.from_notes(start, np.array(pitches), np.array(durations), np.full(len(pitches), 80),
                                   tempo_bpm=60.0, time_signature=(4, 4))


def test_a_place_in_the_bar_is_its_downbeat_or_where_in_its_quarter_it_falls() -> None:
    assert step_row(0.0) == DRIFT_DOWNBEAT
    assert step_row(1.0) == 0 and step_row(3.0) == 0
    assert step_row(0.5) == 6 and step_row(2.75) == 9 and step_row(1.25) == 3
    assert step_row(1 / 3) == 4 and step_row(3.999) == 0


def test_the_counts_read_steps_after_each_place_lengths_and_degrees_in_the_pieces_key() -> None:
    # D major: D(dotted quarter) E(eighth) F#(half) | D(whole)
    seq = _line([1.5, 0.5, 2.0], [62, 64, 66, 62], [1.5, 0.5, 2.0, 4.0])
    found = correction.counts([(seq, 2, "major")], GRID, CONFIG.quantize_beats)
    steps, lengths = found["steps"], found["durations"]
    assert steps.shape == lengths.shape == (DRIFT_ROWS, len(GRID))
    assert steps.sum() == 3 and lengths.sum() == 4
    assert steps[DRIFT_DOWNBEAT, _klass(1.5)] == 1  # from the downbeat, a dotted quarter
    assert steps[6, _klass(0.5)] == 1  # from half way through beat 2, an eighth
    assert steps[0, _klass(2.0)] == 1  # from beat 3, a half
    assert lengths[DRIFT_DOWNBEAT, _klass(1.5)] == 1 and lengths[DRIFT_DOWNBEAT, _klass(4.0)] == 1
    np.testing.assert_array_equal(found["degrees"]["major"][[0, 2, 4]], [2, 1, 1])
    assert found["degrees"]["minor"].sum() == 0
    # A dorian tune counts with the minor keys, a mixolydian one with the major.
    assert correction.counts([(seq, 2, "dorian")], GRID, CONFIG.quantize_beats)["degrees"]["minor"].sum() == 4


def test_the_ratio_makes_what_is_written_too_often_rarer_within_its_bounds() -> None:
    real = np.array([[50.0, 50.0, 0.0]])
    written = np.array([[90.0, 10.0, 0.0]])
    ratio = correction.log_ratio(real, written)
    assert ratio[0, 0] < 0 < ratio[0, 1]
    assert abs(ratio[0, 2]) < 0.1  # never seen on either side: left alone
    assert np.all(np.abs(correction.log_ratio(np.array([[1000.0, 0.0]]), np.array([[0.0, 1000.0]]))) <= correction.CLIP)
    # A row with few written notes is trusted less.
    few = correction.log_ratio(real, written / 10, shrink=correction.SHRINK)
    assert 0 < few[0, 1] < ratio[0, 1]


def test_a_round_adds_what_is_left_and_degrees_by_half() -> None:
    step = {"steps": np.ones((DRIFT_ROWS, 3)), "durations": np.zeros((DRIFT_ROWS, 3)),
            "degrees": {"major": np.full(12, 1.0)}}
    first = correction.add(None, step, 1.0)
    second = correction.add(first, step, 1.0)
    assert second["steps"][0, 0] == 2.0
    assert second["degrees"]["major"][0] == pytest.approx(2 * correction.DEGREE_DAMPING)
    far = {**step, "steps": np.full((DRIFT_ROWS, 3), 9.0)}
    assert correction.add(second, far, 1.0)["steps"].max() == correction.CLIP


@pytest.fixture
def drifted_path(tiny_model_path: Path, tmp_path: Path) -> Path:
    """The tiny model with tables that make every step but the quarter note and every pitch class but
    the tonic's much rarer (as a fit would where the network wrote too few of them)."""
    path = tmp_path / "drifted.keras"
    shutil.copy(tiny_model_path, path)
    grid = read_model_info(path)["config"].time_grid
    steps = np.full((DRIFT_ROWS, len(grid)), -correction.CLIP)
    steps[:, grid.index(1.0)] = correction.CLIP
    degrees = np.full(12, -correction.CLIP)
    degrees[0] = correction.CLIP
    table = {"steps": steps.tolist(), "durations": steps.tolist(),
             "degrees": {"major": degrees.tolist(), "minor": degrees.tolist()}}
    write_model_extra(path, "correction", {"alpha": table})
    return path


def _piece(generator: Generator, **controls: object) -> NoteSequence:
    request = GenerationRequest(style="alpha", seconds=10, seed=5, key="C", mode="major", **controls)  # type: ignore[arg-type]
    return generator.generate(request)[0].notes


def _quarters(seq: NoteSequence) -> float:
    step, _ = seq.to_beats()
    return float(np.mean(np.isclose(step[1:], 1.0)))


def _tonic(seq: NoteSequence) -> float:
    return float(np.mean(seq.pitch % 12 == 0))


def test_the_stored_tables_pull_the_steps_and_degrees_towards_theirs(tiny_model_path: Path,
                                                                       drifted_path: Path) -> None:
    assert "drift" in CONSTRAINTS
    plain, drifted = _piece(Generator(tiny_model_path)), _piece(Generator(drifted_path))
    assert _quarters(drifted) > _quarters(plain) + 0.2
    assert _tonic(drifted) > _tonic(plain) + 0.2
    # Its switch, the calibration's switch and a style without tables write what the plain file writes.
    for generator in (Generator(drifted_path, off=["drift"]), Generator(drifted_path, calibrated=False)):
        np.testing.assert_array_equal(_piece(generator).pitch, plain.pitch)
    assert Generator(drifted_path).drift("beta") is None
    # The tables are the network's: a baseline writing in its place goes without them.
    assert Generator(drifted_path, writer=lambda style, n: None).drift("alpha") is None


def test_the_fit_moves_what_is_written_towards_the_training_pieces(tiny_model_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.tiny import tiny_dataset

    # Two short pieces a round: their rows trusted in full, so that one round shows.
    monkeypatch.setattr(correction, "SHRINK", 0.0)
    dataset = tiny_dataset()
    rounds: list[tuple[str, dict[str, object]]] = []
    tables, report = correction.fit(tiny_model_path, dataset, ["alpha"], requests=1, variations=2, seconds=8,
                                    rounds=1, log=lambda style, row: rounds.append((style, row)))
    assert set(tables) == {"alpha"} and len(report["alpha"]) == 2 and len(rounds) == 2
    steps = np.asarray(tables["alpha"]["steps"])
    assert steps.shape[0] == DRIFT_ROWS and np.abs(steps).max() <= correction.CLIP
    first, last = report["alpha"][0], report["alpha"][-1]
    assert last["steps"] < first["steps"]
