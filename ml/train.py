"""Training: windows of notes from a `NoteDataset`, fed to Keras `fit`.

Command line (thin; `manage.py train` calls the same `main`):

    python -m ml.train --corpus --max-pieces-per-style 600 --out ml/pretrained/default.keras
    python -m ml.train --dataset data/cache/foo.npz --epochs 30 --out run/model.keras --resume
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ml.config import CADENCE_CLASSES, METRES, PAD_PITCH, PITCHES, ModelConfig, cadence_class, key_shift, metre_class
from ml.datasets import CORPUS_STYLES, NoteDataset, corpus_dataset
from ml.model import (
    INPUT_NAMES,
    WINDOW_INPUTS,
    build_model,
    compile_model,
    load_model,
    save_model,
    warm_start,
    warm_start_from_v1,
)
from ml.notes import NoteSequence


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


def style_stats(dataset: NoteDataset) -> dict[str, dict[str, Any]]:
    """Per-style rates that generation uses to tell whether a requested length is reachable."""
    stats = {}
    for style in dataset.styles:
        rows = np.concatenate([np.arange(dataset.offsets[i], dataset.offsets[i + 1])
                               for i in dataset.indices("train", style)] or [np.zeros(0, np.int64)])
        beats = float(dataset.step_beats[rows].sum())
        pieces = dataset.indices("train", style)
        keys = Counter(f"{int(dataset.piece_key[i])}:{'minor' if dataset.piece_mode[i] else 'major'}" for i in pieces)
        onsets = int((dataset.step_beats[rows] > 0).sum()) + len(pieces)
        stats[style] = {"notes_per_beat": round(len(rows) / beats, 3) if beats > 0 else 4.0,
                        "median_step_beats": float(np.median(dataset.step_beats[rows])) if len(rows) else 0.5,
                        "notes_per_onset": round(len(rows) / max(1, onsets), 3),
                        # Share of pieces with marked phrase ends (fermatas): their phrases all cadence.
                        "phrase_marks": round(float(np.mean([dataset.phrase_offsets[i + 1] > dataset.phrase_offsets[i]
                                                             for i in pieces])) if len(pieces) else 0.0, 3),
                        "keys": dict(keys.most_common()),
                        # Training pieces per time signature class: which metres the style has learnt.
                        "metres": dict(Counter(METRES[metre_class(tuple(dataset.piece_time_signature[i]))]
                                               for i in pieces).most_common())}
    return stats


class _JsonHistory(keras.callbacks.Callback):
    """Writes the metrics of every epoch as JSON, so a run can be watched and resumed."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.history: list[dict[str, float]] = json.loads(path.read_text()) if path.exists() else []
        self._start = time.time()

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        row = {"epoch": epoch + 1, "seconds": round(time.time() - self._start, 1)}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.history = [h for h in self.history if h["epoch"] != epoch + 1] + [row]
        self.path.write_text(json.dumps(self.history, indent=1))


@dataclass
class TrainResult:
    model_path: Path
    history: list[dict[str, float]]
    seconds: float


