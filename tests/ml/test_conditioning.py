"""What a model reads besides the notes before it: the harmony of each half bar, the notes after a
gap, and velocities taken from a score's dynamics. The data side, the network, and generation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ml.data.datasets import score_to_notes
from ml.data.dynamics import LEVELS, beat_length, metric_accent
from ml.data.windows import batch_arrays, half_bar_harmony, make_examples
from ml.generation.generator import Generator
from ml.generation.infill import Passage
from ml.generation.request import GenerationRequest
from ml.generation.steps import CompiledSteps
from ml.model.config import PAD_PITCH, UNTIL_CLASSES, key_shift, until_class
from ml.model.network import build_model, dummy_inputs, load_model, warm_start
from tests.tiny import tiny_config, tiny_dataset


# -- the harmony of a half bar ------------------------------------------------------------------
def test_a_half_bar_harmony_holds_its_long_tones_and_leaves_a_passing_note_out() -> None:
    # 4/4: the first half bar is a C major triad held two beats under a melody E-D(passing)-E;
    # the second half is G-B-D. A held bass counts for the time it sounds in each half.
    notes = [  # onset, duration (beats), pitch
        (0.0, 2.0, 48), (0.0, 2.0, 55), (0.0, 1.0, 64), (1.0, 0.25, 62), (1.25, 0.75, 64),
        (2.0, 2.0, 43), (2.0, 2.0, 59), (2.0, 2.0, 62), (2.0, 2.0, 67),
    ]
    onset = np.array([n[0] for n in notes])
    duration = np.array([n[1] for n in notes])
    pitch = np.array([n[2] for n in notes])
    in_bar = onset % 4
    chords = half_bar_harmony(onset, duration, pitch, in_bar, np.full(len(notes), 4.0))
    first, second = chords[0], chords[5]
    assert set(np.flatnonzero(first)) == {0, 4, 7}  # C E G; the passing D (1/16 of the time) is out
    assert set(np.flatnonzero(second)) == {7, 11, 2}
    assert (chords[:5] == first).all() and (chords[5:] == second).all()
    # In 3/4 the harmony span is the whole bar.
    three = half_bar_harmony(np.array([0.0, 2.0]), np.array([2.0, 1.0]), np.array([60, 67]),
                             np.array([0.0, 2.0]), np.full(2, 3.0))
    assert (three[0] == three[1]).all() and set(np.flatnonzero(three[0])) == {0, 7}


def test_training_batches_show_chords_and_future_notes_to_about_half_the_windows() -> None:
    dataset = tiny_dataset()
    config = tiny_config(dataset)
    examples = make_examples(dataset, config, "train")
    rows = np.arange(min(len(examples), 256))
    inputs, _ = batch_arrays(examples, rows, config, np.random.default_rng(0))
    with_chords = inputs["next_chord"].sum(axis=1) > 0
    with_future = inputs["future_pitch"][:, 0] != PAD_PITCH
    assert 0.3 < with_chords.mean() < 0.7 and 0.2 < with_future.mean() < 0.7
    assert (inputs["chord"][~with_chords] == 0).all()
    assert (inputs["future_pitch"][~with_future] == PAD_PITCH).all()
    assert (inputs["until"][~with_future] == UNTIL_CLASSES - 1).all()
    # A shown future is notes that really follow in the same piece, and `next_until` the beats from
    # the note to predict to the first of them.
    for v in np.flatnonzero(with_future)[:20]:
        target, last = int(examples.targets[rows[v]]), int(examples.last[rows[v]])
        valid = int((inputs["future_pitch"][v] != PAD_PITCH).sum())
        starts = [k for k in range(target + 1, last - valid + 1)
                  if (examples.pitch[k:k + valid] == inputs["future_pitch"][v, :valid]).all()
                  and (examples.duration[k:k + valid] == inputs["future_duration"][v, :valid]).all()
                  and inputs["next_until"][v] == until_class(examples.onset[k] - examples.onset[target])]
        assert starts, f"example {v}: its future notes are not in its piece after it"
    # Without a random generator (plain generation, the evaluation's cross-entropy) nothing is shown.
    plain, _ = batch_arrays(examples, rows, config, None)
    assert (plain["next_chord"] == 0).all() and (plain["until"] == UNTIL_CLASSES - 1).all()


# -- the network ----------------------------------------------------------------------------------
def test_a_model_with_new_inputs_starts_out_computing_what_the_old_one_did(
        old_tiny_model_path: Path, tiny_model_path: Path) -> None:
    old = load_model(old_tiny_model_path)
    config = dataclasses.replace(old.config, chords=True, future=6, future_units=4, until_embedding=2)
    new = build_model(config)
    assert "project" in warm_start(new, old) and "decoder_hidden" in warm_start(new, old)
    rng = np.random.default_rng(1)
    x = dummy_inputs(config, 3)
    x["pitch"][:] = rng.integers(50, 70, x["pitch"].shape)
    x["chord"][:] = rng.integers(0, 2, x["chord"].shape)
    x["next_chord"][:] = 1
    x["future_pitch"][:] = 64
    x["until"][:] = 4
    ours = new(x)
    theirs = old({k: v for k, v in x.items() if k in old.config.input_names})
    for head in ("pitch", "step", "duration", "velocity"):
        np.testing.assert_allclose(np.asarray(ours[head]), np.asarray(theirs[head]), atol=1e-5)
    # ... and once trained, what it reads changes what it predicts.
    trained = load_model(tiny_model_path)
    x = dummy_inputs(trained.config, 2)
    x["next_chord"][1, [0, 4, 7]] = 1
    x["future_pitch"][1] = 60
    x["until"][1] = 2
    out = np.asarray(trained(x)["pitch"])
    assert not np.allclose(out[0], out[1])


def test_the_compiled_steps_compute_what_the_network_does(tiny_model_path: Path) -> None:
    model = load_model(tiny_model_path)
    config = model.config
    steps = CompiledSteps(model, 2)
    window = {k: v for k, v in dummy_inputs(config, 2).items() if k in config.window_inputs}
    future = {k: v for k, v in dummy_inputs(config, 2).items() if k.startswith("future_") or k == "until"}
    future["future_pitch"][0] = 67
    future["until"][0] = 3
    steps.reset(window, {"style": 0, "metre": 0, "mode": np.array([0, 1], np.int32)}, future)
    steps.encode(None)
    note = {"pitch": np.array([60, 62]), "step": np.array([4, 4]), "duration": np.array([4, 4]),
            "velocity": np.array([0.6, 0.7], np.float32), "position": np.array([0, 12]),
            "cadence": np.array([16, 16]), "chord": np.eye(12, dtype=np.float32)[[0, 7]],
            "until": np.array([2, UNTIL_CLASSES - 1])}
    step_logits = steps.encode(note)
    chord = np.zeros((2, 12), np.float32)
    chord[0, [0, 4, 7]] = 1
    pitch, _, velocity = steps.decode(np.array([4, 4]), np.array([12, 24]), np.array([16, 16]),
                                      np.array([1, UNTIL_CLASSES - 1]), chord)
    # The same inputs through the plain network.
    x = dummy_inputs(config, 2)
    for key in config.window_inputs:
        x[key] = np.concatenate([window[key][:, 1:], note[key][:, None].astype(x[key].dtype)], axis=1)
    x.update({k: v for k, v in future.items() if k != "until"})
    x.update(style=np.zeros(2, np.int32), metre=np.zeros(2, np.int32), mode=np.array([0, 1], np.int32),
             until=note["until"].astype(np.int32), next_step=np.array([4, 4], np.int32),
             next_position=np.array([12, 24], np.int32), next_cadence=np.array([16, 16], np.int32),
             next_until=np.array([1, UNTIL_CLASSES - 1], np.int32), next_chord=chord)
    out = model(x)
    np.testing.assert_allclose(step_logits, np.asarray(out["step"]), atol=1e-4)
    np.testing.assert_allclose(pitch, np.asarray(out["pitch"]), atol=1e-4)
    np.testing.assert_allclose(velocity, np.asarray(out["velocity"]), atol=1e-4)


# -- generation -----------------------------------------------------------------------------------
def test_a_passage_is_written_reading_the_bars_after_it(generator: Generator) -> None:
    assert generator.config.future and generator.config.chords
    piece = generator.generate(GenerationRequest(style="alpha", seconds=16, tempo_bpm=120, seed=4))[0]
    assert piece.plan is not None
    passage = Passage(notes=piece.notes, plan=piece.plan, plan_start=piece.plan_start, key=piece.key,
                      first_bar=3, last_bar=4)
    seen: list[dict[str, np.ndarray]] = []
    original = CompiledSteps.set_future

    def spy(self: CompiledSteps, future: dict[str, np.ndarray] | None) -> None:
        if future is not None:
            seen.append({k: v.copy() for k, v in future.items()})
        original(self, future)

    CompiledSteps.set_future = spy  # type: ignore[method-assign]
    try:
        new = generator.regenerate(passage, GenerationRequest(style="alpha", seconds=16, seed=2, variations=2))
    finally:
        CompiledSteps.set_future = original  # type: ignore[method-assign]
    assert len(new.notes)
    kept = passage.after(key_shift(passage.key[0]))
    first = seen[0]
    # Every line reads the first kept notes after the gap (key-relative), and how far off they are.
    n = min(len(kept), generator.config.future)
    assert n and all(list(first["future_pitch"][v, :n]) == [p for _, p, _, _ in kept[:n]] for v in range(2))
    assert (first["until"] < UNTIL_CLASSES - 1).all()


def test_requested_chords_reach_the_network_as_pitch_classes(generator: Generator) -> None:
    request = GenerationRequest(style="alpha", notes=24, seed=3, key="D", chords="D G A D")
    calls: list[np.ndarray] = []
    original = CompiledSteps.decode

    def spy(self: CompiledSteps, *args: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        calls.append(np.asarray(args[4]).copy())
        return original(self, *args)

    CompiledSteps.decode = spy  # type: ignore[method-assign,assignment]
    try:
        generator.generate(request)
    finally:
        CompiledSteps.decode = original  # type: ignore[method-assign]
    # D major in D, key-relative: the tonic triad is 0, 4, 7; G is 5, 9, 0; A is 7, 11, 2.
    seen = {tuple(np.flatnonzero(c[0])) for c in calls}
    assert (0, 4, 7) in seen and (0, 5, 9) in seen and (2, 7, 11) in seen


# -- velocities from the score --------------------------------------------------------------------
def test_velocities_follow_the_written_dynamics_a_hairpin_an_accent_and_the_bar(tmp_path: Path) -> None:
    from music21 import articulations, dynamics, meter, note, stream

    part = stream.Part()
    part.append(meter.TimeSignature("4/4"))
    notes = [note.Note("C4", quarterLength=1) for _ in range(16)]
    for n in notes:
        part.append(n)
    part.insert(0, dynamics.Dynamic("p"))
    part.insert(8, dynamics.Dynamic("f"))
    wedge = dynamics.Crescendo(notes[4], notes[7])
    part.insert(0, wedge)
    notes[13].articulations.append(articulations.Accent())
    score = stream.Score([part])
    path = tmp_path / "dynamics.musicxml"
    score.write("musicxml", fp=str(path))
    seq = score_to_notes(str(path), None, 100.0)
    v = seq.velocity.astype(int)
    assert v[1] == LEVELS["p"] and v[9] == LEVELS["f"]  # beats 2 of bars 1 and 3: the written level
    assert v[0] > v[1] and v[8] > v[9]  # the downbeat weighs more
    assert v[5] < v[6] < v[7] < LEVELS["f"]  # the crescendo climbs towards the f
    assert v[13] > v[14]  # the accent


def test_the_pulse_of_the_bar_counts_dotted_quarters_in_compound_time() -> None:
    assert beat_length((6, 8)) == 1.5 and beat_length((3, 4)) == 1.0 and beat_length((2, 2)) == 2.0
    accent = metric_accent(np.array([0.0, 0.5, 1.0, 1.5, 2.5]), 1.5)
    assert list(accent[[0, 3]]) == [6, 0] and (accent[[1, 2, 4]] < 0).all()


def test_the_conditioning_report_reads_the_same_notes_four_ways(
        old_tiny_model_path: Path, tiny_model_path: Path) -> None:
    from ml.evaluation.conditioning import conditioning_report

    model = load_model(tiny_model_path)
    report = conditioning_report(model, tiny_dataset(), split="test", max_notes=200, batch_size=64)
    assert set(report["all"]) == {"plain", "chords", "future", "both"}
    assert all(row["notes"] == report["notes"] for row in report["all"].values())
    # A tiny model trained for seconds: reading what follows a gap must at least not mislead it.
    assert report["all"]["future"]["pitch_ce"] < report["all"]["plain"]["pitch_ce"] + 0.05
    old = load_model(old_tiny_model_path)
    with pytest.raises(ValueError, match="neither"):
        conditioning_report(old, tiny_dataset())


def test_validation_shows_the_training_shares_the_same_way_every_epoch() -> None:
    from ml.data.windows import WindowBatches

    dataset = tiny_dataset()
    config = tiny_config(dataset)
    examples = make_examples(dataset, config, "validation")
    batches = WindowBatches(examples, config, train=False, conditioned=True)
    first, _ = batches[0]
    batches.on_epoch_end()
    again, _ = batches[0]
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert 0 < (first["next_chord"].sum(axis=1) > 0).mean() < 1
    plain, _ = WindowBatches(examples, config, train=False)[0]
    assert (plain["next_chord"] == 0).all() and (plain["future_pitch"] == PAD_PITCH).all()
