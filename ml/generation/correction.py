"""Fit the drift constraint's tables (ml.generation.constraints.Drift) for a model file.

Read note by note, the network gives each step its share in the music it learnt from; writing from
its own notes, it drifts (exposure bias, README "Where the rhythm drifts"). This writes pieces per
style with the product's defaults, counts how often each step follows each place in the bar and how
often each scale degree sounds, against the same counts over the style's training pieces, and
keeps the log-ratio of the two shares, clipped, as logits the sampler adds: a step or degree
written more often than the training pieces have it is made rarer by that ratio. Written pieces
carry the tables fitted so far, so each round corrects what is left (damped).

The counts are the fit's own: the evaluation's measures (ml.evaluation) are written apart from
them, and the tables are fitted against training pieces only, never the held-out ones the
evaluation reads.

    cp ml/pretrained/default.keras data/models/drift.keras
    python -m ml.generation.correction --model data/models/drift.keras --write   # 17 min on 2 cores

The shipped file has no tables: those this fitted for it made the music easier to tell from real
music (README, "Taking the drift back in the sampler").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ml.data.notes import NoteSequence, major_or_minor
from ml.generation.constraints import DRIFT_ROWS, step_row

# A logit is moved by at most this much (about 20 times likelier or rarer).
CLIP = 3.0
# Counts added to every cell before shares are taken (no ratio from a cell seen once or never).
PRIOR = 2.0
# A row of the steps or lengths table is trusted in proportion to its written notes, n / (n +
# SHRINK); a mode's scale degrees in proportion to n / (n + DEGREE_SHRINK): a tune's few pitches
# decide much of its degrees, so that a few dozen pieces give them loosely.
SHRINK = 100.0
DEGREE_SHRINK = 1000.0
# The rounds of the fit and how much of what is left each one corrects. A note copied into a
# repeat or written by a rule takes no logits, so that a round moves the steps and lengths by
# less than it adds (about a third in chorales): each round adds all that is left of them. A
# degree's logit moves a phrase that is then repeated, and its count by more than it adds (twice
# as much in folk songs): each round adds half.
DAMPING = (1.0, 1.0, 1.0, 1.0)
DEGREE_DAMPING = 0.5
# The first request's seed (the discriminator's are 1000 on, the calibration's 5000 on).
SEED = 9000


def counts(pieces: Iterable[tuple[NoteSequence, int, str]], grid: Sequence[float], quantize: Any
           ) -> dict[str, Any]:
    """Steps after each place in the bar and lengths of the notes starting there ([DRIFT_ROWS,
    classes] each), and notes per scale degree per mode
    ({"major": [12], "minor": [12]}) over `pieces` (a piece, its tonic pitch class and mode)."""
    steps = np.zeros((DRIFT_ROWS, len(grid)), dtype=np.float64)
    durations = np.zeros((DRIFT_ROWS, len(grid)), dtype=np.float64)
    degrees = {"major": np.zeros(12), "minor": np.zeros(12)}
    for seq, tonic, mode in pieces:
        if len(seq) < 2:
            continue
        step, duration = seq.to_beats()
        in_bar, _, _ = seq.bar_positions()
        rows = np.array([step_row(float(p)) for p in in_bar], dtype=np.int64)
        np.add.at(steps, (rows[:-1], quantize(np.asarray(step[1:], dtype=np.float64))), 1.0)
        np.add.at(durations, (rows, quantize(np.asarray(duration, dtype=np.float64))), 1.0)
        degrees[major_or_minor(mode)] += np.bincount((np.asarray(seq.pitch, dtype=np.int64) - tonic) % 12, minlength=12)
    return {"steps": steps, "durations": durations, "degrees": degrees}


def log_ratio(real: np.ndarray, written: np.ndarray, *, shrink: float = 0.0) -> np.ndarray:
    """Per row, log(real share / written share) of each column, clipped to ±CLIP; with `shrink`, a
    row with n written notes is scaled by n / (n + shrink)."""
    real, written = np.atleast_2d(real), np.atleast_2d(written)
    share_real = (real + PRIOR) / (real.sum(axis=-1, keepdims=True) + PRIOR * real.shape[-1])
    share_written = (written + PRIOR) / (written.sum(axis=-1, keepdims=True) + PRIOR * written.shape[-1])
    ratio = np.log(share_real / share_written)
    if shrink:
        n = written.sum(axis=-1, keepdims=True)
        ratio = ratio * n / (n + shrink)
    return np.clip(ratio, -CLIP, CLIP)


def correction(real: dict[str, Any], written: dict[str, Any]) -> dict[str, Any]:
    """The logits that take `written`'s counts towards `real`'s (a mode without real notes gets none)."""
    modes = [mode for mode in real["degrees"] if real["degrees"][mode].sum() > 0 and written["degrees"][mode].sum() > 0]
    return {
        "steps": log_ratio(real["steps"], written["steps"], shrink=SHRINK),
        "durations": log_ratio(real["durations"], written["durations"], shrink=SHRINK),
        "degrees": {mode: log_ratio(real["degrees"][mode], written["degrees"][mode], shrink=DEGREE_SHRINK)[0]
                    for mode in modes},
    }


def add(tables: dict[str, Any] | None, step: dict[str, Any], damping: float) -> dict[str, Any]:
    """`tables` moved by `damping` times `step` (each logit kept within ±CLIP)."""
    moved = {name: np.clip(step[name] * damping + (np.asarray(tables[name]) if tables else 0.0), -CLIP, CLIP)
             for name in ("steps", "durations")}
    degrees = {}
    for mode, values in step["degrees"].items():
        before = np.asarray(tables["degrees"][mode]) if tables and mode in tables["degrees"] else 0.0
        degrees[mode] = np.clip(values * damping * DEGREE_DAMPING + before, -CLIP, CLIP)
    return {**moved, "degrees": degrees}


def stored(tables: dict[str, Any]) -> dict[str, Any]:
    """The tables as the model file keeps them (lists, rounded)."""
    return {"steps": np.round(np.asarray(tables["steps"]), 3).tolist(),
            "durations": np.round(np.asarray(tables["durations"]), 3).tolist(),
            "degrees": {mode: np.round(np.asarray(v), 3).tolist() for mode, v in tables["degrees"].items()}}


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two count tables read as one distribution each."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(0.5 * np.abs(a / max(a.sum(), 1e-12) - b / max(b.sum(), 1e-12)).sum())


def written_pieces(generator: Any, style: str, requests: int, variations: int, seconds: float
                   ) -> list[tuple[NoteSequence, int, str]]:
    """Pieces of `style` with the product's defaults, each with its key."""
    from ml.generation.request import GenerationRequest

    out = []
    for r in range(requests):
        request = GenerationRequest(style=style, seconds=seconds, variations=variations, seed=SEED + r * variations)
        for piece in generator.generate(request):
            out.append((piece.notes, int(piece.key[0]), str(piece.key[1])))
    return out


