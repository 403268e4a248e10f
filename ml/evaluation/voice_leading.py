"""How a model leads its voices by itself: what unlikelihood training (`ModelConfig.unlikelihood`) acts on.

Two figures per style:
- read note by note on the held-out (validation) pieces, the probability the network gives the pitches
  that would move a note in parallel fifths or octaves with a voice below it (`ml.data.windows.parallel_slots`,
  the set the training loss reads), and how many notes have such a set;
- written alone, every constraint off (96 pieces of 30 s, seeds 5000 on), the parallels per 100 chord
  changes, the tonic endings and V–I closes (`ml.evaluation.form_metrics`, written apart from the set
  above) and how often the top line repeats a note;
- with `--reference` (the model a fine-tuning started from), how far the model moved from it: the mean
  KL divergence of its pitch and step distributions from the reference's on the same validation notes.

    python -m ml.evaluation.voice_leading --model ml/pretrained/default.keras --styles chorale   # ~2 min
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.notes import NoteSequence


def top_line_repeats(pieces: list[NoteSequence]) -> float:
    """The share of the top line's moves (highest note of each onset) that repeat its note, over pieces."""
    from ml.evaluation.form_metrics import _top_line

    shares = []
    for seq in pieces:
        top, _ = _top_line(seq)
        if len(top) > 1:
            shares.append(float((np.diff(top) == 0).mean()))
    return float(np.mean(shares)) if shares else float("nan")


def parallel_probability(model: Any, dataset: Any, style: str, *, notes: int = 4000, seed: int = 0
                         ) -> dict[str, float]:
    """Read note by note on the style's validation pieces: the share of notes with a set of pitches
    that would make parallels, and the mean probability the network gives that set."""
    import keras

    from ml.data.windows import batch_arrays, make_examples, parallel_mask

    config = replace(model.config, unlikelihood=1.0, unlikelihood_styles=())
    examples = make_examples(dataset, config, pieces=dataset.indices("validation", style))
    marked = np.flatnonzero((examples.parallel_class[examples.targets] >= 0).any(axis=1))
    if not len(marked):
        return {"notes_with_a_set": 0.0, "probability": float("nan")}
    rows = np.random.default_rng(seed).permutation(marked)[:notes]
    mass = []
    for first in range(0, len(rows), 500):
        chunk = rows[first:first + 500]
        inputs, _ = batch_arrays(examples, chunk, config, None)
        probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model(inputs, training=False)["pitch"]))
        mask = parallel_mask(examples, examples.targets[chunk], np.zeros(len(chunk), np.int64))
        mass.append((probabilities * mask).sum(axis=1))
    return {"notes_with_a_set": round(len(marked) / len(examples), 3),
            "probability": round(float(np.concatenate(mass).mean()), 4)}


def distance_from(model: Any, reference: Any, dataset: Any, style: str, *, notes: int = 4000, seed: int = 0
                  ) -> dict[str, float]:
    """How far a fine-tuning moved from the model it started from: read note by note on the style's
    validation pieces (plain, as generation reads them), the mean KL divergence of `model`'s pitch and
    step distributions from `reference`'s, in nats."""
    import keras

    from ml.data.windows import batch_arrays, make_examples

    examples = make_examples(dataset, model.config, pieces=dataset.indices("validation", style))
    rows = np.random.default_rng(seed).permutation(len(examples))[:notes]
    divergence: dict[str, list[np.ndarray]] = {"pitch": [], "step": []}
    for first in range(0, len(rows), 500):
        inputs, _ = batch_arrays(examples, rows[first:first + 500], model.config, None)
        mine, theirs = model(inputs, training=False), reference(inputs, training=False)
        for head, found in divergence.items():
            p = keras.ops.convert_to_numpy(keras.ops.log_softmax(theirs[head], axis=-1)).astype(np.float64)
            q = keras.ops.convert_to_numpy(keras.ops.log_softmax(mine[head], axis=-1)).astype(np.float64)
            found.append((np.exp(p) * (p - q)).sum(axis=1))
    return {f"kl_{head}": round(float(np.concatenate(found).mean()), 4) for head, found in divergence.items()}


def written_alone(path: Path, style: str, pieces: int) -> dict[str, float]:
    """Pieces of 30 s the network writes with every constraint off: parallels, closes, top-line repeats."""
    from ml.evaluation.discriminator import generated_pieces
    from ml.evaluation.form_metrics import form_scores, summarise
    from ml.generation.constraints import CONSTRAINTS
    from ml.generation.generator import Generator

    generator = Generator(path, off=frozenset(CONSTRAINTS))
    written, _ = generated_pieces(generator, {"style": style, "seconds": 30}, max(1, pieces // 3), 3, 5000)
    summary = summarise([form_scores(seq) for seq in written])
    return {"pieces": len(written), "parallels_per_100": summary["parallels_per_100"] or float("nan"),
            "tonic_ending": summary["tonic_ending"] or 0.0, "cadence": summary["cadence"] or 0.0,
            "top_line_repeats": top_line_repeats(written)}


def main(argv: list[str] | None = None) -> int:
    from ml.data.datasets import NoteDataset
    from ml.model.network import load_model

    parser = argparse.ArgumentParser(description="How a model leads its voices by itself.")
    parser.add_argument("--model", type=Path, default=Path("ml/pretrained/default.keras"))
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus-1500.npz"))
    parser.add_argument("--styles", nargs="*", default=["chorale", "renaissance"])
    parser.add_argument("--pieces", type=int, default=96, help="pieces written alone per style")
    parser.add_argument("--reference", type=Path,
                        help="a model to measure the distance from (the one a fine-tuning started from)")
    parser.add_argument("--out", type=Path, default=Path("reports/voice_leading.json"))
    args = parser.parse_args(argv)
    dataset = NoteDataset.load(args.dataset)
    model = load_model(args.model)
    reference = load_model(args.reference) if args.reference else None
    report: dict[str, Any] = {"model": str(args.model), "styles": {}}
    for style in args.styles:
        row = {**parallel_probability(model, dataset, style), **written_alone(args.model, style, args.pieces)}
        if reference is not None:
            row.update(distance_from(model, reference, dataset, style))
        report["styles"][style] = row
        print(style, json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
