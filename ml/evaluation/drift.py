"""Rhythm read note by note and written alone: where the network's own pieces drift.

Per style, the share of each kind of step to the next note (another note at the same onset, or the
time to the next onset in beats, in the groups of GROUPS) three ways:

- real: the held-out pieces' own steps;
- predicted: the network's step distribution for each held-out note given the real notes before it
  (teacher forcing), averaged over the notes;
- generated: the steps of pieces the network writes alone (every constraint off), each given the
  network's own notes before it.

Where the predicted column matches the real one and the generated one does not, the network is
calibrated note by note and drifts when it reads its own music (exposure bias): a cure is in how it
is trained, not in how it is sampled. The distance of each column to the real one is the total
variation distance (half the sum of the absolute differences of the shares: 0 the same, 1 disjoint).

    python -m ml.evaluation.drift --model ml/pretrained/default.keras --pieces 96
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ml.data.datasets import NoteDataset
    from ml.data.windows import Examples
    from ml.generation.generator import Generator

# (label, lowest, highest) in beats, both ends included.
GROUPS: tuple[tuple[str, float, float], ...] = (
    ("same onset", 0.0, 0.0),
    ("up to 1/4 beat", 1e-6, 0.25),
    ("1/4 to 1/2 beat", 0.25 + 1e-6, 0.5 - 1e-6),
    ("1/2 beat", 0.5 - 1e-6, 0.5 + 1e-6),
    ("1/2 to 1 beat", 0.5 + 1e-6, 1.0 - 1e-6),
    ("1 beat", 1.0 - 1e-6, 1.0 + 1e-6),
    ("1 to 2 beats", 1.0 + 1e-6, 2.0 + 1e-6),
    ("over 2 beats", 2.0 + 1e-6, np.inf),
)
LABELS = tuple(label for label, _, _ in GROUPS)


def group_of(beats: np.ndarray) -> np.ndarray:
    """The index in GROUPS of each step, in beats."""
    beats = np.asarray(beats, dtype=np.float64)
    out = np.full(beats.shape, -1, dtype=np.int64)
    for g, (_, low, high) in enumerate(GROUPS):
        out[(out < 0) & (beats >= low) & (beats <= high)] = g
    return out


def shares(beats: np.ndarray) -> np.ndarray:
    """The share of steps (in beats) in each group."""
    groups = group_of(beats)
    return np.bincount(groups, minlength=len(GROUPS)).astype(np.float64) / max(1, len(groups))


def predicted_shares(probabilities: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The mean predicted share of each group, from per-note probabilities over the step classes."""
    by_group = np.zeros((len(grid), len(GROUPS)))
    by_group[np.arange(len(grid)), group_of(grid)] = 1.0
    return np.asarray(probabilities, dtype=np.float64).mean(axis=0) @ by_group


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance of two share vectors."""
    return float(0.5 * np.abs(np.asarray(a) - np.asarray(b)).sum())


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def teacher_forced(model: Any, examples: Examples, style: str, *, max_notes: int = 6000, seed: int = 0,
                   batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(real, predicted) shares over the held-out notes of `style` in `examples` (at most `max_notes`)."""
    from ml.data.windows import batch_arrays

    config = replace(model.config, batch_size=batch_size)
    rows = np.flatnonzero(examples.style == config.style_index(style))
    if not len(rows):
        raise ValueError(f"No held-out test notes of style {style!r}.")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(rows, size=min(max_notes, len(rows)), replace=False))
    grid = np.asarray(config.time_grid)
    probabilities, targets = [], []
    for a in range(0, len(rows), batch_size):
        part = rows[a:a + batch_size]
        inputs, target = batch_arrays(examples, part, config, np.random.default_rng((seed, a)),
                                      chord_share=0.0, future_share=0.0)
        probabilities.append(_softmax(np.asarray(model.predict_on_batch(inputs)["step"], dtype=np.float64)))
        targets.append(np.asarray(target["step"]))
    return shares(grid[np.concatenate(targets)]), predicted_shares(np.concatenate(probabilities), grid)


def generated(generator: Generator, style: str, *, pieces: int, seconds: float, seed: int = 2000) -> np.ndarray:
    """Step shares of `pieces` pieces `generator` writes (its config's time grid)."""
    from ml.generation.request import GenerationRequest

    grid = np.asarray(generator.config.time_grid)
    steps: list[np.ndarray] = []
    while len(steps) < pieces:
        request = GenerationRequest(style=style, seconds=seconds, seed=seed + len(steps),
                                    variations=min(4, pieces - len(steps)))
        for piece in generator.generate(request):
            beats = piece.notes.to_beats()[0][1:]  # the first note has no step before it
            steps.append(grid[generator.config.quantize_beats(beats)])
    return shares(np.concatenate(steps))


def drift_report(model_path: Path, dataset: NoteDataset, styles: list[str], *, pieces: int = 24,
                 seconds: float = 30.0, max_notes: int = 6000) -> dict[str, Any]:
    """The three sets per style: the test split's windows and the generator are built once for all styles."""
    from ml.data.windows import make_examples
    from ml.evaluation.evaluate import every_constraint
    from ml.generation.generator import Generator
    from ml.model.network import load_model

    model = load_model(model_path)
    examples = make_examples(dataset, model.config, "test")
    generator = Generator(model_path, off=every_constraint())  # the network alone
    generator.load()
    report: dict[str, Any] = {"model": str(model_path), "groups": list(LABELS), "pieces": pieces,
                              "seconds": seconds, "styles": {}}
    for style in styles:
        real, predicted = teacher_forced(model, examples, style, max_notes=max_notes)
        written = generated(generator, style, pieces=pieces, seconds=seconds)
        report["styles"][style] = {
            "real": [round(float(x), 4) for x in real],
            "predicted": [round(float(x), 4) for x in predicted],
            "generated": [round(float(x), 4) for x in written],
            "predicted_to_real": round(distance(predicted, real), 4),
            "generated_to_real": round(distance(written, real), 4),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    from ml.data.datasets import NoteDataset

    parser = argparse.ArgumentParser(description="Step shares: real, predicted note by note, generated alone.")
    parser.add_argument("--model", type=Path, default=Path("ml/pretrained/default.keras"))
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus-1500.npz"))
    parser.add_argument("--styles", nargs="*")
    parser.add_argument("--pieces", type=int, default=96,
                        help="generated pieces per style (with fewer a figure is off by hundredths)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-notes", type=int, default=6000, help="held-out notes per style")
    parser.add_argument("--out", type=Path, default=Path("reports/drift.json"))
    args = parser.parse_args(argv)
    dataset = NoteDataset.load(args.dataset)
    try:
        report = drift_report(args.model, dataset, args.styles or list(dataset.styles), pieces=args.pieces,
                              seconds=args.seconds, max_notes=args.max_notes)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print("style / set | " + " | ".join(LABELS) + " | distance to real")
    for style, row in report["styles"].items():
        for name in ("real", "predicted", "generated"):
            far = "" if name == "real" else f" | {row[f'{name}_to_real']:.3f}"
            print(f"{style} {name} | " + " | ".join(f"{x:.3f}" for x in row[name]) + far)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
