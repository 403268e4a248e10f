"""Can a classifier tell generated pieces from real ones? A classifier two-sample test.

Each piece becomes a vector of tempo-free statistics of its notes, as a musician would describe
them: how long each scale degree sounds (relative to the piece's own key), how much of the music
lies outside the scale, the melodic intervals of the top line, the time between onsets and the
lengths of notes in beats, where onsets fall in the bar, and the texture (notes per onset, onsets
per beat, range). Per style, a logistic regression and a small random forest are cross-validated
on generated against real pieces, with the folds grouped (the variations of one request, or one
real piece, never on both sides of a split). An accuracy near 0.5 means the classifier cannot tell
them apart; the same test between two random halves of the real pieces gives the floor that the
sample sizes allow.

The statistics are written here from their musical definitions; nothing is shared with the
constraints that shape generation. The key is estimated from the notes described (Krumhansl-
Schmuckler) the same way for real and generated pieces; the final bar (the cadence's held chord) is left out of
both, so that the test looks at the music rather than at how a piece stops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ml.data.notes import NoteSequence, estimate_key_from_histogram, pitch_class_histogram

if TYPE_CHECKING:
    from ml.data.datasets import NoteDataset
    from ml.generation.generator import Generator

DEGREE_NAMES = ("1", "b2", "2", "b3", "3", "4", "#4", "5", "b6", "6", "b7", "7")
# Time between onsets and note lengths in beats, in half-octave classes from 1/8 beat to 4 beats.
TIME_BINS = np.log2(np.array([1 / 8, 1 / 4, 1 / 3, 1 / 2, 3 / 4, 1, 3 / 2, 2, 3, 4]))
TIME_LABELS = ("1/8", "1/4", "1/3", "1/2", "3/4", "1", "3/2", "2", "3", "4+")
INTERVAL_LABELS = ("repeated note", "step", "third", "fourth or fifth", "sixth to octave", "leap over an octave")
# Cross-validations per two-sample test, each with its own subsample and folds (see two_sample_test).
REPEATS = 5
# A style with fewer held-out test pieces than this is measured on its validation pieces too.
FEW_REAL = 20
# Where onsets fall, on the quarter-note grid (notation-free: a bar of 2/2 and one of 4/4 are one
# length, and their quarters are the same quarters).
POSITION_LABELS = ("bar line", "quarter note", "eighth note", "sixteenth note", "triplet eighth", "other")


@dataclass(frozen=True)
class Feature:
    name: str
    words: str  # what it measures, for the report: "{value}" is filled in


def _features() -> list[Feature]:
    out = [Feature(f"degree_{d}", f"scale degree {d} sounds for {{value}} of the time") for d in DEGREE_NAMES]
    out.append(Feature("outside_scale", "notes outside the scale sound for {value} of the time"))
    out += [Feature(f"interval_{k}", f"the top line moves by a {label} in {{value}} of its moves")
            for k, label in enumerate(INTERVAL_LABELS)]
    out.append(Feature("rising", "{value} of the top line's moves rise"))
    out += [Feature(f"ioi_{label}", f"{{value}} of the onsets follow the previous one after about {label} beat")
            for label in TIME_LABELS]
    out += [Feature(f"duration_{label}", f"{{value}} of the notes last about {label} beat") for label in TIME_LABELS]
    out += [Feature(f"position_{k}", f"{{value}} of the onsets fall on a {label}")
            for k, label in enumerate(POSITION_LABELS)]
    out += [Feature("notes_per_onset", "{value} notes start together on average"),
            Feature("onsets_per_beat", "{value} onsets per beat"),
            Feature("range", "the piece spans {value} semitones"),
            Feature("top_line_range", "the top line spans {value} semitones")]
    return out


FEATURES = _features()
FEATURE_NAMES = [f.name for f in FEATURES]


def _scale(tonic: int, mode: str) -> set[int]:
    """The key's notes; in minor the raised sixth and seventh belong to it (melodic minor)."""
    steps = (0, 2, 4, 5, 7, 9, 11) if mode == "major" else (0, 2, 3, 5, 7, 8, 9, 10, 11)
    return {(tonic + s) % 12 for s in steps}


