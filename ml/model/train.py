"""Training: the windows of `ml.data.windows`, fed to Keras `fit`.

Command line (thin; `manage.py train` calls the same `main`):

    python -m ml.model.train --corpus --max-pieces-per-style 600 --out ml/pretrained/default.keras
    python -m ml.model.train --dataset data/cache/foo.npz --epochs 30 --out run/model.keras --resume
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ml.data.datasets import CORPUS_STYLES, NoteDataset, corpus_dataset
from ml.data.notes import CLOSES, close_kind
from ml.data.windows import ANCHORED_HEADS, WindowBatches, as_tf_dataset, make_examples, untaught
from ml.model.config import METRES, ModelConfig, metre_class, piece_density_class
from ml.model.network import build_model, compile_model, load_model, save_model, warm_start, warm_start_from_v1


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
                                               for i in pieces).most_common()),
                        "closes": style_closes(dataset, pieces),
                        "densities": style_densities(dataset, pieces)}
    return stats


def style_densities(dataset: NoteDataset, pieces: np.ndarray) -> dict[str, dict[str, int]]:
    """Per time signature class, how many of `pieces` have each `density_class` (onsets per beat):
    a model that reads its piece's density (`ModelConfig.density`) is given one drawn from these."""
    counts: dict[str, Counter[str]] = {}
    for i in pieces:
        a, b = int(dataset.offsets[i]), int(dataset.offsets[i + 1])
        if b - a < 2:
            continue
        onset = np.cumsum(dataset.step_beats[a:b].astype(np.float64))
        metre = METRES[metre_class(tuple(dataset.piece_time_signature[i]))]
        counts.setdefault(metre, Counter())[str(piece_density_class(onset))] += 1
    return {metre: dict(sorted(counted.items())) for metre, counted in counts.items()}


def style_closes(dataset: NoteDataset, pieces: np.ndarray) -> dict[str, dict[str, int]]:
    """Per mode (major, minor), how many of `pieces` close each way (`ml.data.notes.CLOSES`) in the key
    the dataset gives them: generation draws a piece's close from these counts."""
    counts: dict[str, Counter[str]] = {"major": Counter(), "minor": Counter()}
    for i in pieces:
        kind = close_kind(dataset.piece(int(i)), int(dataset.piece_key[i]))
        if kind is not None:
            counts["minor" if dataset.piece_mode[i] else "major"][kind] += 1
    return {mode: {kind: counted[kind] for kind in CLOSES} for mode, counted in counts.items()}


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


