"""Per-style sampling calibration: the pitch and rhythm temperatures at which a classifier finds a
model's pieces hardest to tell from real pieces of the style.

A network sampled at its own distribution (temperature 1) need not write like its training music:
writing from its own notes, small errors compound (a chorale's network writes 1 sixteenth where Bach
writes 4). A temperature per style is the least a calibration can change: it reshapes each of the
network's distributions without adding a rule about what to write.

For each style, each pair of temperatures in the grid writes the same requests (the same seeds, so
that the pairs differ only in their temperatures), and the two-sample test of
ml.evaluation.discriminator compares them with real pieces the test never sees: the style's
validation pieces, or its training pieces where validation holds too few (the quartets). The pair
with the lowest accuracy (the mean of the two classifiers, steadier than the better one) is kept,
unless the network's own distribution is within `tolerance` of it: a difference that small is
noise. `--write` stores the chosen pairs in the model file (`extra["sampling"]`), where
ml.generation.generator reads them: a request's temperatures are then relative to them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.evaluation.discriminator import discriminator_report, generated_pieces, tuning_pieces

if TYPE_CHECKING:
    from ml.data.datasets import NoteDataset
    from ml.generation.generator import Generator

OWN = (1.0, 1.0)


def score(report: dict[str, Any]) -> float:
    """The mean accuracy of the test's classifiers: the lower, the harder to tell from real."""
    classifiers = report["generated_vs_real"]["classifiers"]
    return float(np.mean([c["accuracy"] for c in classifiers.values()]))


def choose(rows: Sequence[dict[str, Any]], tolerance: float) -> dict[str, float]:
    """The pair of temperatures with the lowest score; the network's own (1, 1) where it scores
    within `tolerance` of that."""
    best = min(rows, key=lambda row: row["score"])
    own = [row for row in rows if (row["temperature"], row["timing_temperature"]) == OWN]
    if own and own[0]["score"] <= best["score"] + tolerance:
        best = own[0]
    return {"temperature": best["temperature"], "timing_temperature": best["timing_temperature"]}


def sweep_style(generator: Generator, dataset: NoteDataset, style: str, pairs: Sequence[tuple[float, float]], *,
                requests: int, variations: int, seconds: float, seed: int) -> list[dict[str, Any]]:
    """One row per pair of (pitch, rhythm) temperatures: the test's report and its score."""
    real = [dataset.piece(int(i)) for i in tuning_pieces(dataset, style)]
    rows = []
    for temperature, timing in pairs:
        controls = {"style": style, "seconds": seconds, "temperature": temperature, "timing_temperature": timing}
        generated, groups = generated_pieces(generator, controls, requests, variations, seed)
        report = discriminator_report(real, generated, groups, style)
        rows.append({"temperature": temperature, "timing_temperature": timing, "score": round(score(report), 4),
                     "accuracy": report["generated_vs_real"]["accuracy"], "real_pieces": report["real_pieces"],
                     "separating": [s["words"] for s in report["separating"][:3]]})
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m ml.evaluation.calibration --model M [--write]`."""
    import argparse
    import json

    from ml.data.datasets import NoteDataset
    from ml.generation.generator import Generator
    from ml.model.config import read_model_info, write_model_extra

    parser = argparse.ArgumentParser(description="Choose each style's sampling temperatures against real pieces.")
    parser.add_argument("--model", type=Path, default=Path("ml/pretrained/default.keras"))
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus-1500.npz"))
    parser.add_argument("--styles", nargs="*")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.85, 0.92, 1.0], help="pitch")
    parser.add_argument("--timing-temperatures", type=float, nargs="+", default=[1.0, 1.15, 1.3], help="rhythm")
    parser.add_argument("--requests", type=int, default=16, help="requests per style and pair")
    parser.add_argument("--variations", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=5000, help="the first request's seed (the test's are 1000 on)")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="keep the network's own distribution unless another pair scores this much lower "
                             "(about half the width of the test's 95%% interval)")
    parser.add_argument("--write", action="store_true", help="store the chosen temperatures in the model file")
    parser.add_argument("--out", type=Path, default=Path("reports/calibration.json"))
    args = parser.parse_args(argv)
    dataset = NoteDataset.load(args.dataset)
    generator = Generator(args.model, calibrated=False)
    pairs = list(itertools.product(args.temperatures, args.timing_temperatures))
    report: dict[str, Any] = {"model": str(args.model), "requests": args.requests, "variations": args.variations,
                              "seconds": args.seconds, "seed": args.seed, "tolerance": args.tolerance, "styles": {}}
    chosen: dict[str, dict[str, float]] = {}
    for style in args.styles or [s for s in dataset.styles if s in generator.styles]:
        rows = sweep_style(generator, dataset, style, pairs, requests=args.requests, variations=args.variations,
                           seconds=args.seconds, seed=args.seed)
        chosen[style] = choose(rows, args.tolerance)
        report["styles"][style] = {"rows": rows, "chosen": chosen[style]}
        for row in rows:
            print(style, row["temperature"], row["timing_temperature"], row["score"], row["accuracy"], flush=True)
        print(style, "chosen", chosen[style], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    if args.write:
        # The styles not swept this time keep what the file had.
        stored = read_model_info(args.model)["extra"].get("sampling", {})
        write_model_extra(args.model, "sampling", {**stored, **chosen})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
