"""What the inputs beyond the past notes are worth: the next-note cross-entropy of held-out notes
read four ways, by the same model on the same notes.

- plain: the window of previous notes only (what plain generation gives the network);
- chords: also the harmony of each note's half bar (what a requested progression gives it);
- future: also the notes after a gap of 1 to 64 notes (what a regenerated passage gives it);
- both.

The harmony is taken from the real notes (ml.data.windows.half_bar_harmony), so "chords" says how
much a progression that is really followed tells the network; a lower cross-entropy with the
future says the network uses what follows a gap to choose what leads into it.

    python -m ml.evaluation.conditioning --model data/models/v3a.keras --dataset data/corpus-1500.npz
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.datasets import NoteDataset

CONDITIONS = {"plain": (0.0, 0.0), "chords": (1.0, 0.0), "future": (0.0, 1.0), "both": (1.0, 1.0)}


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def conditioning_report(model: Any, dataset: NoteDataset, *, split: str = "test", max_notes: int = 20000,
                        seed: int = 0, batch_size: int = 1024) -> dict[str, Any]:
    """Per style and condition: mean pitch CE given the true step, step CE, and their sum (nats)."""
    from ml.data.windows import batch_arrays, make_examples

    config = replace(model.config, batch_size=batch_size)
    if not (config.chords or config.future):
        raise ValueError("This model reads neither chords nor the notes after a gap.")
    examples = make_examples(dataset, config, split)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(examples), size=min(max_notes, len(examples)), replace=False))
    report: dict[str, Any] = {"notes": int(len(rows)), "split": split, "styles": {}}
    results: dict[str, dict[str, np.ndarray]] = {}
    for name, (chord_share, future_share) in CONDITIONS.items():
        if (chord_share and not config.chords) or (future_share and not config.future):
            continue
        pitch, step = np.zeros(len(rows)), np.zeros(len(rows))
        for a in range(0, len(rows), batch_size):
            part = rows[a:a + batch_size]
            # The same draw of gaps for every condition: one generator per batch, seeded alike.
            inputs, targets = batch_arrays(examples, part, config, np.random.default_rng((seed, a)),
                                           chord_share=chord_share, future_share=future_share)
            out = {k: np.asarray(v) for k, v in model.predict_on_batch(inputs).items()}
            pitch[a:a + len(part)] = -_log_softmax(out["pitch"])[np.arange(len(part)), targets["pitch"]]
            step[a:a + len(part)] = -_log_softmax(out["step"])[np.arange(len(part)), targets["step"]]
        results[name] = {"pitch": pitch, "step": step}
    styles = examples.style[rows]

    def summary(mask: np.ndarray) -> dict[str, dict[str, float]]:
        return {name: {"pitch_ce": round(float(r["pitch"][mask].mean()), 4),
                       "step_ce": round(float(r["step"][mask].mean()), 4), "notes": int(mask.sum())}
                for name, r in results.items()}

    for s, style in enumerate(config.styles):
        if (styles == s).any():
            report["styles"][style] = summary(styles == s)
    report["all"] = summary(np.ones(len(rows), bool))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Next-note cross-entropy with and without chords and future notes.")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus-1500.npz"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-notes", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=Path("reports/conditioning.json"))
    args = parser.parse_args(argv)
    from ml.model.network import load_model

    try:
        report = conditioning_report(load_model(args.model), NoteDataset.load(args.dataset), split=args.split,
                                     max_notes=args.max_notes)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["all"], indent=1))
    for style, row in report["styles"].items():
        print(style, {name: value["pitch_ce"] for name, value in row.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