def _histogram(values: np.ndarray, bins: int) -> np.ndarray:
    counts = np.bincount(values, minlength=bins)[:bins].astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def _time_classes(beats: np.ndarray) -> np.ndarray:
    """The nearest class of TIME_BINS (in log time) for each positive duration in beats."""
    logs = np.log2(np.clip(beats, 1 / 64, None))
    return np.argmin(np.abs(logs[:, None] - TIME_BINS[None, :]), axis=1)


def piece_features(seq: NoteSequence) -> np.ndarray:
    """The statistics of FEATURES for one piece (the last bar left out)."""
    onset, duration = _beats(seq)
    in_bar, bar, bar_length = seq.bar_positions()
    keep = bar < bar.max() if len(bar) and bar.max() > 0 else np.ones(len(seq), bool)
    pitch = seq.pitch.astype(np.int64)[keep]
    onset, duration, in_bar, bar_length = onset[keep], duration[keep], in_bar[keep], bar_length[keep]
    if len(pitch) < 4:
        raise ValueError("A piece needs a few notes before its last bar to be described.")
    tonic, mode = estimate_key_from_histogram(pitch_class_histogram(pitch, np.clip(duration, 1e-3, None)))
    # Scale degrees, weighted by how long each note sounds.
    degree = (pitch - tonic) % 12
    weights = np.clip(duration, 1e-3, None)
    degrees = np.bincount(degree, weights=weights, minlength=12) / weights.sum()
    outside = float(weights[~np.isin(pitch % 12, list(_scale(tonic, mode)))].sum() / weights.sum())
    # The top line: the highest note of each onset.
    starts, first = np.unique(np.round(onset, 4), return_index=True)
    top = np.array([pitch[(np.round(onset, 4) == s)].max() for s in starts])
    moves = np.diff(top)
    size = np.abs(moves)
    interval_class = np.select([size == 0, size <= 2, size <= 4, size <= 7, size <= 12], [0, 1, 2, 3, 4], 5)
    intervals = _histogram(interval_class, len(INTERVAL_LABELS))
    rising = float((moves > 0).sum() / max((moves != 0).sum(), 1))
    iois = np.diff(starts)
    ioi = _histogram(_time_classes(iois[iois > 0]), len(TIME_LABELS)) if len(iois) else np.zeros(len(TIME_LABELS))
    lengths = _histogram(_time_classes(duration), len(TIME_LABELS))
    at = in_bar[first]

    def on(grid: float) -> np.ndarray:
        return np.abs(at / grid - np.round(at / grid)) < 1e-3

    position = np.select([np.abs(at) < 1e-3, on(1.0), on(0.5), on(0.25), on(1 / 3)], [0, 1, 2, 3, 4], 5)
    positions = _histogram(position, len(POSITION_LABELS))
    span = float(onset.max() - onset.min()) or 1.0
    texture = [len(pitch) / len(starts), len(starts) / span, float(pitch.max() - pitch.min()),
               float(top.max() - top.min())]
    return np.concatenate([degrees, [outside], intervals, [rising], ioi, lengths, positions, texture])


def tuning_pieces(dataset: NoteDataset, style: str) -> np.ndarray:
    """Indices of real pieces to tune sampling against without touching the test pieces: the
    style's validation pieces, or its training pieces where validation holds fewer than FEW_REAL
    (the quartets' 6 movements)."""
    found = dataset.indices("validation", style)
    return found if len(found) >= FEW_REAL else dataset.indices("train", style)


def unseen(dataset: NoteDataset, style: str) -> np.ndarray:
    """Indices of the style's pieces that training did not see: its test pieces, and its validation
    pieces too where the test split holds fewer than FEW_REAL."""
    found = dataset.indices("test", style)
    if len(found) < FEW_REAL:
        found = np.sort(np.concatenate([found, dataset.indices("validation", style)]))
    return found