class _TimeLimit(keras.callbacks.Callback):
    """Stops after the epoch that passes the time budget (the best weights are still restored)."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.deadline = time.time() + minutes * 60

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if time.time() > self.deadline:
            self.model.stop_training = True


def train(dataset: NoteDataset, config: ModelConfig, out: Path, *, epochs: int = 30, patience: int = 4,
          steps_per_epoch: int | None = None, resume: bool = False, seed: int = 0, verbose: int = 1,
          max_minutes: float | None = None, init: Path | None = None, warm: Path | None = None,
          on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
          style_weights: dict[str, float] | None = None) -> TrainResult:
    """Train a model, validating every epoch and keeping the best weights.

    `style_weights` oversamples (or undersamples) the training windows of some styles, e.g.
    `{"fiddle": 2.0}` draws every fiddle window twice per pass; validation stays unweighted.

    `on_epoch(epoch, epochs, logs)` is called after every epoch (the admin shows it as progress).

    Writes `out` (the best model), `<out>.history.json`, `<out>.loss.png` and, while running, a
    backup folder that `resume=True` continues from.
    """
    unknown = set(style_weights or {}) - set(config.styles)
    if unknown or any(not math.isfinite(w) or w < 0 for w in (style_weights or {}).values()):
        raise ValueError(f"Style weights need known styles and weights of 0 or more: {style_weights}")
    keras.utils.set_random_seed(seed)
    started = time.time()
    train_ex = make_examples(dataset, config, "train")
    valid_ex = make_examples(dataset, config, "validation")
    if not len(train_ex):
        raise ValueError("The dataset has no training pieces for the model's styles.")
    if not len(valid_ex):  # tiny datasets: validate on training pieces rather than not at all
        valid_ex = train_ex
    model = build_model(config, extra={"stats": style_stats(dataset)})
    if init is not None:
        # Fine-tune a saved model: its weights, this run's data, primers and training settings.
        start = load_model(init)
        if start.config.styles != config.styles or start.config.window != config.window:
            raise ValueError(f"{init} was trained with other styles or another window.")
        model.set_weights(start.get_weights())
    elif warm is not None:
        # Start from every layer of an earlier model that still fits (its LSTMs, embeddings, heads).
        try:
            copied = warm_start(model, load_model(warm))
        except ValueError:  # a model of the first architecture, which this code no longer builds
            copied = warm_start_from_v1(model, warm)
        if verbose:
            print(f"Warm start from {warm}: {', '.join(copied) or 'no layer fits'}")
    compile_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    history_path = out.with_suffix(".history.json")
    if not resume and history_path.exists():
        history_path.unlink()
    backup = out.with_suffix(".backup")
    recorder = _JsonHistory(history_path)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, patience // 2)),
        recorder,
    ]
    if max_minutes:
        callbacks.insert(0, _TimeLimit(max_minutes))
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch(epoch + 1, epochs, {k: float(v) for k, v in (logs or {}).items()})
        ))
    if not resume and backup.exists():
        import shutil

        shutil.rmtree(backup)
    train_batches = WindowBatches(train_ex, config, train=True, seed=seed, steps=steps_per_epoch,
                                  style_weights=style_weights)
    valid_batches = WindowBatches(valid_ex, config, train=False)
    model.fit(
        as_tf_dataset(train_batches), validation_data=as_tf_dataset(valid_batches),
        steps_per_epoch=len(train_batches), validation_steps=len(valid_batches),
        epochs=epochs, callbacks=callbacks, verbose=verbose, shuffle=False,  # WindowBatches shuffles
    )
    history = recorder.history
    best = min(history, key=lambda h: h.get("val_loss", math.inf)) if history else {}
    model.extra = {**model.extra, "training": {
        "epochs_run": len(history), "best_epoch": best.get("epoch"), "best_val_loss": best.get("val_loss"),
        "train_pieces": int(len(dataset.indices("train"))), "train_notes": int(len(train_ex)),
        "seconds": round(time.time() - started, 1), "backend": keras.backend.backend(),
    }}
    save_model(model, out)
    plot_history(history, out.with_suffix(".loss.png"))
    return TrainResult(model_path=out, history=history, seconds=time.time() - started)


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:  # a bare training machine; the JSON history is the record
        return
    if not history:
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    heads = ("loss", "pitch_loss", "step_loss", "duration_loss")
    fig, axes = plt.subplots(1, len(heads), figsize=(4 * len(heads), 3.2))
    for ax, key in zip(axes, heads):
        ax.plot(epochs, [h.get(key, np.nan) for h in history], label="train")
        ax.plot(epochs, [h.get(f"val_{key}", np.nan) for h in history], label="validation")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def tiny_dataset(styles: tuple[str, ...] = ("alpha", "beta"), pieces_per_style: int = 6, notes: int = 48,
                 seed: int = 0) -> NoteDataset:
    """Scale fragments in two styles: enough structure to learn from in seconds, for tests."""
    from ml.notes import NoteSequence

    rng = np.random.default_rng(seed)
    pieces = []
    for s, style in enumerate(styles):
        for k in range(pieces_per_style):
            scale = np.array([0, 2, 4, 5, 7, 9, 11, 12]) + 60 + (k % 3) - s * 12
            pitch = np.array([scale[(i * (1 + s)) % len(scale)] for i in range(notes)])
            step = np.full(notes, 0.5 if s == 0 else 0.25)
            step[0] = 0
            seq = NoteSequence(pitch=pitch, step=step, duration=step.copy() + (step == 0) * 0.5,
                               velocity=rng.integers(60, 90, notes), tempo_bpm=120.0)
            name = f"{style}-{k}"
            split = [0, 0, 0, 0, 1, 2][k % 6]
            pieces.append((name, style, seq, split))
    return NoteDataset.from_pieces(list(styles), pieces)


def tiny_config(dataset: NoteDataset) -> ModelConfig:
    return ModelConfig(styles=tuple(dataset.styles), default_tempos=(120.0,) * len(dataset.styles),
                       window=8, pitch_embedding=8, time_embedding=4, style_embedding=2, lstm_units=8,
                       batch_size=32, dropout=0.0, transpose_range=2, learning_rate=1e-2)


def train_tiny_model(out_dir: Path, epochs: int = 2) -> Path:
    """A tiny model of the real architecture, trained in seconds, for tests."""
    dataset = tiny_dataset()
    result = train(dataset, tiny_config(dataset), Path(out_dir) / "tiny.keras", epochs=epochs, verbose=0)
    return result.model_path


def default_config(styles: list[str]) -> ModelConfig:
    tempos = tuple(CORPUS_STYLES[s][2] if s in CORPUS_STYLES else 100.0 for s in styles)
    return ModelConfig(styles=tuple(styles), default_tempos=tempos)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the note model.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", action="store_true", help="the music21 corpus, grouped into styles")
    source.add_argument("--dataset", type=Path, action="append", help="a dataset .npz (repeatable)")
    parser.add_argument("--styles", nargs="*", help="corpus styles (default: all)")
    parser.add_argument("--max-pieces-per-style", type=int, default=600)
    parser.add_argument("--cache-dir", type=Path, default=Path("data/cache"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--config", type=str, help="JSON overrides for the model config")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init", type=Path, help="start from the weights of a saved model (fine-tuning)")
    parser.add_argument("--warm-start", type=Path,
                        help="start from the layers of a saved model that still fit this config (its LSTMs)")
    parser.add_argument("--stats-only", action="store_true",
                        help="no training: copy --init to --out with its style statistics computed again")
    parser.add_argument("--oversample", nargs="*", default=[], metavar="STYLE=WEIGHT",
                        help="draw a style's training windows WEIGHT times per pass (e.g. fiddle=2)")
    parser.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this budget")
    parser.add_argument("--verbose", type=int, default=1, help="Keras verbosity: 1 progress bar, 2 a line per epoch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.corpus:
        dataset = corpus_dataset(args.cache_dir, args.styles, args.max_pieces_per_style, args.workers)
    else:
        parts = [NoteDataset.load(p) for p in args.dataset]
        dataset = parts[0] if len(parts) == 1 else NoteDataset.merge(parts)
    config = default_config(dataset.styles)
    if args.config:
        try:
            overrides = json.loads(args.config)
            config = replace(config, **overrides)
        except (ValueError, TypeError) as exc:
            print(f"Bad --config: {exc}", file=sys.stderr)
            return 2
    print(f"{dataset.pieces} pieces, {len(dataset.pitch)} notes, styles: {', '.join(dataset.styles)}")
    try:
        style_weights = {name: float(weight) for name, weight in (item.split("=", 1) for item in args.oversample)}
    except ValueError:
        print(f"Bad --oversample {args.oversample}: give STYLE=WEIGHT", file=sys.stderr)
        return 2
    if args.stats_only:
        if args.init is None:
            print("--stats-only needs --init MODEL", file=sys.stderr)
            return 2
        model = load_model(args.init)
        model.extra = {key: value for key, value in model.extra.items() if key != "primers"}
        model.extra["stats"] = style_stats(dataset)
        save_model(model, args.out)
        print(f"Saved {args.out} with new style statistics")
        return 0
    result = train(dataset, config, args.out, epochs=args.epochs, patience=args.patience,
                   steps_per_epoch=args.steps_per_epoch, resume=args.resume, seed=args.seed,
                   max_minutes=args.max_minutes, verbose=args.verbose, init=args.init, warm=args.warm_start,
                   style_weights=style_weights)
    print(f"Saved {result.model_path} after {result.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
