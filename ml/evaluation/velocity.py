"""Dynamics as a listener hears them: how much the loudness varies within a piece, and whether it
follows the beat.

- `spread`: the standard deviation of the MIDI velocities within a piece;
- `phrase_spread`: the standard deviation of the mean velocity of 4-bar stretches (the level the
  written dynamics set, without the note-to-note accents);
- `pulse`: the mean velocity of the notes that start on a bar line minus that of the notes that
  start off the beat (between the metre's counted beats), in MIDI velocity units.

Real pieces read their velocities from the score's dynamics (ml.data.dynamics); generated ones from
the network's velocity head. The `dynamics` control shapes the level; these measures read the
contrast within it.

    python -m ml.evaluation.velocity --requests 8     # generated 30 s against real openings as long
    python -m ml.evaluation.velocity --phrases    # the training pieces' phrase-level spread per style
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.notes import NoteSequence


def spread(seq: NoteSequence) -> float:
    return float(np.std(np.asarray(seq.velocity, float))) if len(seq) else 0.0


def phrase_spread(seq: NoteSequence, bars: int = 4) -> float | None:
    """Standard deviation of the mean velocity of `bars`-bar stretches (with 4 notes or more), or None
    where the piece has fewer than three."""
    numerator, denominator = seq.time_signature
    span = bars * numerator * 4.0 / denominator
    window = np.floor((np.asarray(seq.seconds_to_beats(seq.start), float) + float(seq.bar_phase)) / span)
    velocity = np.asarray(seq.velocity, float)
    means = [velocity[window == k].mean() for k in np.unique(window) if (window == k).sum() >= 4]
    return float(np.std(means)) if len(means) >= 3 else None


def pulse(seq: NoteSequence) -> float | None:
    """Velocity on the bar line minus velocity off the beat (None without both kinds of note)."""
    numerator, denominator = seq.time_signature
    bar = numerator * 4.0 / denominator
    compound = denominator == 8 and numerator % 3 == 0 and numerator > 3
    beat = 1.5 if compound else 4.0 / denominator
    onset = np.asarray(seq.seconds_to_beats(seq.start), float) + float(seq.bar_phase)
    velocity = np.asarray(seq.velocity, float)
    on_bar = np.abs(onset / bar - np.round(onset / bar)) < 1e-3
    off_beat = np.abs(onset / beat - np.round(onset / beat)) > 1e-3
    if not on_bar.any() or not off_beat.any():
        return None
    return float(velocity[on_bar].mean() - velocity[off_beat].mean())


def summary(pieces: list[NoteSequence]) -> dict[str, Any]:
    pulses = [p for p in (pulse(s) for s in pieces) if p is not None]
    phrases = [p for p in (phrase_spread(s) for s in pieces) if p is not None]
    return {"pieces": len(pieces), "spread_median": round(float(np.median([spread(s) for s in pieces])), 2),
            "phrase_spread_median": round(float(np.median(phrases)), 2) if phrases else None,
            "pulse_median": round(float(np.median(pulses)), 2) if pulses else None}


def main(argv: list[str] | None = None) -> int:
    from ml.data.datasets import NoteDataset
    from ml.generation.generator import Generator
    from ml.generation.request import GenerationRequest

    parser = argparse.ArgumentParser(description="Velocity spread and pulse, generated against real pieces.")
    parser.add_argument("--model", type=Path, default=Path("ml/pretrained/default.keras"))
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus-1500.npz"))
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--phrases", action="store_true",
                        help="only the training pieces' phrase-level spread per style (STYLE_DYNAMICS)")
    args = parser.parse_args(argv)
    dataset = NoteDataset.load(args.dataset)
    if args.phrases:
        for style in dataset.styles:
            found = [s for s in (phrase_spread(dataset.piece(int(i))) for i in dataset.indices("train", style))
                     if s is not None]
            print(style, f"{np.median(found):.1f}" if found else "n/a", f"({len(found)} pieces)")
        return 0
    from ml.evaluation.discriminator import crop

    generator = Generator(args.model)
    report: dict[str, Any] = {}
    for style in generator.styles:
        real = [dataset.piece(int(i)) for i in np.concatenate([dataset.indices("test", style),
                                                                dataset.indices("validation", style)])]
        made = [piece.notes for r in range(args.requests) for piece in
                generator.generate(GenerationRequest(style=style, seconds=args.seconds, seed=2000 + 2 * r,
                                                     variations=2))]
        # Like for like: the real pieces' opening as long as the generated ones (in beats), and whole.
        beats = float(np.median([np.cumsum(np.asarray(m.to_beats()[0], float)).max() for m in made]))
        report[style] = {"real": summary([crop(r, beats) for r in real]), "real_whole": summary(real),
                         "generated": summary(made), "cropped_to_beats": beats}
        print(style, report[style], flush=True)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
