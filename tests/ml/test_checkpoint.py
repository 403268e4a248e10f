"""A training carried over several sessions: the weights alone kept between them, and taken up again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ml.model.network import load_model
from ml.model.train import main, save_checkpoint, starting_model
from tests.tiny import tiny_dataset


def test_a_checkpoint_holds_the_weights_a_later_run_starts_from(tiny_model_path: Path, tmp_path: Path) -> None:
    dataset = tiny_dataset()
    trained = load_model(tiny_model_path)  # trained once a session (tests/conftest.py)
    config = trained.config
    checkpoint = tmp_path / "tiny.weights.h5"
    save_checkpoint(trained, checkpoint)
    assert checkpoint.stat().st_size < 0.5 * tiny_model_path.stat().st_size  # no optimizer state, no copy
    expected = trained.get_weights()
    resumed = starting_model(dataset, config, init=checkpoint).get_weights()
    fresh = starting_model(dataset, config).get_weights()
    assert len(resumed) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(resumed, expected))
    assert not all(np.array_equal(a, b) for a, b in zip(fresh, expected))
    # Dropout has no weights: a run with more of it goes on from the same checkpoint (the scratch
    # recipe's dropout went from 0.3 to 0.45 at its 26th epoch).
    wetter = starting_model(dataset, replace(config, dropout=config.dropout + 0.25), init=checkpoint).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(wetter, expected))
    # The weights of another config are refused, saying why; and a checkpoint is named as one.
    with pytest.raises(ValueError, match="another config"):
        starting_model(dataset, replace(config, lstm_units=config.lstm_units + 4), init=checkpoint)
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        save_checkpoint(trained, tmp_path / "tiny.keras.h5")


def test_the_command_refuses_a_checkpoint_name_before_it_trains(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never.keras"
    assert main(["--dataset", str(tmp_path / "missing.npz"), "--out", str(out),
                 "--checkpoint", str(tmp_path / "weights.keras")]) == 2
    assert "weights.h5" in capsys.readouterr().err
    assert not out.exists()


def test_the_scratch_recipe_is_a_training_command_line_of_a_valid_config(tmp_path: Path) -> None:
    import argparse
    import json

    from ml.model import scratch
    from ml.model.train import default_config

    args = argparse.Namespace(dataset=tmp_path / "d.npz", out=tmp_path / "s.keras", init=tmp_path / "c.weights.h5",
                              checkpoint=None, minutes=6.0, steps=300, batch=2048, learning_rate=0.004, seed=91,
                              teacher=None, anchor=1.0)
    line = scratch.arguments(args)
    assert line[line.index("--init") + 1] == str(tmp_path / "c.weights.h5") and "--checkpoint" not in line
    config = replace(default_config(["chorale", "folk"]), **json.loads(line[line.index("--config") + 1]))
    assert (config.lstm_units, config.dropout, config.density, config.batch_size) == (160, 0.45, True, 2048)
    assert config.anchor == 0 and "--teacher" not in line
    assert line[line.index("--oversample") + 1:line.index("--config")] == scratch.OVERSAMPLE
    # Distilled: the teacher named, its weight in the config.
    taught = scratch.arguments(argparse.Namespace(**{**vars(args), "teacher": tmp_path / "t.keras", "anchor": 0.5}))
    assert taught[taught.index("--teacher") + 1] == str(tmp_path / "t.keras")
    assert json.loads(taught[taught.index("--config") + 1])["anchor"] == 0.5