def fit(model: Any, dataset: Any, styles: Sequence[str], *, requests: int = 24, variations: int = 2,
        seconds: float = 30.0, rounds: int = len(DAMPING), log: Any = print) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tables per style after `rounds` rounds, and a report of each round's distances (steps,
    lengths, degrees) to the training pieces, and of what the last tables write."""
    from ml.generation.generator import Generator

    config = Generator(model).config
    real = {}
    for style in styles:
        found = dataset.indices("train", style)
        real[style] = counts(((dataset.piece(int(i)), int(dataset.piece_key[i]),
                               "major" if int(dataset.piece_mode[i]) == 0 else "minor") for i in found),
                             config.time_grid, config.quantize_beats)
    tables: dict[str, Any] = {}
    report: dict[str, Any] = {style: [] for style in styles}
    for round_, damping in enumerate((*DAMPING[:rounds], 0.0)):
        generator = Generator(model, drift={style: stored(t) for style, t in tables.items()})
        for style in styles:
            written = counts(written_pieces(generator, style, requests, variations, seconds),
                             config.time_grid, config.quantize_beats)
            row = {"round": round_, "steps": round(distance(real[style]["steps"], written["steps"]), 4),
                   "durations": round(distance(real[style]["durations"], written["durations"]), 4),
                   "degrees": {m: round(distance(real[style]["degrees"][m], written["degrees"][m]), 4)
                               for m in written["degrees"] if written["degrees"][m].sum() > 0}}
            report[style].append(row)
            log(style, row)
            if damping:
                tables[style] = add(tables.get(style), correction(real[style], written), damping)
    return {style: stored(t) for style, t in tables.items()}, report


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    from pathlib import Path

    from ml.data.datasets import NoteDataset
    from ml.model.config import read_model_info, write_model_extra

    parser = argparse.ArgumentParser(description="Fit the drift constraint's tables for a model file.")
    parser.add_argument("--model", type=Path, default=Path("ml/pretrained/default.keras"))
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus-1500.npz"))
    parser.add_argument("--styles", nargs="*")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--variations", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--write", action="store_true", help="store the tables in the model file")
    parser.add_argument("--out", type=Path, default=Path("reports/correction.json"))
    args = parser.parse_args(argv)
    dataset = NoteDataset.load(args.dataset)
    info = read_model_info(args.model)
    styles = args.styles or [s for s in dataset.styles if s in info["config"].styles]
    tables, report = fit(args.model, dataset, styles, requests=args.requests, variations=args.variations,
                         seconds=args.seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(args.model), "rounds": report, "tables": tables}, indent=1))
    if args.write:
        write_model_extra(args.model, "correction", {**info["extra"].get("correction", {}), **tables})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
