"""Per-style sampling calibration: stored in the model file, read by the generator, chosen by the sweep."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ml.evaluation.calibration import choose
from ml.generation.generator import Generator
from ml.generation.request import GenerationRequest
from ml.model.config import read_model_info, write_model_extra


@pytest.fixture
def calibrated_path(tiny_model_path: Path, tmp_path: Path) -> Path:
    path = tmp_path / "calibrated.keras"
    shutil.copy(tiny_model_path, path)
    write_model_extra(path, "sampling", {"alpha": {"temperature": 0.5, "timing_temperature": 2.0}})
    return path


def _notes(generator: Generator, **controls: object) -> np.ndarray:
    piece = generator.generate(GenerationRequest(style="alpha", seconds=8, seed=77, **controls))[0]  # type: ignore[arg-type]
    return np.c_[piece.notes.pitch, piece.notes.start, piece.notes.duration]


def test_the_calibration_travels_in_the_model_file_beside_everything_else(tiny_model_path: Path,
                                                                         calibrated_path: Path) -> None:
    from ml.model.inference import has_inference_weights
    from ml.model.network import load_model

    before, after = read_model_info(tiny_model_path), read_model_info(calibrated_path)
    assert after["extra"]["sampling"] == {"alpha": {"temperature": 0.5, "timing_temperature": 2.0}}
    assert after["extra"]["stats"] == before["extra"]["stats"]
    assert has_inference_weights(calibrated_path) == has_inference_weights(tiny_model_path)
    model = load_model(calibrated_path)
    for mine, theirs in zip(model.get_weights(), load_model(tiny_model_path).get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_a_requests_temperatures_are_relative_to_the_styles_calibration(tiny_model_path: Path,
                                                                       calibrated_path: Path) -> None:
    calibrated = Generator(calibrated_path)
    assert calibrated.sampling("alpha") == {"temperature": 0.5, "timing_temperature": 2.0}
    assert calibrated.sampling("beta") == {"temperature": 1.0, "timing_temperature": 1.0}  # not calibrated
    plain = Generator(tiny_model_path)
    # Temperature 1 in a calibrated file writes what the uncalibrated file writes at the calibration's
    # temperatures, note for note, and not what it writes at 1.
    ones = _notes(calibrated)
    np.testing.assert_array_equal(ones, _notes(plain, temperature=0.5, timing_temperature=2.0))
    assert not np.array_equal(ones, _notes(plain))
    # The sweep measures the file without its calibration.
    np.testing.assert_array_equal(_notes(Generator(calibrated_path, calibrated=False)), _notes(plain))
    # The calibration is the network's: a baseline writing in its place samples at the request's own.
    assert Generator(calibrated_path, writer=lambda style, n: None).sampling("alpha")["temperature"] == 1.0
    # A scaled temperature stays inside the range a request holds.
    hot = calibrated._sampled(GenerationRequest(style="alpha", seconds=8, temperature=3.0, timing_temperature=2.0))
    assert (hot.temperature, hot.timing_temperature) == (1.5, 3.0)


def _row(temperature: float, timing: float, score: float) -> dict[str, float]:
    return {"temperature": temperature, "timing_temperature": timing, "score": score}


def test_the_sweep_keeps_the_networks_own_distribution_unless_another_is_clearly_harder_to_tell() -> None:
    rows = [_row(1.0, 1.0, 0.74), _row(0.92, 1.15, 0.66), _row(0.85, 1.3, 0.70)]
    assert choose(rows, tolerance=0.03) == {"temperature": 0.92, "timing_temperature": 1.15}
    assert choose(rows, tolerance=0.1) == {"temperature": 1.0, "timing_temperature": 1.0}
    assert choose(rows[1:], tolerance=0.1) == {"temperature": 0.92, "timing_temperature": 1.15}