def training_floor(dataset: NoteDataset, real: Sequence[NoteSequence], style: str, count: int, beats: float, *,
                   seed: int = 0, draws: int = 5, repeats: int = REPEATS) -> dict[str, Any]:
    """What a model would score that wrote exactly the music it learnt from: `count` of the style's
    training pieces (a seeded draw), each cut to `beats` quarter notes, against the `real` pieces.

    Where the test pieces differ from the training pieces (a split's chorales with more sixteenths),
    no model of those can reach the real-against-real floor. One draw moves with the pieces drawn,
    so the figure is the mean of `draws` draws, their range beside it.
    """
    found = dataset.indices("train", style)
    real_x, _ = feature_matrix([crop(r, beats) for r in real])
    accuracies = []
    for draw in range(draws):
        chosen = np.random.default_rng(seed + draw).choice(found, size=min(count, len(found)), replace=False)
        learnt_x, _ = feature_matrix([crop(dataset.piece(int(i)), beats) for i in chosen])
        test = two_sample_test(learnt_x, real_x, list(range(len(learnt_x))), list(range(len(real_x))),
                               seed=seed + 1000 * draw, repeats=repeats)
        accuracies.append(test["accuracy"])
    return {"accuracy": round(float(np.mean(accuracies)), 4), "range": [min(accuracies), max(accuracies)],
            "draws": draws, "training_pieces": int(min(count, len(found)))}


def generated_beats(generated: Sequence[NoteSequence]) -> float:
    """The median length of the generated pieces in quarter notes: real pieces are cut to it."""
    return float(np.median([float(np.max(np.sum(_beats(g), axis=0))) for g in generated if len(g)]))


def generated_pieces(generator: Generator, controls: dict[str, Any], requests: int, variations: int, seed: int
                     ) -> tuple[list[NoteSequence], list[int]]:
    """`requests` requests of `variations` pieces with `controls`, request r from seed `seed + r *
    variations` (variation v plays its seed + v: no piece twice), and each piece's request, its fold
    group."""
    from ml.generation.request import GenerationRequest

    generated, groups = [], []
    for r in range(requests):
        request = GenerationRequest.from_dict({**controls, "seed": seed + r * variations, "variations": variations})
        for piece in generator.generate(request):
            generated.append(piece.notes)
            groups.append(r)
    return generated, groups


def crop(seq: NoteSequence, beats: float) -> NoteSequence:
    """The first `beats` quarter notes of a piece, a note still sounding there cut where it stops."""
    onset, duration = _beats(seq)
    keep = onset < beats - 1e-9
    # A note's length in seconds shrinks in proportion to the beats it loses.
    kept = np.minimum(onset + duration, beats)[keep] - onset[keep]
    scale = np.divide(kept, duration[keep], out=np.ones(int(keep.sum())), where=duration[keep] > 0)
    return NoteSequence.from_notes(seq.start[keep], seq.pitch[keep], seq.duration[keep] * scale,
                                   seq.velocity[keep], **seq.meta())


def _beats(seq: NoteSequence) -> tuple[np.ndarray, np.ndarray]:
    step, duration = seq.to_beats()
    return np.cumsum(step.astype(np.float64)), duration.astype(np.float64)


