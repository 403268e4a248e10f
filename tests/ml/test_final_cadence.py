"""The cadence that ends a piece told apart from a chorale's inner fermatas: the data, the network's
start from a model that could not tell them apart, and generation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ml.data.notes import NoteSequence
from ml.data.windows import piece_features
from ml.generation.form import plan_form
from ml.generation.generator import Generator
from ml.generation.request import GenerationRequest
from ml.generation.steps import CompiledSteps
from ml.model.config import CADENCE_CLASSES
from ml.model.network import build_model, dummy_inputs, load_model, save_model, warm_start
from tests.tiny import tiny_config, tiny_dataset

FAR = CADENCE_CLASSES - 1


def chorale_like() -> NoteSequence:
    """Quarter notes at 60 BPM, a fermata on beat 7 (seconds = beats), the last note on beat 19."""
    onset = np.arange(20, dtype=np.float64)
    return NoteSequence.from_notes(onset, np.full(20, 60), np.ones(20), np.full(20, 80), tempo_bpm=60.0,
                                   time_signature=(4, 4), phrase_ends=[7.0])


def test_the_last_cadence_has_classes_of_its_own_and_the_inner_ones_keep_theirs() -> None:
    config = dataclasses.replace(tiny_config(tiny_dataset()), final_cadence=True)
    cadence = piece_features(chorale_like(), config, tonic=0)["cadence"]
    # Beats to the next cadence, in half beats: 7 to the fermata, then 11 to the end (8 or more: far).
    assert cadence[:8].tolist() == [14, 12, 10, 8, 6, 4, 2, 0]  # the fermata's, as before
    assert cadence[8:12].tolist() == [FAR] * 4
    assert cadence[12:].tolist() == [CADENCE_CLASSES + c for c in (14, 12, 10, 8, 6, 4, 2, 0)]
    plain = piece_features(chorale_like(), dataclasses.replace(config, final_cadence=False), tonic=0)["cadence"]
    assert (plain == cadence % CADENCE_CLASSES).all()
    assert config.cadence_classes == 2 * CADENCE_CLASSES and config.pad_cadence == 2 * CADENCE_CLASSES


def test_a_plan_knows_which_cadence_ends_it() -> None:
    plan = plan_form("AABB", phrase_bars=4, total_bars=16, bar_beats=4.0)
    cadences = sorted({c for b in np.arange(0, plan.beats, 1.0) if (c := plan.next_cadence(float(b))) is not None})
    assert len(cadences) >= 2
    assert [plan.is_final(c) for c in cadences] == [False] * (len(cadences) - 1) + [True]
    assert not plan.is_final(None)


def test_a_model_that_tells_the_final_cadence_apart_starts_as_the_one_it_grew_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old_tiny_model_path: Path) -> None:
    old = load_model(old_tiny_model_path)  # one set of cadence classes
    assert not old.config.final_cadence
    new = build_model(dataclasses.replace(old.config, final_cadence=True))
    assert "cadence_embed" in warm_start(new, old)
    rng = np.random.default_rng(3)
    x = dummy_inputs(old.config, 4)
    x["pitch"][:] = rng.integers(55, 70, x["pitch"].shape)
    x["cadence"][:] = rng.integers(0, FAR, x["cadence"].shape)
    x["next_cadence"][:] = rng.integers(0, FAR, x["next_cadence"].shape)
    final = {**x, "cadence": x["cadence"] + CADENCE_CLASSES, "next_cadence": x["next_cadence"] + CADENCE_CLASSES}
    ours, theirs = new(final), old(x)
    for head in ("pitch", "step", "duration", "velocity"):
        np.testing.assert_allclose(np.asarray(ours[head]), np.asarray(theirs[head]), atol=1e-6)
    # It saves, loads and writes a piece, its last notes fed the final classes.
    path = tmp_path / "final.keras"
    save_model(new, path)
    fed: list[np.ndarray] = []
    decode = CompiledSteps.decode

    def spy(self: CompiledSteps, step: np.ndarray, position: np.ndarray, cadence: np.ndarray,
            until: np.ndarray | None = None, chord: np.ndarray | None = None) -> object:
        fed.append(np.asarray(cadence).copy())
        return decode(self, step, position, cadence, until, chord)

    monkeypatch.setattr(CompiledSteps, "decode", spy)
    pieces = Generator(path).generate(GenerationRequest(style="alpha", seconds=8, seed=1))
    assert len(pieces[0].notes)
    classes = np.concatenate(fed)
    assert (classes >= CADENCE_CLASSES).any(), "the notes before the end were not told it is the end"
    assert classes.max() < 2 * CADENCE_CLASSES
