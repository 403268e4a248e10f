"""Training windows: every note of some pieces as a target, with the window of notes before it.

The model's inputs per note (key-relative pitch, bar position, beats to the next cadence) are
computed here once per piece; `WindowBatches` cuts the windows and shuffles them for `fit`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from ml.data.datasets import NoteDataset
from ml.data.notes import NoteSequence
from ml.model.config import (
    CADENCE_CLASSES,
    INPUT_NAMES,
    PAD_PITCH,
    PITCHES,
    WINDOW_INPUTS,
    ModelConfig,
    cadence_class,
    key_shift,
    metre_class,
)


@dataclass
class Examples:
    """Every note of some pieces as a prediction target, with what is needed to build its window.

    Time values are already classes of the config's grid; velocity is scaled to 0..1. Pitches are
    relative to each piece's tonic when the config is key-relative.
    """

    pitch: np.ndarray  # int32 [notes] (flat, all pieces of the dataset)
    step: np.ndarray
    duration: np.ndarray
    velocity: np.ndarray
    position: np.ndarray  # int32 [notes]: bar-position class of the note's onset
    cadence: np.ndarray  # int32 [notes]: class of the beats to the next cadence
    targets: np.ndarray  # int64 [examples]: flat index of the note to predict
    first: np.ndarray  # int64 [examples]: flat index of the first note of its piece
    style: np.ndarray  # int32 [examples]
    piece: np.ndarray  # int32 [examples]: piece index in the dataset
    metre: np.ndarray  # int32 [examples]
    mode: np.ndarray  # int32 [examples]

    def __len__(self) -> int:
        return len(self.targets)


def make_examples(dataset: NoteDataset, config: ModelConfig, split: str | None = None,
                  pieces: np.ndarray | None = None) -> Examples:
    """Targets for every note of the chosen pieces (all pieces of `split` by default)."""
    chosen = dataset.indices(split) if pieces is None else np.asarray(pieces)
    style_map = np.array([config.style_index(s) if s in config.styles else -1 for s in dataset.styles])
    targets, first, style, piece, metre, mode = [], [], [], [], [], []
    pitch = dataset.pitch.astype(np.int32)
    position = np.full(len(pitch), config.pad_position, np.int32)
    cadence = np.full(len(pitch), CADENCE_CLASSES - 1, np.int32)
    for i in chosen:
        a, b = int(dataset.offsets[i]), int(dataset.offsets[i + 1])
        if b <= a or style_map[dataset.piece_style[i]] < 0:
            continue
        features = piece_features(dataset.piece(int(i)), config, tonic=int(dataset.piece_key[i]))
        pitch[a:b], position[a:b], cadence[a:b] = features["pitch"], features["position"], features["cadence"]
        targets.append(np.arange(a, b))
        first.append(np.full(b - a, a))
        style.append(np.full(b - a, style_map[dataset.piece_style[i]]))
        piece.append(np.full(b - a, i))
        metre.append(np.full(b - a, metre_class(tuple(dataset.piece_time_signature[i]))))
        mode.append(np.full(b - a, int(dataset.piece_mode[i])))

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return Examples(
        pitch=pitch, step=config.quantize_beats(dataset.step_beats),
        duration=config.quantize_beats(dataset.duration_beats),
        velocity=(dataset.velocity / 127.0).astype(np.float32), position=position, cadence=cadence,
        targets=cat(targets, np.int64), first=cat(first, np.int64), style=cat(style, np.int32),
        piece=cat(piece, np.int32), metre=cat(metre, np.int32), mode=cat(mode, np.int32),
    )


def piece_features(seq: NoteSequence, config: ModelConfig, tonic: int) -> dict[str, np.ndarray]:
    """The model's per-note inputs for a piece: (key-relative) pitch, bar position, beats to cadence.

    A piece's cadences are its phrase ends (fermatas) and its last onset.
    """
    onset = np.round(seq.seconds_to_beats(seq.start) * 48) / 48
    in_bar, _, _ = seq.bar_positions()
    marked = seq.seconds_to_beats(np.array(seq.phrase_ends, dtype=np.float64)) if seq.phrase_ends else np.zeros(0)
    ends = np.array(sorted({round(float(e) * 48) / 48 for e in marked} | {float(onset.max())}))
    upcoming = ends[np.clip(np.searchsorted(ends, onset - 1e-6), 0, len(ends) - 1)]
    shift = key_shift(tonic) if config.key_relative else 0
    pitch = np.clip(seq.pitch.astype(np.int32) - shift, 0, PITCHES - 1)
    return {"pitch": pitch, "position": config.position_class(in_bar), "cadence": cadence_class(upcoming - onset)}


def batch_arrays(ex: Examples, rows: np.ndarray, config: ModelConfig,
                 rng: np.random.Generator | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Inputs and targets for the examples `rows`; with `rng`, transpose each example at random."""
    target = ex.targets[rows]
    idx = target[:, None] - config.window + np.arange(config.window)[None, :]
    pad = idx < ex.first[rows][:, None]
    idx = np.where(pad, 0, idx)
    pitch = ex.pitch[idx]
    next_pitch = ex.pitch[target]
    if rng is not None and config.transpose_range and not config.key_relative:
        shift = rng.integers(-config.transpose_range, config.transpose_range + 1, size=len(rows))
        lo = np.where(pad, 127, pitch).min(axis=1)
        hi = np.where(pad, 0, pitch).max(axis=1)
        lo, hi = np.minimum(lo, next_pitch), np.maximum(hi, next_pitch)
        shift = np.where((lo + shift >= 0) & (hi + shift <= 127), shift, 0)
        pitch = pitch + shift[:, None]
        next_pitch = next_pitch + shift
    inputs = {
        "pitch": np.where(pad, PAD_PITCH, pitch).astype(np.int32),
        "step": np.where(pad, config.pad_time, ex.step[idx]).astype(np.int32),
        "duration": np.where(pad, config.pad_time, ex.duration[idx]).astype(np.int32),
        "velocity": np.where(pad, 0.0, ex.velocity[idx]).astype(np.float32),
        "position": np.where(pad, config.pad_position, ex.position[idx]).astype(np.int32),
        "cadence": np.where(pad, CADENCE_CLASSES, ex.cadence[idx]).astype(np.int32),
        "style": ex.style[rows],
        "metre": ex.metre[rows],
        "mode": ex.mode[rows],
        "next_step": ex.step[target].astype(np.int32),
        "next_position": ex.position[target].astype(np.int32),
        "next_cadence": ex.cadence[target].astype(np.int32),
    }
    outputs = {
        "pitch": next_pitch.astype(np.int32),
        "step": ex.step[target].astype(np.int32),
        "duration": ex.duration[target].astype(np.int32),
        "velocity": ex.velocity[target][:, None],
    }
    return inputs, outputs


