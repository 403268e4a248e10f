from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ml.data.windows import WindowBatches, batch_arrays, make_examples, noisy, own_samples
from ml.model.config import ModelConfig, key_shift, read_model_info
from ml.model.network import build_model, compile_model, load_model, save_model
from ml.model.train import train
from tests.tiny import tiny_config, tiny_dataset


@pytest.mark.parametrize("overrides, message", [
    ({"styles": ()}, "at least one style"),
    ({"styles": ("a", "a")}, "unique"),
    ({"window": 0}, "window must be a positive"),
    ({"dropout": 1.5}, "dropout"),
    ({"input_noise": 1.0}, "input_noise"),
    ({"own_samples": 1.5}, "own_samples"),
    ({"loss_weights": {"pitch": 1.0}}, "loss_weights"),
    ({"default_tempos": (500.0,)}, "tempo"),
    ({"time_grid": (0.5, 0.25)}, "time_grid"),
])
def test_config_rejects_bad_values_with_a_readable_message(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{"styles": ("a",), **overrides})


def test_config_round_trips_through_a_dict() -> None:
    config = ModelConfig(styles=("chorale", "folk"), default_tempos=(72.0, 96.0), window=16)
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_time_quantization_keeps_grid_values_exact() -> None:
    config = ModelConfig(styles=("a",))
    values = np.array([0.0, 0.25, 1 / 3, 0.5, 1.0, 1.5, 4.0])
    assert np.allclose(config.beats_of(config.quantize_beats(values)), values)
    assert config.beats_of(config.quantize_beats(np.array([0.49, 100.0]))).tolist() == [0.5, 16.0]


def test_windows_are_padded_at_piece_starts_and_never_cross_pieces() -> None:
    dataset = tiny_dataset()
    config = tiny_config(dataset)
    examples = make_examples(dataset, config, "train")
    first_of_second_piece = int(np.flatnonzero(examples.piece == examples.piece[-1])[0])
    inputs, outputs = batch_arrays(examples, np.array([first_of_second_piece]), config)
    assert (inputs["pitch"][0] == 128).all()  # nothing from the previous piece leaks in
    assert (inputs["position"][0] == config.pad_position).all()
    # Pitches are learnt relative to the piece's tonic, moved to C.
    target = examples.targets[first_of_second_piece]
    piece = int(examples.piece[first_of_second_piece])
    assert outputs["pitch"][0] == dataset.pitch[target] - key_shift(int(dataset.piece_key[piece]))
    assert inputs["next_position"][0] == examples.position[target]


def test_input_noise_replaces_a_share_of_the_notes_read_and_never_what_is_predicted() -> None:
    rng = np.random.default_rng(0)
    pad = np.zeros((400, 24), bool)
    pad[:, :4] = True  # the first notes of a piece: nothing before them
    pitch = np.where(pad, 128, 60 + rng.integers(0, 12, pad.shape) + 24 * (np.arange(400) % 2)[:, None])
    out = noisy(pitch, pad, 0.2, np.random.default_rng(1), within_window=True)
    changed = out != pitch
    assert 0.15 < changed[~pad].mean() < 0.2 and not changed[pad].any()  # a share (some draw their own note)
    for row in range(400):  # a pitch is another note of its own window: its key and its register
        assert set(out[row][~pad[row]]) <= set(pitch[row][~pad[row]])
    steps = np.where(pad, 99, np.tile([10, 16], (400, 12)))
    drawn = noisy(steps, pad, 0.2, np.random.default_rng(2))
    assert set(np.unique(drawn[~pad])) == {10, 16} and (drawn[pad] == 99).all()  # note values of the batch
    assert noisy(steps, pad, 0.0, np.random.default_rng(2)) is steps

    dataset = tiny_dataset()
    config = replace(tiny_config(dataset), input_noise=0.5)
    examples = make_examples(dataset, config, "train")
    batches = WindowBatches(examples, config, train=True, seed=3)
    noised, targets = batches[0]
    true, true_targets = batch_arrays(examples, batches._order[:config.batch_size], config,
                                      np.random.default_rng((3, 0, 0)))
    real = true["pitch"] != 128
    assert (noised["pitch"] != true["pitch"])[real].mean() > 0.2  # the notes read are noised in training
    for name in ("position", "cadence", "next_step", "next_position"):  # where they fall stays true
        assert np.array_equal(noised[name], true[name])
    assert all(np.array_equal(targets[name], true_targets[name]) for name in targets)  # and what is predicted
    evaluation, _ = WindowBatches(examples, config, train=False)[0]
    assert np.array_equal(evaluation["pitch"], batch_arrays(examples, np.arange(len(evaluation["pitch"])),
                                                            config)[0]["pitch"])  # evaluation reads true notes


