"""Unlikelihood training: the pitches that would move a voice in parallel fifths or octaves, made unlikely."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

from ml.data.windows import WindowBatches, make_examples, parallel_mask, parallel_slots
from ml.model.config import ModelConfig
from ml.model.network import load_model, parallels_loss
from ml.model.train import train
from tests.tiny import tiny_config, tiny_dataset


def chords(*columns: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Onsets (one beat apart) and pitches of chords given from the lowest note up."""
    onset = np.concatenate([np.full(len(c), float(k)) for k, c in enumerate(columns)])
    return onset, np.concatenate([np.array(c) for c in columns])


def avoided(onset: np.ndarray, pitch: np.ndarray, note: int, duration: np.ndarray | None = None) -> set[int]:
    """The pitches `parallel_slots` marks for note `note` (as `parallel_mask` reads them)."""
    classes, sides, previous = parallel_slots(onset, pitch, duration)
    return {x for x in range(128) for c, s in zip(classes[note], sides[note])
            if c >= 0 and x % 12 == c and s * (x - previous[note]) > 0}


def test_a_voice_that_keeps_a_fifth_or_octave_in_similar_motion_is_marked() -> None:
    # C3 G3 to D3 ?: the upper voice on any A above G3 makes fifths in parallel; A2 below (contrary) does not.
    onset, pitch = chords((48, 55), (50, 57))
    assert avoided(onset, pitch, 3) == {57, 69, 81, 93, 105, 117}
    # Octaves: C3 C4 to D3 ?: any D above C4.
    onset, pitch = chords((48, 60), (50, 62))
    assert 62 in avoided(onset, pitch, 3) and 50 not in avoided(onset, pitch, 3)
    # Four voices, the soprano a fifth above the bass: marked by the bass's motion, not by the others'.
    onset, pitch = chords((48, 55, 64, 67), (50, 55, 65, 69))
    assert avoided(onset, pitch, 7) == {69, 81, 93, 105, 117}  # A above G4: fifths with the bass
    assert avoided(onset, pitch, 5) == {57, 69, 81, 93, 105, 117}  # the tenor too, had it moved up to an A
    assert avoided(onset, pitch, 6) == set()  # the alto, a third above the bass, over a tenor that held


def test_a_note_held_into_the_next_chord_is_a_voice_that_stays() -> None:
    # C3 E3 G3, then D3 and A3 struck while E3 holds: A3 moves in fifths with the bass, over a held voice.
    onset, pitch = np.array([0.0, 0, 0, 1, 1]), np.array([48, 52, 55, 50, 57])
    held = np.array([1.0, 2.0, 1.0, 1.0, 1.0])
    assert avoided(onset, pitch, 4, held) == {57, 69, 81, 93, 105, 117}
    assert avoided(onset, pitch, 4) == set()  # read as struck notes alone, three then two: nothing known
    assert avoided(onset, pitch, 4, np.ones(5)) == set()  # E3 released: two voices then three


def test_oblique_motion_other_intervals_and_chords_of_other_sizes_mark_nothing() -> None:
    for columns in [((48, 55), (48, 57)),  # the bass stays
                    ((48, 52), (50, 54)),  # thirds in parallel are fine
                    ((48, 55, 64), (50, 57))]:  # a voice drops out: which continues which is not known
        onset, pitch = chords(*columns)
        classes, _, _ = parallel_slots(onset, pitch)
        assert (classes == -1).all()
    assert all(len(a) == 0 for a in parallel_slots(np.zeros(0), np.zeros(0, np.int64)))


