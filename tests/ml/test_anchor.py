"""A fine-tuning anchored to its teacher: the teacher's distributions as a second target (distillation),
with the pitches that would make parallels taken out of them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

from ml.data.windows import WindowBatches, anchored_targets, contrary_mask, make_examples, parallel_slots, untaught
from ml.evaluation.voice_leading import distance_from
from ml.model.network import anchored_loss, build_model, load_model, save_model
from ml.model.train import train
from tests.tiny import tiny_config, tiny_dataset


def test_the_targets_carry_the_teacher_s_distributions_without_the_avoided_pitches() -> None:
    pitch = np.zeros((2, 1 + 128), np.float32)
    pitch[:, 0] = [60, 62]
    pitch[0, 1 + 67] = 1.0  # the first note would make parallels on G4
    outputs = {"pitch": pitch, "step": np.array([3, 4], np.int32), "duration": np.array([5, 6], np.int32),
               "velocity": np.zeros((2, 1), np.float32)}
    logits = {"pitch": np.zeros((2, 128)), "step": np.log(np.array([[0.5, 0.25, 0.25]] * 2)),
              "duration": np.zeros((2, 3))}
    logits["pitch"][:, 67] = 5.0  # the teacher likes G4 best
    out = anchored_targets(outputs, logits)
    assert out["pitch"].shape == (2, 1 + 2 * 128)
    assert out["pitch"][:, 0].tolist() == [60, 62] and out["pitch"][0, 1 + 67] == 1.0
    first, second = out["pitch"][0, 129:], out["pitch"][1, 129:]
    assert first[67] == 0 and first.sum() == pytest.approx(1) and first[60] == pytest.approx(1 / 127, rel=1e-5)
    assert second[67] == pytest.approx(np.exp(5) / (np.exp(5) + 127), rel=1e-5)  # nothing taken out
    assert out["step"][:, 0].tolist() == [3, 4] and out["step"][0, 1:] == pytest.approx([0.5, 0.25, 0.25])
    assert out["duration"][1, 1:] == pytest.approx([1 / 3] * 3) and out["velocity"] is outputs["velocity"]


def test_with_contrary_the_teacher_s_parallels_go_to_the_pitches_that_move_against_the_voice_below() -> None:
    dataset = tiny_dataset()
    config = replace(tiny_config(dataset), unlikelihood=1.0, anchor=1.0, contrary=True)
    examples = make_examples(dataset, config, "train")
    onset, pitch = np.array([0.0, 0, 1, 1]), np.array([48, 55, 50, 57])  # C3 G3 to D3 A3: fifths, up
    examples.pitch[:4] = pitch
    examples.parallel_class[:4], examples.parallel_side[:4], examples.parallel_from[:4] = parallel_slots(onset, pitch)
    against = contrary_mask(examples, np.array([3, 2]), np.zeros(2, np.int64))
    assert against[0].tolist() == [x < 55 for x in range(128)]  # below G3: against the bass, which rose
    assert not against[1].any()  # the bass has no voice below it
    target = np.zeros((1, 1 + 2 * 128), np.float32)
    target[0, 0], target[0, 1 + 69], target[0, 1 + 128:1 + 128 + 128] = 57, 1.0, against[0]
    logits = np.full((1, 128), -30.0)
    logits[0, [69, 55, 53, 50]] = np.log([0.4, 0.3, 0.2, 0.1])  # A4 (parallel), G3 (stays), F3 and D3 (against)
    teacher = anchored_targets({"pitch": target, "step": np.zeros(1, np.int32), "duration": np.zeros(1, np.int32)},
                               {"pitch": logits, "step": np.zeros((1, 2)), "duration": np.zeros((1, 2))})["pitch"]
    assert teacher.shape == (1, 1 + 2 * 128) and teacher[0, 1 + 69] == 1.0  # the mask kept, the column dropped
    q = teacher[0, 129:]
    assert q[69] == 0 and q[55] == pytest.approx(0.3, abs=1e-6)  # standing still gets none of it
    assert q[53] == pytest.approx(0.2 + 0.4 * 2 / 3, abs=1e-6) and q[50] == pytest.approx(0.1 + 0.4 / 3, abs=1e-6)
    with pytest.raises(ValueError, match="contrary"):
        replace(config, anchor=0.0)


def test_the_loss_adds_the_cross_entropy_against_the_teacher_and_the_unlikelihood() -> None:
    logits = np.log(np.array([[0.7, 0.2, 0.1]], np.float32))
    teacher = [0.0, 0.5, 0.5]
    step = np.array([[1] + teacher], np.float32)
    values = keras.ops.convert_to_numpy(anchored_loss(2.0)(step, logits))
    assert values[0] == pytest.approx(-np.log(0.2) - 2.0 * (0.5 * np.log(0.2) + 0.5 * np.log(0.1)), rel=1e-4)
    pitch = np.array([[1, 1, 0, 0] + teacher], np.float32)  # the note 1; pitch 0 (0.7) to avoid
    values = keras.ops.convert_to_numpy(anchored_loss(2.0, 3.0, avoid=True)(pitch, logits))
    expected = -np.log(0.2) - 2.0 * (0.5 * np.log(0.2) + 0.5 * np.log(0.1)) - 3.0 * np.log(0.3)
    assert values[0] == pytest.approx(expected, rel=1e-4)


def test_an_anchored_fine_tuning_stays_nearer_its_teacher_than_a_plain_one(tmp_path: Path) -> None:
    dataset = tiny_dataset()
    config = replace(tiny_config(dataset), learning_rate=0.01)
    teacher = tmp_path / "teacher.keras"
    keras.utils.set_random_seed(0)
    save_model(build_model(config), teacher)  # untrained: a fine-tuning moves far from it
    plain = train(dataset, config, tmp_path / "plain.keras", epochs=1, steps_per_epoch=8, verbose=0, seed=2,
                  init=teacher)
    # With the unlikelihood in one style, and what it takes out given to contrary motion.
    anchoring = replace(config, anchor=50.0, unlikelihood=0.5, unlikelihood_styles=tuple(dataset.styles[:1]),
                        contrary=True)
    anchored = train(dataset, anchoring, tmp_path / "anchored.keras", epochs=1, steps_per_epoch=8, verbose=0,
                     seed=2, init=teacher)
    assert np.isfinite(anchored.history[-1]["loss"]) and np.isfinite(anchored.history[-1]["val_loss"])
    kept = load_model(anchored.model_path)
    assert kept.config == anchoring
    # The report's measure of how far a fine-tuning moved: nothing from itself, less anchored than plain.
    original, moved = load_model(teacher), load_model(plain.model_path)
    for style in dataset.styles:
        assert distance_from(original, original, dataset, style) == {"kl_pitch": 0.0, "kl_step": 0.0}
        near, far = distance_from(kept, original, dataset, style), distance_from(moved, original, dataset, style)
        assert near["kl_pitch"] < 0.5 * far["kl_pitch"] and near["kl_step"] < 0.5 * far["kl_step"]


def test_an_anchor_needs_a_teacher_that_reads_no_input_its_student_lacks(tmp_path: Path) -> None:
    dataset = tiny_dataset()
    config = replace(tiny_config(dataset), anchor=1.0)
    assert not config.density
    with pytest.raises(ValueError, match="teacher"):
        train(dataset, config, tmp_path / "a.keras", epochs=1, steps_per_epoch=1, verbose=0)
    other = tmp_path / "other.keras"
    save_model(build_model(replace(tiny_config(dataset), density=True)), other)
    with pytest.raises(ValueError, match="other inputs"):
        train(dataset, config, tmp_path / "a.keras", epochs=1, steps_per_epoch=1, verbose=0, teacher=other)
    with pytest.raises(ValueError, match="anchor"):
        replace(config, anchor=-1.0)


def test_a_student_with_an_input_its_teacher_lacks_learns_from_it_and_validates_on_the_notes_alone(
        tmp_path: Path) -> None:
    """Distillation into a network trained from scratch (`ml.model.scratch --teacher`): the student reads
    the piece's density, which the teacher never had; its validation loss is the plain one, the measure of
    a run without a teacher, so the two compare."""
    dataset = tiny_dataset()
    teacher = tmp_path / "teacher.keras"
    save_model(build_model(tiny_config(dataset)), teacher)
    student = replace(tiny_config(dataset), density=True, anchor=1.0, dropout=0.0)
    result = train(dataset, student, tmp_path / "student.keras", epochs=1, steps_per_epoch=2, verbose=0,
                   teacher=teacher, seed=5)
    taught = load_model(result.model_path)
    assert taught.config == student and "density" in taught.config.input_names
    # An untrained teacher spreads its probability nearly evenly: its term adds about log(128) nats to
    # the pitch loss in training, and nothing in validation.
    last = result.history[-1]
    assert last["pitch_loss"] - last["val_pitch_loss"] > 0.8 * np.log(128)
    examples = make_examples(dataset, student, "validation") or make_examples(dataset, student, "train")
    batches = WindowBatches(examples, student, train=False, conditioned=True)
    batches.teacher = untaught
    inputs, outputs = batches[0]
    assert outputs["pitch"].shape[1] == 1 + 2 * 128 and not outputs["pitch"][:, 129:].any()
    assert outputs["step"].shape[1] == 1 + student.time_classes and not outputs["step"][:, 1:].any()
    logits = taught.predict_on_batch(inputs)
    anchored = keras.ops.convert_to_numpy(anchored_loss(1.0)(outputs["step"], logits["step"]))
    plain_ce = keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(
        outputs["step"][:, 0].astype(np.int32), logits["step"], from_logits=True))
    assert anchored == pytest.approx(plain_ce, rel=1e-5)
    with pytest.raises(ValueError, match="classes"):
        anchored_targets(outputs, None)
