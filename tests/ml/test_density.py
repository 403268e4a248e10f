"""How busy a piece is, as an input: a network that reads its piece's pace as it reads its style."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ml.data.notes import NoteSequence
from ml.data.windows import batch_arrays, make_examples
from ml.generation.generator import Generator, piece_density
from ml.generation.request import GenerationRequest
from ml.model.config import DENSITY_CLASSES, density_class, onsets_per_beat
from ml.model.inference import NumpyNet
from ml.model.network import build_model, load_model, save_model, warm_start
from ml.model.train import style_stats, train
from tests.ml.test_inference import _random_inputs
from tests.tiny import tiny_config, tiny_dataset


def test_a_piece_s_density_is_its_onsets_per_beat_in_classes() -> None:
    assert onsets_per_beat(np.array([0.0, 1, 2, 3, 4])) == 1.0
    assert onsets_per_beat(np.array([0.0, 0, 0.5, 1, 1])) == 2.0  # a chord's notes are one onset
    assert onsets_per_beat(np.array([3.0, 3.0])) == 0.0
    assert density_class(np.array([0.5, 1.0, 1.3, 1.6, 4.0])).tolist() == [0, 3, 4, 5, 9]
    assert int(density_class(100.0)) == DENSITY_CLASSES - 1
    eighths = NoteSequence(pitch=np.full(9, 60), step=np.r_[0.0, np.full(8, 0.25)], duration=np.full(9, 0.25),
                           velocity=np.full(9, 80), tempo_bpm=120.0)  # eighth notes at 120 BPM: 2 a beat
    assert piece_density(eighths) == int(density_class(2.0)) != piece_density(eighths.slice(0, 1))


def test_examples_batches_and_statistics_carry_each_piece_s_density_where_the_config_reads_it() -> None:
    dataset = tiny_dataset()  # alpha moves in quarter notes, beta in eighths (120 BPM)
    config = replace(tiny_config(dataset), density=True)
    examples = make_examples(dataset, config, "train")
    quarters, eighths = int(density_class(1.0)), int(density_class(2.0))
    assert {int(s): sorted(set(examples.density[examples.style == s].tolist())) for s in (0, 1)} == {
        0: [quarters], 1: [eighths]}
    inputs = batch_arrays(examples, np.arange(0, len(examples), 7), config)[0]
    assert inputs["density"].tolist() == examples.density[::7].tolist()
    plain = tiny_config(dataset)
    assert "density" not in batch_arrays(make_examples(dataset, plain, "train"), np.arange(4), plain)[0]
    stats = style_stats(dataset)
    assert stats["alpha"]["densities"] == {"4/4": {str(quarters): 4}}
    assert stats["beta"]["densities"] == {"4/4": {str(eighths): 4}}


def test_a_model_that_reads_density_starts_out_computing_what_its_source_did(tiny_model_path: Path) -> None:
    old = load_model(tiny_model_path)
    new = build_model(replace(old.config, density=True), extra=old.extra)
    copied = warm_start(new, old)
    assert "density_embed" not in copied and {"project", "step_head", "decoder_hidden", "bilstm_0"} <= set(copied)
    inputs = _random_inputs(new.config, batch=4, seed=3)
    inputs["density"] = np.array([0, 3, 6, 9], np.int32)
    ours = new.predict_on_batch(inputs)
    theirs = old.predict_on_batch({k: v for k, v in inputs.items() if k != "density"})
    for head in ("pitch", "step", "duration", "velocity"):
        np.testing.assert_allclose(np.asarray(ours[head]), np.asarray(theirs[head]), atol=1e-5)


@pytest.fixture(scope="module")
def density_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset = tiny_dataset()
    out = tmp_path_factory.mktemp("density") / "density.keras"
    return train(dataset, replace(tiny_config(dataset), density=True), out, epochs=1, verbose=0).model_path


def test_the_numpy_engine_reads_the_density_as_keras_does(density_model: Path) -> None:
    keras_model = load_model(density_model)
    net = NumpyNet.from_archive(density_model)
    inputs = _random_inputs(net.config, batch=3, seed=1)
    inputs["density"] = np.array([1, 4, 8], np.int32)
    context, steps = net.encode(inputs)
    keras_context, keras_steps = keras_model.encode(inputs)
    np.testing.assert_allclose(context, np.asarray(keras_context), atol=1e-5)
    np.testing.assert_allclose(steps, np.asarray(keras_steps), atol=1e-4)
    other = dict(inputs, density=np.array([8, 1, 4], np.int32))
    assert not np.allclose(net.encode(other)[1], steps)  # the density moves what it predicts


def test_generation_draws_a_piece_s_density_from_its_style_or_reads_it_from_the_music_kept(
        density_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    generator = Generator(density_model)
    rng = np.random.default_rng(0)
    assert generator._style_density("alpha", (4, 4), rng) == int(density_class(1.0))
    assert generator._style_density("beta", (3, 4), rng) == int(density_class(2.0))  # no 3/4 piece: every metre's
    read: list[list[int] | None] = []
    from ml.generation import steps

    reset = steps.CompiledSteps.reset

    def spy(self: steps.CompiledSteps, window: dict[str, np.ndarray], piece: dict[str, object],
            future: dict[str, np.ndarray] | None = None) -> None:
        read.append(np.asarray(piece["density"]).tolist() if "density" in piece else None)
        reset(self, window, piece, future)

    monkeypatch.setattr(steps.CompiledSteps, "reset", spy)
    pieces = generator.generate(GenerationRequest(style="beta", seconds=6, seed=2, variations=2))
    assert len(pieces) == 2 and read == [[int(density_class(2.0))] * 2]
    # A piece continued from a primer keeps the primer's pace.
    primer = NoteSequence(pitch=np.arange(60, 72), step=np.r_[0.0, np.full(11, 0.5)], duration=np.full(12, 0.5),
                          velocity=np.full(12, 80), tempo_bpm=120.0)
    read.clear()
    generator.generate(GenerationRequest(style="beta", seconds=8, seed=2, primer=primer))
    assert read == [[int(density_class(1.0))]]
    # A model that does not read it is given none.
    plain = tmp_path / "plain.keras"
    model = load_model(density_model)
    flat = build_model(replace(model.config, density=False), extra=model.extra)
    warm_start(flat, model)
    save_model(flat, plain)
    read.clear()
    Generator(plain).generate(GenerationRequest(style="beta", seconds=5, seed=2))
    assert read == [None]