def _sure(config: ModelConfig, rows: int, pitch: int, step: int, duration: int) -> dict[str, np.ndarray]:
    """The outputs of a network sure of one note."""
    out = {"pitch": np.full((rows, 129), -50.0), "step": np.full((rows, config.time_classes), -50.0),
           "duration": np.full((rows, config.time_classes), -50.0)}
    out["pitch"][:, pitch], out["step"][:, step], out["duration"][:, duration] = 50.0, 50.0, 50.0
    return out


def test_own_samples_put_the_network_s_note_last_in_the_window_and_keep_the_real_targets(tmp_path: Path) -> None:
    dataset = tiny_dataset()
    config = replace(tiny_config(dataset), own_samples=1.0)
    examples = make_examples(dataset, config, "train")
    calls: list[int] = []

    def certain(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["pitch"]))
        return _sure(config, len(inputs["pitch"]), 7, 5, 9)

    batches = WindowBatches(examples, config, train=True, seed=3)
    rows = batches._order[:config.batch_size]
    plain, plain_targets = batches[0]
    batches.predict = certain
    inputs, targets = batches[0]
    after_a_note = examples.targets[rows] - 1 >= examples.first[rows]  # the first note of a piece reads nothing
    assert calls == [int(after_a_note.sum())] and after_a_note.any() and not after_a_note.all()
    assert (inputs["pitch"][after_a_note, -1] == 7).all() and (inputs["step"][after_a_note, -1] == 5).all()
    assert (inputs["duration"][after_a_note, -1] == 9).all()
    assert np.array_equal(inputs["pitch"][~after_a_note], plain["pitch"][~after_a_note])
    assert np.array_equal(inputs["pitch"][:, :-1], plain["pitch"][:, :-1])  # only the last note is its own
    assert all(np.array_equal(targets[name], plain_targets[name]) for name in targets)  # what it learns stays real
    none = own_samples(examples, rows, config, plain, certain, 0.0, np.random.default_rng(0))
    assert none is plain and len(calls) == 1

    # Training draws them from the network as it learns.
    result = train(dataset, replace(config, own_samples=0.5), tmp_path / "own.keras", epochs=1, steps_per_epoch=2,
                   verbose=0)
    assert np.isfinite(result.history[0]["loss"]) and load_model(result.model_path).config.own_samples == 0.5


def test_deeper_own_samples_draw_the_last_notes_in_order_each_reading_the_ones_drawn_before_it() -> None:
    dataset = tiny_dataset()
    config = replace(tiny_config(dataset), own_samples=1.0, own_depth=3)
    examples = make_examples(dataset, config, "train")
    seen: list[dict[str, np.ndarray]] = []

    def sure_of_the_next(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # pitch 7, then 8, then 9
        seen.append(inputs)
        return _sure(config, len(inputs["pitch"]), 6 + len(seen), 5, 9 + len(seen))

    batches = WindowBatches(examples, config, train=True, seed=3)
    rows = batches._order[:config.batch_size]
    plain, plain_targets = batches[0]
    batches.predict = sure_of_the_next
    inputs, targets = batches[0]
    deep_enough = examples.targets[rows] - 3 >= examples.first[rows]
    assert deep_enough.any() and not deep_enough.all() and len(seen) == 3
    assert all(len(s["pitch"]) == int(deep_enough.sum()) for s in seen)
    assert (seen[1]["pitch"][:, -1] == 7).all() and (seen[2]["pitch"][:, -2:] == [7, 8]).all()
    assert (seen[2]["duration"][:, -2:] == [10, 11]).all()
    assert (inputs["pitch"][deep_enough, -3:] == [7, 8, 9]).all()
    assert (inputs["duration"][deep_enough, -3:] == [10, 11, 12]).all()
    assert np.array_equal(inputs["step"], plain["step"])  # the rhythm stays real, so bar positions do
    assert np.array_equal(inputs["pitch"][~deep_enough], plain["pitch"][~deep_enough])
    assert np.array_equal(inputs["pitch"][:, :-3], plain["pitch"][:, :-3])
    assert all(np.array_equal(targets[name], plain_targets[name]) for name in targets)
    with pytest.raises(ValueError, match="own_depth"):
        replace(config, own_depth=config.window + 1)
    # Lengths alone: the pitches stay real too.
    seen.clear()
    batches.predict = sure_of_the_next
    batches.config = replace(config, own_fields=("duration",))
    inputs, _ = batches[0]
    assert (inputs["duration"][deep_enough, -3:] == [10, 11, 12]).all()
    assert np.array_equal(inputs["pitch"], plain["pitch"]) and np.array_equal(inputs["step"], plain["step"])
    with pytest.raises(ValueError, match="own_fields"):
        replace(config, own_fields=("step",))


def test_save_and_load_give_identical_predictions(tmp_path: Path) -> None:
    dataset = tiny_dataset()
    config = tiny_config(dataset)
    model = build_model(config, extra={"note": "kept"})
    inputs, _ = WindowBatches(make_examples(dataset, config, "validation"), config, train=False)[0]
    before = model(inputs)
    save_model(model, tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    after = loaded(inputs)
    for head in ("pitch", "step", "duration", "velocity"):
        np.testing.assert_allclose(np.asarray(before[head]), np.asarray(after[head]), rtol=1e-6, atol=1e-6)
    assert loaded.extra == {"note": "kept"}
    assert read_model_info(tmp_path / "m.keras")["config"] == config


def test_broken_model_file_raises_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="broken"):
        load_model(tmp_path / "bad.keras")
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "missing.keras")