class WindowBatches(keras.utils.PyDataset):
    """Shuffled, augmented batches for training, or ordered, plain batches for evaluation."""

    def __init__(self, examples: Examples, config: ModelConfig, *, train: bool, seed: int = 0,
                 steps: int | None = None, style_weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.ex, self.config, self.train, self.seed = examples, config, train, seed
        self.epoch = 0
        self.steps = steps
        # Per example, how often an epoch draws it: 1, or its style's weight (oversampling).
        self.weights = np.ones(len(examples))
        for name, weight in (style_weights or {}).items():
            self.weights[examples.style == config.style_index(name)] = weight
        self._order = self._shuffle()

    def _shuffle(self) -> np.ndarray:
        if not self.train:
            return np.arange(len(self.ex))
        rng = np.random.default_rng((self.seed, self.epoch))
        # A weight of 2.5 draws an example twice, and a third time with probability 0.5.
        copies = np.floor(self.weights).astype(np.int64)
        copies += rng.random(len(self.weights)) < self.weights - copies
        return rng.permutation(np.repeat(np.arange(len(self.ex)), copies))

    def __len__(self) -> int:
        full = math.ceil(len(self._order) / self.config.batch_size)
        return min(full, self.steps) if self.steps else full

    def __getitem__(self, i: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        rows = self._order[i * self.config.batch_size:(i + 1) * self.config.batch_size]
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.train else None
        return batch_arrays(self.ex, rows, self.config, rng)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._shuffle()


def as_tf_dataset(batches: WindowBatches) -> Any:
    """Wrap batches in tf.data with prefetching when TensorFlow is the backend; else return them."""
    if keras.backend.backend() != "tensorflow":
        return batches
    import tensorflow as tf

    c = batches.config
    w = c.window
    spec_in = {name: tf.TensorSpec((None, w) if name in WINDOW_INPUTS else (None,),
                                   tf.float32 if name == "velocity" else tf.int32) for name in INPUT_NAMES}
    spec_out = {
        "pitch": tf.TensorSpec((None,), tf.int32), "step": tf.TensorSpec((None,), tf.int32),
        "duration": tf.TensorSpec((None,), tf.int32), "velocity": tf.TensorSpec((None, 1), tf.float32),
    }

    def generate() -> Iterator[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        while True:  # endless; fit() bounds each epoch with steps_per_epoch = len(batches)
            for i in range(len(batches)):
                yield batches[i]
            batches.on_epoch_end()

    return tf.data.Dataset.from_generator(generate, output_signature=(spec_in, spec_out)).prefetch(4)