def feature_matrix(pieces: Sequence[NoteSequence]) -> tuple[np.ndarray, list[int]]:
    """Rows of features for the pieces that can be described, and which pieces those are."""
    rows, kept = [], []
    for i, seq in enumerate(pieces):
        try:
            rows.append(piece_features(seq))
            kept.append(i)
        except ValueError:
            continue
    return (np.array(rows) if rows else np.zeros((0, len(FEATURES)))), kept


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval of a proportion (Wilson score)."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def two_sample_test(a: np.ndarray, b: np.ndarray, groups_a: Sequence[int], groups_b: Sequence[int], *,
                    seed: int = 0, folds: int = 5, repeats: int = REPEATS) -> dict[str, Any]:
    """Cross-validated accuracy of telling rows of `a` (label 1) from rows of `b` (label 0).

    The larger side is subsampled to the size of the smaller (chance is 0.5); folds are grouped.
    Returns per classifier the accuracy and its 95% interval, and the best of them.

    One cross-validation moves by up to 0.1 (0.25 in the quartets, 14 real movements) with the
    subsample drawn and how the groups fall into folds, the same pieces on both sides. So each of
    `repeats` repetitions draws the subsample anew and deals the groups into folds anew (shuffled,
    the two sides in every fold), and a classifier's accuracy is its mean over them; the interval is
    a single cross-validation's (Wilson, on the pieces of one), so it errs wide. `repeats=1` is the
    first procedure (commit 32183dc): one subsample, the groups dealt by GroupKFold.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = min(len(a), len(b))
    if n < 4:
        raise ValueError(f"Too few pieces to test: {len(a)} against {len(b)}.")
    classifiers = {
        "logistic regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=5000)),
        "random forest": lambda: RandomForestClassifier(n_estimators=200, max_depth=6, min_samples_leaf=2,
                                                        random_state=seed, n_jobs=1),
    }
    accuracies: dict[str, list[float]] = {name: [] for name in classifiers}
    k = 0
    for repeat in range(repeats):
        rng = np.random.default_rng(seed + repeat)
        pick_a = np.sort(rng.choice(len(a), n, replace=False))
        pick_b = np.sort(rng.choice(len(b), n, replace=False))
        x = np.vstack([a[pick_a], b[pick_b]])
        y = np.r_[np.ones(n), np.zeros(n)]
        # Group ids on the two sides never collide.
        group_a = np.asarray(groups_a)[pick_a]
        group_b = np.asarray(groups_b)[pick_b] + (int(group_a.max()) + 1 if len(group_a) else 0)
        groups = np.r_[group_a, group_b]
        k = int(min(folds, len(np.unique(group_a)), len(np.unique(group_b))))
        if k < 2:
            raise ValueError("Too few independent pieces (groups) on one side to cross-validate.")
        splitter = GroupKFold(n_splits=k) if repeats == 1 else \
            StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed + repeat)
        splits = list(splitter.split(x, y, groups))
        for name, make in classifiers.items():
            predicted = np.zeros(len(y))
            for train, test in splits:
                model = make()
                model.fit(x[train], y[train])
                predicted[test] = model.predict(x[test])
            accuracies[name].append(float((predicted == y).mean()))
    out: dict[str, Any] = {"pieces_per_side": int(n), "folds": k, "repeats": repeats, "classifiers": {}}
    for name, found in accuracies.items():
        accuracy = float(np.mean(found))
        low, high = wilson(int(round(accuracy * 2 * n)), 2 * n)
        out["classifiers"][name] = {"accuracy": round(accuracy, 4), "ci95": [round(low, 4), round(high, 4)],
                                    "spread": [round(min(found), 4), round(max(found), 4)]}
    best = max(out["classifiers"].items(), key=lambda item: item[1]["accuracy"])
    out["accuracy"], out["ci95"], out["best"] = best[1]["accuracy"], best[1]["ci95"], best[0]
    return out


def separating_features(generated: np.ndarray, real: np.ndarray, style: str, top: int = 5) -> list[dict[str, Any]]:
    """The features whose means differ most (in pooled standard deviations), in words."""
    mean_g, mean_r = generated.mean(axis=0), real.mean(axis=0)
    pooled = np.sqrt((generated.var(axis=0) + real.var(axis=0)) / 2) + 1e-9
    effect = (mean_g - mean_r) / pooled
    rows = []
    for j in np.argsort(-np.abs(effect))[:top]:
        feature = FEATURES[j]
        ratio = mean_g[j] / mean_r[j] if abs(mean_r[j]) > 1e-9 else math.inf
        rows.append({
            "feature": feature.name, "effect": round(float(effect[j]), 2),
            "generated": round(float(mean_g[j]), 4), "real": round(float(mean_r[j]), 4),
            "words": _words(feature, mean_g[j], mean_r[j], ratio, style),
        })
    return rows


def _value(feature: Feature, value: float) -> str:
    shares = not feature.name.startswith(("notes_per", "onsets_per", "range", "top_line"))
    return f"{100 * value:.0f}%" if shares else f"{value:.2g}"


def _words(feature: Feature, generated: float, real: float, ratio: float, style: str) -> str:
    said = feature.words.format(value=_value(feature, generated))
    times = f"{ratio:.1f}x as much" if math.isfinite(ratio) else "where real pieces have none"
    return f"{said}, against {_value(feature, real)} in real {style} pieces ({times})"


def discriminator_report(real: Sequence[NoteSequence], generated: Sequence[NoteSequence],
                         generated_groups: Sequence[int], style: str, *, seed: int = 0,
                         crop_real: bool = True, repeats: int = REPEATS) -> dict[str, Any]:
    """The two-sample test of generated against real pieces of a style, the real-against-real floor,
    and the features that separate them most, in words.

    With `crop_real`, each real piece is cut to the median length of the generated ones (in
    quarter notes): a piece's range, and how many sections it passes through, grow with its length.
    """
    crop_beats = None
    if crop_real and generated:
        crop_beats = generated_beats(generated)
        real = [crop(r, crop_beats) for r in real]
    real_x, real_kept = feature_matrix(real)
    gen_x, gen_kept = feature_matrix(generated)
    gen_groups = [generated_groups[i] for i in gen_kept]
    report: dict[str, Any] = {"real_pieces": len(real_kept), "generated_pieces": len(gen_kept),
                              "real_cropped_to_beats": crop_beats}
    report["generated_vs_real"] = two_sample_test(gen_x, real_x, gen_groups, list(range(len(real_kept))), seed=seed,
                                                  repeats=repeats)
    # The floor: two random halves of the real pieces.
    order = np.random.default_rng(seed).permutation(len(real_kept))
    half = len(order) // 2
    try:
        report["real_vs_real"] = two_sample_test(real_x[order[:half]], real_x[order[half:2 * half]],
                                                 list(range(half)), list(range(half)), seed=seed, repeats=repeats)
    except ValueError as exc:
        report["real_vs_real"] = {"error": str(exc)}
    report["separating"] = separating_features(gen_x, real_x, style)
    return report


def main(argv: list[str] | None = None) -> int:
    """`python -m ml.evaluation.discriminator --model M`: pieces from the product's defaults (or with
    constraints off) against the held-out real pieces of each style."""
    import argparse
    import json
    from pathlib import Path

    from ml.data.datasets import NoteDataset
    from ml.generation.generator import Generator

    parser = argparse.ArgumentParser(description="Tell generated pieces from real ones, per style.")
    parser.add_argument("--model", type=Path, default=Path("ml/pretrained/default.keras"))
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus-1500.npz"))
    parser.add_argument("--styles", nargs="*")
    parser.add_argument("--requests", type=int, default=8, help="requests per style (each --variations pieces)")
    parser.add_argument("--variations", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--off", nargs="*", default=[], help="constraints to switch off")
    parser.add_argument("--set", nargs="*", default=[], metavar="CONTROL=VALUE",
                        help="request controls other than the defaults (temperature=1.0 top_p=1)")
    parser.add_argument("--real", choices=("test", "tuning"), default="test",
                        help="the real side: the held-out test pieces, or the pieces sampling is tuned "
                             "against (validation; training where validation is few)")
    parser.add_argument("--seed", type=int, default=1000, help="the first request's seed")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help="cross-validations, each with its own subsample and folds (1: the first procedure)")
    parser.add_argument("--out", type=Path, default=Path("reports/discriminator.json"))
    args = parser.parse_args(argv)
    controls = dict(item.split("=", 1) for item in args.set)
    dataset = NoteDataset.load(args.dataset)
    generator = Generator(args.model, off=args.off)
    report: dict[str, Any] = {"model": str(args.model), "off": args.off, "set": controls, "seconds": args.seconds,
                              "styles": {}}
    for style in args.styles or [s for s in dataset.styles if s in generator.styles]:
        # Every piece training did not see (validation too where few), said so; or the tuning pieces.
        held = unseen(dataset, style) if args.real == "test" else tuning_pieces(dataset, style)
        real = [dataset.piece(int(i)) for i in held]
        generated, groups = generated_pieces(generator, {**controls, "style": style, "seconds": args.seconds},
                                             args.requests, args.variations, args.seed)
        report["styles"][style] = discriminator_report(real, generated, groups, style, repeats=args.repeats)
        if args.real == "test":  # the tuning pieces may be training pieces themselves
            report["styles"][style]["training_vs_real"] = training_floor(
                dataset, real, style, len(generated), generated_beats(generated), repeats=args.repeats)
        if args.real == "tuning":
            source = "validation" if len(held) == len(dataset.indices("validation", style)) else "train"
        elif len(held) == len(dataset.indices("test", style)):
            source = "test"
        else:
            source = f"test and validation ({len(held)} pieces: few)"
        report["styles"][style]["real_source"] = source
        row = report["styles"][style]
        print(style, row["generated_vs_real"]["accuracy"], row["generated_vs_real"]["ci95"],
              "floor", row["real_vs_real"].get("accuracy"),
              "training pieces", row.get("training_vs_real", {}).get("accuracy"), flush=True)
        for s in row["separating"][:3]:
            print("   ", s["words"], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