def test_the_mask_never_marks_the_composer_s_own_note_and_follows_a_transposition() -> None:
    dataset = tiny_dataset()
    config = replace(tiny_config(dataset), unlikelihood=1.0)
    examples = make_examples(dataset, config, "train")
    onset, pitch = chords((48, 55), (50, 57))  # the composer wrote the fifths: still their note
    examples.pitch[:4] = pitch
    examples.parallel_class[:4], examples.parallel_side[:4], examples.parallel_from[:4] = parallel_slots(onset, pitch)
    mask = parallel_mask(examples, np.array([3, 3]), np.array([0, 2]))
    assert not mask[0, 57] and mask[0, 69] and not mask[0, 45]
    assert not mask[1, 59] and mask[1, 71] and not mask[1, 69]  # a tone higher, the same pitches moved
    # Batches carry the note and the mask in one pitch target; a config without the loss, the note alone.
    inputs, targets = WindowBatches(examples, config, train=False, conditioned=True)[0]
    assert targets["pitch"].shape == (len(inputs["pitch"]), 129)
    assert np.array_equal(targets["pitch"][:, 0], examples.pitch[examples.targets[:len(inputs["pitch"])]])
    # The evaluation's plain batches carry the note alone, whatever loss the model was trained with.
    assert WindowBatches(examples, config, train=False)[0][1]["pitch"].ndim == 1
    plain = make_examples(dataset, tiny_config(dataset), "train")
    assert WindowBatches(plain, tiny_config(dataset), train=False)[0][1]["pitch"].ndim == 1
    assert len(plain.parallel_class) == 0  # not computed where not asked for


def test_the_loss_adds_what_the_marked_pitches_are_given_and_nothing_else() -> None:
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]], np.float32))
    note = np.array([[1, 0, 0, 0], [1, 1, 0, 0]], np.float32)  # the note 1; the second marks pitch 0 (0.7)
    values = keras.ops.convert_to_numpy(parallels_loss(2.0)(note, logits))
    assert values[0] == pytest.approx(-np.log(0.2), rel=1e-4)
    assert values[1] == pytest.approx(-np.log(0.2) - 2.0 * np.log(0.3), rel=1e-4)


def test_a_model_trains_with_it_in_the_styles_named_and_keeps_the_setting(tmp_path: Path) -> None:
    dataset = tiny_dataset()
    style = tiny_config(dataset).styles[0]
    config = replace(tiny_config(dataset), unlikelihood=0.5, unlikelihood_styles=(style,))
    with pytest.raises(ValueError, match="unlikelihood_styles"):
        replace(config, unlikelihood_styles=("nowhere",))
    with pytest.raises(ValueError, match="unlikelihood"):
        replace(config, unlikelihood=-1.0)
    result = train(dataset, config, tmp_path / "ul.keras", epochs=1, steps_per_epoch=2, verbose=0)
    assert np.isfinite(result.history[0]["loss"]) and np.isfinite(result.history[0]["val_loss"])
    kept = load_model(result.model_path).config
    assert kept.unlikelihood == 0.5 and kept.unlikelihood_styles == (style,)
    assert ModelConfig.from_dict(kept.to_dict()) == kept


def test_the_notes_the_loss_speaks_of_can_be_drawn_more_often() -> None:
    dataset = tiny_dataset()
    config = replace(tiny_config(dataset), unlikelihood=1.0)
    examples = make_examples(dataset, config, "train")
    examples.parallel_class[:] = -1
    marked = examples.targets[[2, 5]]
    examples.parallel_class[marked, 0] = 9
    order = WindowBatches(examples, config, train=True, seed=1, parallel_weight=3.0)._order
    counts = np.bincount(order, minlength=len(examples))
    assert counts[[2, 5]].tolist() == [3, 3] and set(np.delete(counts, [2, 5]).tolist()) == {1}
    with pytest.raises(ValueError, match="parallel weight"):
        train(dataset, config, Path("unused.keras"), parallel_weight=-1.0)


def test_the_report_counts_the_top_line_s_repeated_notes() -> None:
    from ml.data.notes import NoteSequence
    from ml.evaluation.voice_leading import top_line_repeats

    # Chords under a top line C5 C5 D5 E5 (one repeat in three moves), and a piece of one note.
    onset, pitch = chords((48, 72), (50, 72), (52, 74), (53, 76))
    seq = NoteSequence.from_notes(onset * 0.5, pitch, np.full(len(pitch), 0.5), np.full(len(pitch), 80),
                                  tempo_bpm=120.0, time_signature=(4, 4))
    single = NoteSequence.from_notes(np.zeros(1), np.array([60]), np.ones(1), np.full(1, 80), tempo_bpm=120.0,
                                     time_signature=(4, 4))
    assert top_line_repeats([seq]) == pytest.approx(1 / 3)
    assert top_line_repeats([seq, single]) == pytest.approx(1 / 3)
