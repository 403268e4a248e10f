"""The NumPy engine: the same network as Keras, read from the archive without TensorFlow."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from ml.generation.generator import Generator
from ml.generation.request import GenerationRequest
from ml.model.inference import ARCHIVE_MEMBER, NumpyNet, has_inference_weights


def _random_inputs(config: object, batch: int, seed: int) -> dict[str, np.ndarray]:
    from ml.model.network import dummy_inputs

    c = config
    rng = np.random.default_rng(seed)
    inputs = dummy_inputs(c, batch)  # type: ignore[arg-type]
    w = c.window  # type: ignore[attr-defined]
    time_classes = c.time_classes  # type: ignore[attr-defined]
    inputs.update({
        "pitch": rng.integers(0, 129, (batch, w)), "step": rng.integers(0, time_classes + 1, (batch, w)),
        "duration": rng.integers(0, time_classes + 1, (batch, w)), "velocity": rng.random((batch, w)),
        "position": rng.integers(0, c.positions + 1, (batch, w)),  # type: ignore[attr-defined]
        "style": rng.integers(0, len(c.styles), batch),  # type: ignore[attr-defined]
    })
    if "chord" in inputs:
        inputs["chord"] = (rng.random((batch, w, 12)) > 0.7).astype("float32")
    if "future_pitch" in inputs:
        inputs["future_pitch"] = rng.integers(0, 129, inputs["future_pitch"].shape)
        inputs["until"] = rng.integers(0, 8, batch)
    return {key: np.asarray(value, "float32" if key in ("velocity", "chord") else "int32")
            for key, value in inputs.items()}


def test_the_numpy_engine_computes_what_keras_computes(tiny_model_path: Path) -> None:
    from ml.model.network import load_model

    assert has_inference_weights(tiny_model_path)  # save_model stored them
    keras_model = load_model(tiny_model_path)
    net = NumpyNet.from_archive(tiny_model_path)
    inputs = _random_inputs(net.config, batch=3, seed=1)
    keras_context, keras_steps = keras_model.encode(inputs)
    context, steps = net.encode(inputs)
    np.testing.assert_allclose(context, np.asarray(keras_context), atol=1e-5)
    np.testing.assert_allclose(steps, np.asarray(keras_steps), atol=1e-4)
    chosen = (np.array([1, 2, 3]), np.array([0, 4, 8]), np.array([0, 1, 2]), np.array([1, 3, 5]),
              (np.random.default_rng(2).random((3, 12)) > 0.5).astype("float32"))
    for ours, theirs in zip(net.decode(context, *chosen), keras_model.decode(keras_context, *chosen)):
        np.testing.assert_allclose(ours, np.asarray(theirs), atol=1e-4)


def test_both_engines_write_the_same_piece(tiny_model_path: Path) -> None:
    request = GenerationRequest(style=NumpyNet.from_archive(tiny_model_path).config.styles[0], notes=60, seed=5)
    compiled = Generator(tiny_model_path).generate(request)[0]
    numpy_engine = Generator(tiny_model_path, engine="numpy").generate(request)[0]
    same = np.mean(np.asarray(compiled.notes.pitch) == np.asarray(numpy_engine.notes.pitch))
    # Float rounding differs in the last bits; a sampled note may rarely fall the other way.
    assert len(numpy_engine.notes) == len(compiled.notes) and same >= 0.9, same


def test_a_model_file_without_the_named_weights_falls_back_to_keras(tiny_model_path: Path, tmp_path: Path) -> None:
    stripped = tmp_path / "old.keras"
    with zipfile.ZipFile(tiny_model_path) as source, zipfile.ZipFile(stripped, "w") as target:
        for item in source.infolist():
            if item.filename != ARCHIVE_MEMBER:
                target.writestr(item, source.read(item.filename))
    assert not has_inference_weights(stripped)
    with pytest.raises(ValueError, match="no weights for the NumPy engine"):
        NumpyNet.from_archive(stripped)
    generator = Generator(stripped, engine="numpy")
    piece = generator.generate(GenerationRequest(style=generator.styles[0], notes=16, seed=1))[0]
    assert len(piece.notes) >= 12 and not isinstance(generator._model, NumpyNet)  # Keras wrote it