def test_one_epoch_of_training_lowers_the_loss(tmp_path: Path) -> None:
    dataset = tiny_dataset()
    config = replace(tiny_config(dataset), learning_rate=2e-2)
    examples = make_examples(dataset, config, "train")
    batches = WindowBatches(examples, config, train=False)
    untrained = build_model(config)
    compile_model(untrained)
    before = untrained.evaluate(batches, verbose=0, return_dict=True)["loss"]
    result = train(dataset, config, tmp_path / "one.keras", epochs=1, verbose=0)
    trained = load_model(result.model_path)
    compile_model(trained)
    after = trained.evaluate(batches, verbose=0, return_dict=True)["loss"]
    assert after < before
    assert (tmp_path / "one.history.json").exists() and (tmp_path / "one.loss.png").exists()
    assert "primers" not in trained.extra and trained.extra["stats"]["beta"]["notes_per_beat"] > 0
    assert trained.extra["stats"]["alpha"]["keys"]  # the keys a piece in "any key" is drawn from


def test_oversampling_draws_a_style_more_often_and_validation_stays_plain() -> None:
    dataset = tiny_dataset()
    config = tiny_config(dataset)
    examples = make_examples(dataset, config, "train")
    beta = config.style_index("beta")
    plain = WindowBatches(examples, config, train=True)
    boosted = WindowBatches(examples, config, train=True, style_weights={"beta": 3.0, "alpha": 0.5})
    share = lambda batches: float(np.mean(examples.style[batches._order] == beta))  # noqa: E731
    assert share(boosted) > share(plain) + 0.2
    # Every beta window is drawn exactly three times; about half of the alpha windows once.
    counts = np.bincount(boosted._order, minlength=len(examples))
    assert set(counts[examples.style == beta].tolist()) == {3}
    assert 0.3 < counts[examples.style != beta].mean() < 0.7
    assert len(boosted) == -(-len(boosted._order) // config.batch_size)
    assert WindowBatches(examples, config, train=False, style_weights={"beta": 3.0})._order.tolist() == \
        list(range(len(examples)))


def test_cadence_weight_draws_the_notes_that_close_a_phrase_more_often() -> None:
    dataset = tiny_dataset()
    config = tiny_config(dataset)
    examples = make_examples(dataset, config, "train")
    # Independently of the weighting: a target closes a phrase when its piece's last onset is at
    # most two beats after it (tiny pieces mark no phrase ends).
    last_onset = np.array([examples.onset[examples.first[i]:examples.last[i]].max() for i in range(len(examples))])
    closing = last_onset - examples.onset[examples.targets] <= 2.0
    assert 0 < closing.sum() < len(examples)
    counts = np.bincount(WindowBatches(examples, config, train=True, cadence_weight=4.0)._order,
                         minlength=len(examples))
    assert set(counts[closing].tolist()) == {4} and set(counts[~closing].tolist()) == {1}
    with pytest.raises(ValueError, match="cadence weight"):
        train(dataset, config, Path("unused.keras"), epochs=1, verbose=0, cadence_weight=-1.0)


@pytest.mark.parametrize("weights", [{"nobody": 2.0}, {"beta": -1.0}, {"beta": float("nan")}])
def test_training_refuses_bad_style_weights_before_it_starts(tmp_path: Path, weights: dict) -> None:
    dataset = tiny_dataset()
    with pytest.raises(ValueError, match="Style weights"):
        train(dataset, tiny_config(dataset), tmp_path / "m.keras", epochs=1, verbose=0, style_weights=weights)
    assert not (tmp_path / "m.keras").exists()