class _KeepBest(keras.callbacks.Callback):
    """Writes the model to `path` whenever the validation loss is the best so far, so that a run
    stopped from outside (a session's end) still leaves its best epoch behind."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.best = math.inf

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        loss = float((logs or {}).get("val_loss", math.inf))
        if loss < self.best:
            self.best = loss
            save_model(self.model, self.path)


CHECKPOINT_SUFFIX = ".weights.h5"


def starting_model(dataset: NoteDataset, config: ModelConfig, *, init: Path | None = None,
                   warm: Path | None = None, verbose: int = 0) -> Any:
    """The model a run starts from: new weights, a saved model's (`init`, fine-tuning), or every layer
    of an earlier model that still fits (`warm`).

    `init` may also be a checkpoint of this very config (`*.weights.h5`, `save_checkpoint`): the
    weights alone, without the optimizer state or the inference copy, a third of a `.keras` file, which
    is what a training from scratch carried over several sessions keeps in git between them.
    """
    model = build_model(config, extra={"stats": style_stats(dataset)})
    if init is not None and init.name.endswith(CHECKPOINT_SUFFIX):
        try:
            model.load_weights(init)
        except ValueError as exc:
            raise ValueError(f"{init} holds the weights of another config: {exc}") from exc
    elif init is not None:
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
    return model


def check_checkpoint_name(path: Path) -> None:
    """ValueError unless `path` is named as a checkpoint (FILE.weights.h5)."""
    if not path.name.endswith(CHECKPOINT_SUFFIX):
        raise ValueError(f"A checkpoint's name ends in {CHECKPOINT_SUFFIX}: {path}")


def save_checkpoint(model: Any, path: Path) -> None:
    """The weights of `model` alone, for `starting_model(init=path)` to go on from."""
    check_checkpoint_name(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(path)


def train(dataset: NoteDataset, config: ModelConfig, out: Path, *, epochs: int = 30, patience: int = 4,
          steps_per_epoch: int | None = None, resume: bool = False, seed: int = 0, verbose: int = 1,
          max_minutes: float | None = None, init: Path | None = None, warm: Path | None = None,
          on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
          style_weights: dict[str, float] | None = None, cadence_weight: float = 1.0,
          parallel_weight: float = 1.0, teacher: Path | None = None) -> TrainResult:
    """Train a model, validating every epoch and keeping the best weights.

    `style_weights` oversamples (or undersamples) the training windows of some styles, e.g.
    `{"fiddle": 2.0}` draws every fiddle window twice per pass; validation stays unweighted.
    `cadence_weight` multiplies the draws of the notes that close a phrase (within
    `CADENCE_NEAR_BEATS` of a marked phrase end or of the piece's last note). `parallel_weight`
    multiplies the draws of the notes some of whose pitches would make parallels (a config with
    `unlikelihood`): the notes its second loss speaks of. A config with `anchor` learns beside the
    notes from `teacher` (by default `init`), a model of the same inputs that stays frozen.

    `on_epoch(epoch, epochs, logs)` is called after every epoch (the admin shows it as progress).

    Writes `out` (the best model), `<out>.history.json`, `<out>.loss.png` and, while running, a
    backup folder that `resume=True` continues from.
    """
    unknown = set(style_weights or {}) - set(config.styles)
    if unknown or any(not math.isfinite(w) or w < 0 for w in (style_weights or {}).values()):
        raise ValueError(f"Style weights need known styles and weights of 0 or more: {style_weights}")
    if not math.isfinite(cadence_weight) or cadence_weight < 0:
        raise ValueError(f"The cadence weight must be 0 or more: {cadence_weight}")
    if not math.isfinite(parallel_weight) or parallel_weight < 0:
        raise ValueError(f"The parallel weight must be 0 or more: {parallel_weight}")
    teacher_model = None
    if config.anchor:
        teacher = teacher or init
        if teacher is None:
            raise ValueError("A config with an anchor needs a teacher (or --init) to stay near.")
        teacher_model = load_model(teacher)
        # A teacher may read fewer inputs than its student (a student with the piece's density learns from
        # a model without it), not others: it would be asked what it cannot be told.
        if not set(teacher_model.config.input_names) <= set(config.input_names) \
                or teacher_model.config.window != config.window or teacher_model.config.styles != config.styles \
                or teacher_model.config.time_grid != config.time_grid:
            raise ValueError(f"The teacher {teacher} reads other inputs, styles or note values than this config.")
    keras.utils.set_random_seed(seed)
    started = time.time()
    train_ex = make_examples(dataset, config, "train")
    valid_ex = make_examples(dataset, config, "validation")
    if not len(train_ex):
        raise ValueError("The dataset has no training pieces for the model's styles.")
    if not len(valid_ex):  # tiny datasets: validate on training pieces rather than not at all
        valid_ex = train_ex
    model = starting_model(dataset, config, init=init, warm=warm, verbose=verbose)
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
        _KeepBest(out),
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
                                  style_weights=style_weights, cadence_weight=cadence_weight,
                                  parallel_weight=parallel_weight)
    if config.own_samples > 0:
        train_batches.predict = lambda inputs: {name: keras.ops.convert_to_numpy(value)
                                                for name, value in model(inputs, training=False).items()}
    # Validation as trained: the chords and the notes after a gap shown in the training shares.
    valid_batches = WindowBatches(valid_ex, config, train=False, conditioned=True)
    if teacher_model is not None:
        reads = teacher_model.config.input_names

        def teach(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            # compiled once: an eager call is three times slower
            out = teacher_model.predict_on_batch({name: inputs[name] for name in reads})
            return {name: np.asarray(out[name]) for name in ANCHORED_HEADS}

        train_batches.teacher = teach
        # Validation reads the notes alone (the teacher's columns empty): its loss is the plain one, the
        # same measure as a run without a teacher's.
        valid_batches.teacher = untaught
    model.fit(
        # Batches that draw the network's own samples are not prefetched ahead (as_tf_dataset): each
        # reads the network as it is at its training step. Nor are a teacher's. (Keras's TensorFlow
        # trainer still reads them through a tf.data generator, where the teacher's call is slow: a
        # 160-unit student's step with a teacher took 3.25 s under TensorFlow, 1.46 s under JAX.)
        train_batches if train_batches.predict is not None or teacher_model is not None
        else as_tf_dataset(train_batches),
        validation_data=valid_batches if teacher_model is not None else as_tf_dataset(valid_batches),
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


def default_config(styles: list[str]) -> ModelConfig:
    tempos = tuple(CORPUS_STYLES[s][2] if s in CORPUS_STYLES else 100.0 for s in styles)
    return ModelConfig(styles=tuple(styles), default_tempos=tempos, chords=True, future=16)


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
    parser.add_argument("--init", type=Path,
                        help="start from the weights of a saved model (fine-tuning), or of a checkpoint of this "
                             "config (FILE.weights.h5)")
    parser.add_argument("--checkpoint", type=Path,
                        help="also write the weights of --out alone to this FILE.weights.h5 (what a run carried "
                             "over several sessions keeps between them)")
    parser.add_argument("--warm-start", type=Path,
                        help="start from the layers of a saved model that still fit this config (its LSTMs)")
    parser.add_argument("--stats-only", action="store_true",
                        help="no training: copy --init to --out with its style statistics computed again")
    parser.add_argument("--oversample", nargs="*", default=[], metavar="STYLE=WEIGHT",
                        help="draw a style's training windows WEIGHT times per pass (e.g. fiddle=2)")
    parser.add_argument("--parallel-weight", type=float, default=1.0,
                        help="draw the notes whose pitches could make parallels this many times per pass "
                             "(a config with unlikelihood)")
    parser.add_argument("--teacher", type=Path,
                        help="the frozen model a config with anchor stays near (default: --init)")
    parser.add_argument("--cadence-weight", type=float, default=1.0,
                        help="draw the notes within 2 beats of a cadence (phrase end, last note) this many times")
    parser.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this budget")
    parser.add_argument("--verbose", type=int, default=1, help="Keras verbosity: 1 progress bar, 2 a line per epoch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.checkpoint:
        try:  # before a run, not after it
            check_checkpoint_name(args.checkpoint)
        except ValueError as exc:
            print(f"Bad --checkpoint: {exc}", file=sys.stderr)
            return 2

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
        if args.checkpoint:
            save_checkpoint(model, args.checkpoint)
            print(f"Saved {args.checkpoint}")
        return 0
    result = train(dataset, config, args.out, epochs=args.epochs, patience=args.patience,
                   steps_per_epoch=args.steps_per_epoch, resume=args.resume, seed=args.seed,
                   max_minutes=args.max_minutes, verbose=args.verbose, init=args.init, warm=args.warm_start,
                   style_weights=style_weights, cadence_weight=args.cadence_weight,
                   parallel_weight=args.parallel_weight, teacher=args.teacher)
    print(f"Saved {result.model_path} after {result.seconds:.0f} s")
    if args.checkpoint:
        save_checkpoint(load_model(result.model_path), args.checkpoint)  # the best epoch, as --out holds it
        print(f"Saved {args.checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
