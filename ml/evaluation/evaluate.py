"""Evaluation of a note model against baselines: next-note scores and an MGEval comparison.

Command line (thin; the Makefile and `manage.py evaluate` call the same `main`):

    python -m ml.evaluation.evaluate --model ml/pretrained/default.keras --dataset data/cache/corpus-XXXX.npz \\
        --out reports/ --pieces-per-style 100 --seconds 30

`--model` defaults to ml/pretrained/default.keras and `--dataset` to the newest
data/cache/corpus-*.npz. Writes `evaluation.json`, `evaluation.md` and PNG plots to `--out`.

Fairness: the model and every baseline score exactly the same notes, every note of every test
piece of a style the model knows, each from the piece's first note. The model's pitch is scored
as it factorises the next note, p(step) p(pitch | step), with the true step fed to the decoder
(teacher forcing, as in training); the pitch baselines do not see the step, so the comparable
number is the joint cross-entropy of (step, pitch): the model's step plus pitch CE against each
pitch baseline's CE plus the CE of training step-class frequencies.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from ml.data.datasets import NoteDataset
from ml.data.notes import PITCH_CLASS_NAMES, NoteSequence
from ml.evaluation.baselines import (
    PITCH_BASELINES,
    ClassFrequencies,
    ConstantBaseline,
    PitchBaseline,
    fit_pitch_baseline,
)
from ml.evaluation.discriminator import discriminator_report, generated_beats, training_floor, unseen
from ml.evaluation.form_metrics import DEFINITIONS as FORM_DEFINITIONS
from ml.evaluation.form_metrics import against_real, downbeat_accent, downbeat_alignment, ending, form_scores
from ml.evaluation.form_metrics import summarise as summarise_form
from ml.evaluation.joint_markov import JointMarkov, chain_writer
from ml.evaluation.mgeval import FEATURES, compare_sets, crop, piece_features, summarize
from ml.model.config import key_shift

DEFAULT_MODEL = Path("ml/pretrained/default.keras")
EVAL_BATCH_SIZE = 1024
MIN_SET_SIZE = 2  # intra-set distances need a pair

# (style, count, seed) -> pieces. The default draws them from ml.generation.generator.Generator.
PieceSampler = Callable[[str, int, int], list[NoteSequence]]
Log = Callable[[str], None]


class Scores(TypedDict, total=False):
    """Next-note scores of one predictor on one group of notes (absent: not applicable)."""

    notes: int
    pitch_ce: float  # nats/note
    pitch_top1: float
    step_ce: float
    joint_ce: float  # step CE + pitch CE
    step_mae_s: float
    duration_mae_s: float
    velocity_mae: float  # MIDI velocity units


@dataclass
class NotePredictions:
    """Per-note predictions of one predictor, aligned with the scored notes (NaN: none)."""

    pitch_log_prob: np.ndarray
    pitch_top1: np.ndarray  # predicted pitch
    step_log_prob: np.ndarray
    step_s: np.ndarray
    duration_s: np.ndarray
    velocity: np.ndarray

    @classmethod
    def empty(cls, n: int) -> NotePredictions:
        nan = np.full(n, np.nan)
        return cls(nan.copy(), np.full(n, -1), nan.copy(), nan.copy(), nan.copy(), nan.copy())


@dataclass
class TestNotes:
    """The notes every predictor is scored on, with their true values."""

    index: np.ndarray  # flat note index into the dataset
    piece: np.ndarray  # piece index of each note
    style: np.ndarray  # dataset style index of each note
    pitch: np.ndarray
    step_class: np.ndarray
    step_s: np.ndarray
    duration_s: np.ndarray
    velocity: np.ndarray
    seconds_per_beat: np.ndarray  # from the piece's tempo


# -- next-note scores ---------------------------------------------------------------------------

def model_predictions(model: Any, dataset: NoteDataset, split: str = "test",
                      log: Log | None = None) -> tuple[TestNotes, NotePredictions]:
    """Run the model over every note of `split` (teacher forcing) and collect its predictions."""
    from ml.data.windows import WindowBatches, make_examples

    config = replace(model.config, batch_size=EVAL_BATCH_SIZE)
    examples = make_examples(dataset, config, split)
    notes = _test_notes(dataset, examples.targets, examples.piece, examples.step)
    preds = NotePredictions.empty(len(notes.index))
    batches = WindowBatches(examples, config, train=False)
    grid = np.array(config.time_grid)
    shifts = np.array([key_shift(int(k)) if config.key_relative else 0 for k in dataset.piece_key])
    for b in range(len(batches)):
        inputs, targets = batches[b]
        out = {k: np.asarray(v) for k, v in model.predict_on_batch(inputs).items()}
        rows = slice(b * config.batch_size, b * config.batch_size + len(targets["pitch"]))
        pitch_lp = _log_softmax(out["pitch"])
        step_lp = _log_softmax(out["step"])
        preds.pitch_log_prob[rows] = pitch_lp[np.arange(len(pitch_lp)), targets["pitch"]]
        # A key-relative model predicts pitches on C: move its guess into the piece's key.
        preds.pitch_top1[rows] = np.argmax(pitch_lp, axis=1) + shifts[examples.piece[rows]]
        preds.step_log_prob[rows] = step_lp[np.arange(len(step_lp)), targets["step"]]
        spb = notes.seconds_per_beat[rows]
        preds.step_s[rows] = grid[_median_class(step_lp)] * spb
        preds.duration_s[rows] = grid[_median_class(_log_softmax(out["duration"]))] * spb
        preds.velocity[rows] = np.asarray(out["velocity"]).reshape(-1) * 127.0
        if log and (b + 1) % 20 == 0:
            log(f"model: {b + 1}/{len(batches)} batches")
    return notes, preds


def _test_notes(dataset: NoteDataset, index: np.ndarray, piece: np.ndarray, step_classes: np.ndarray) -> TestNotes:
    return TestNotes(
        index=index, piece=piece, style=dataset.piece_style[piece].astype(np.int64),
        pitch=dataset.pitch[index].astype(np.int64), step_class=step_classes[index].astype(np.int64),
        step_s=dataset.step[index].astype(np.float64), duration_s=dataset.duration[index].astype(np.float64),
        velocity=dataset.velocity[index].astype(np.float64),
        seconds_per_beat=60.0 / dataset.piece_tempo[piece].astype(np.float64),
    )


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _median_class(log_probs: np.ndarray) -> np.ndarray:
    """The class where the cumulative predicted probability first reaches one half."""
    cdf = np.cumsum(np.exp(log_probs), axis=1)
    return np.minimum((cdf < 0.5 * cdf[:, -1:]).sum(axis=1), log_probs.shape[1] - 1)


@dataclass
class StyleBaselines:
    """Every baseline of one style, fitted on that style's training pieces."""

    pitch: dict[str, PitchBaseline]
    step_classes: ClassFrequencies
    duration_classes: ClassFrequencies
    timing: dict[str, dict[str, ConstantBaseline]]  # statistic -> {"step", "duration", "velocity"}
    # ("step" and "duration" in beats, so that they follow each piece's tempo like the model's)


def fit_baselines(dataset: NoteDataset, style: str, time_classes: Callable[[np.ndarray], np.ndarray],
                  n_classes: int) -> StyleBaselines:
    """Fit every baseline on the style's training pieces, tuning alphas on its validation pieces."""
    train = [dataset.piece_slice(int(i)) for i in dataset.indices("train", style)]
    valid = [dataset.piece_slice(int(i)) for i in dataset.indices("validation", style)]
    if not train:
        raise ValueError(f"The dataset has no training pieces of style {style!r} to fit baselines on.")
    train_pitch = [dataset.pitch[s].astype(np.int64) for s in train]
    valid_pitch = [dataset.pitch[s].astype(np.int64) for s in valid]
    flat = np.concatenate([np.arange(s.start, s.stop) for s in train])
    step_beats, duration_beats = dataset.step_beats[flat], dataset.duration_beats[flat]
    return StyleBaselines(
        pitch={name: fit_pitch_baseline(name, train_pitch, valid_pitch) for name in PITCH_BASELINES},
        step_classes=ClassFrequencies(n_classes).fit(time_classes(step_beats)),
        duration_classes=ClassFrequencies(n_classes).fit(time_classes(duration_beats)),
        timing={stat: {"step": ConstantBaseline(stat).fit(step_beats),
                       "duration": ConstantBaseline(stat).fit(duration_beats),
                       "velocity": ConstantBaseline(stat).fit(dataset.velocity[flat])}
                for stat in ("mean", "median")},
    )


def baseline_predictions(dataset: NoteDataset, notes: TestNotes, baselines: dict[str, StyleBaselines]
                         ) -> dict[str, NotePredictions]:
    """Predictions of every baseline for exactly the notes in `notes`."""
    names = list(PITCH_BASELINES) + ["mean", "median"]
    preds = {name: NotePredictions.empty(len(notes.index)) for name in names}
    for piece in np.unique(notes.piece):
        rows = np.flatnonzero(notes.piece == piece)
        style = dataset.styles[int(dataset.piece_style[piece])]
        fitted = baselines[style]
        # Rows of one piece are its notes in order, from the first: score the piece as a whole.
        pitches = notes.pitch[rows]
        step_lp = fitted.step_classes.log_prob(notes.step_class[rows])
        for name in PITCH_BASELINES:
            log_probs, best = fitted.pitch[name].score_and_predict([pitches])
            preds[name].pitch_log_prob[rows] = log_probs
            preds[name].pitch_top1[rows] = best
            # The uniform row is the know-nothing reference for timing too.
            preds[name].step_log_prob[rows] = (step_lp if name != "uniform"
                                               else -np.log(fitted.step_classes.classes))
        for stat in ("mean", "median"):
            timing = fitted.timing[stat]
            spb = notes.seconds_per_beat[rows]
            preds[stat].step_s[rows] = timing["step"].value * spb
            preds[stat].duration_s[rows] = timing["duration"].value * spb
            preds[stat].velocity[rows] = timing["velocity"].value
    return preds


def fit_chains(dataset: NoteDataset, config: Any, styles: Sequence[str]) -> dict[str, JointMarkov]:
    """The fair baseline: one joint-token chain per style, on the model's own key-relative inputs."""
    from ml.data.windows import make_examples

    chains = {}
    for style in styles:
        examples = make_examples(dataset, config, pieces=dataset.indices("train", style))
        chains[style] = JointMarkov(config.time_classes).fit(_chain_pieces(examples))
    return chains


def _chain_pieces(examples: Any) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    pieces = []
    for piece in np.unique(examples.piece):
        rows = examples.targets[examples.piece == piece]
        pieces.append((examples.step[rows], examples.pitch[rows], examples.duration[rows], examples.position[rows]))
    return pieces


def chain_predictions(dataset: NoteDataset, config: Any, chains: dict[str, JointMarkov], notes: TestNotes
                      ) -> NotePredictions:
    """The chains' scores for exactly the notes in `notes`: log p(step) and log p(pitch | step), so
    that both the pitch CE given the true step and the joint step+pitch CE are like for like."""
    from ml.data.windows import make_examples

    preds = NotePredictions.empty(len(notes.index))
    examples = make_examples(dataset, config, "test")
    row_of = {int(flat): k for k, flat in enumerate(notes.index)}
    for piece in np.unique(examples.piece):
        style = dataset.styles[int(dataset.piece_style[piece])]
        chain = chains.get(style)
        if chain is None:
            continue
        flat = examples.targets[examples.piece == piece]
        shift = key_shift(int(dataset.piece_key[piece])) if config.key_relative else 0
        t1 = t2 = -1
        last_position = -1
        for i in flat:
            s, p, d = int(examples.step[i]), int(examples.pitch[i]), int(examples.duration[i])
            step_lp = chain.step_log_probs(last_position, t1, t2)
            joint = chain.step_pitch_prob(last_position, t1, t2, s, p)
            k = row_of[int(i)]
            preds.step_log_prob[k] = step_lp[s]
            preds.pitch_log_prob[k] = math.log(joint) - step_lp[s]
            pitch_lp, _ = chain.given_step(last_position, t1, t2, s)
            preds.pitch_top1[k] = int(np.argmax(pitch_lp)) + shift
            t2, t1, last_position = t1, chain.token(s, p, d), int(examples.position[i])
    return preds


def scores(notes: TestNotes, preds: NotePredictions, rows: np.ndarray) -> Scores:
    """Scores of one predictor on the notes `rows`."""
    out: Scores = {"notes": int(len(rows))}
    if not len(rows):
        return out
    if np.isfinite(preds.pitch_log_prob[rows]).all():
        out["pitch_ce"] = float(-preds.pitch_log_prob[rows].mean())
        out["pitch_top1"] = float(np.mean(preds.pitch_top1[rows] == notes.pitch[rows]))
    if np.isfinite(preds.step_log_prob[rows]).all():
        out["step_ce"] = float(-preds.step_log_prob[rows].mean())
        if "pitch_ce" in out:
            out["joint_ce"] = out["pitch_ce"] + out["step_ce"]
    for key, predicted, true in (("step_mae_s", preds.step_s, notes.step_s),
                                 ("duration_mae_s", preds.duration_s, notes.duration_s),
                                 ("velocity_mae", preds.velocity, notes.velocity)):
        if np.isfinite(predicted[rows]).all():
            out[key] = float(np.mean(np.abs(predicted[rows] - true[rows])))  # type: ignore[literal-required]
    return out


def next_note_report(dataset: NoteDataset, notes: TestNotes, predictors: dict[str, NotePredictions]
                     ) -> dict[str, Any]:
    """Scores of every predictor, overall and per style."""
    groups = {"overall": np.arange(len(notes.index))}
    for s, style in enumerate(dataset.styles):
        rows = np.flatnonzero(notes.style == s)
        if len(rows):
            groups[style] = rows
    return {group: {name: scores(notes, preds, rows) for name, preds in predictors.items()}
            for group, rows in groups.items()}


# -- MGEval comparison ---------------------------------------------------------------------------

def every_constraint() -> tuple[str, ...]:
    """The constraints a plain request is written under (key, range, repeats, metre, cadence, voice,
    loop, and passing notes and drift where the model file has their tables): the "every constraint off" set switches
    them all off, and the network writes alone."""
    from ml.generation.constraints import CONSTRAINTS, REQUESTED

    return tuple(name for name in CONSTRAINTS if name not in REQUESTED)


def generator_sampler(model_path: Path, seconds: float, *, constrained: bool = True,
                      chains: dict[str, JointMarkov] | None = None) -> PieceSampler:
    """Pieces from `ml.generation.generator.Generator`, in batches of four variations, with the product's
    constraints or with every one of them off; with `chains`, the fair Markov baseline writes through the
    same sampler and constraints."""
    from ml.generation.generator import Generator
    from ml.generation.request import GenerationRequest

    generator = Generator(model_path, off=() if constrained else every_constraint(),
                          writer=chain_writer(chains) if chains is not None else None)

    def sample(style: str, count: int, seed: int) -> list[NoteSequence]:
        pieces: list[NoteSequence] = []
        while len(pieces) < count:
            variations = min(4, count - len(pieces))
            request = GenerationRequest(style=style, seconds=seconds, seed=(seed + len(pieces)) % 2**32,
                                        variations=variations)
            for piece in generator.generate(request):
                # Only the model's own notes count: a primer's notes are someone else's music.
                seq = piece.notes
                if piece.primer_length:
                    own = slice(piece.primer_length, None)
                    seq = NoteSequence(pitch=seq.pitch[own], step=seq.step[own], duration=seq.duration[own],
                                       velocity=seq.velocity[own], **seq.meta())  # type: ignore[arg-type]
                pieces.append(seq)
        return pieces

    return sample


RUN_LENGTHS = (4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128)


def _top_line_tokens(seq: NoteSequence) -> list[tuple[int, int]]:
    """The top line as (interval, length in 1/12 beats) pairs: a melody, whatever its key."""
    from ml.evaluation.form_metrics import _top_line

    top, lengths = _top_line(seq)
    quantised = np.round(lengths * 12).astype(int)
    return list(zip(np.diff(top).tolist(), quantised[1:].tolist()))


def longest_shared_runs(sets: Mapping[str, Sequence[NoteSequence]], training: Sequence[NoteSequence]
                        ) -> dict[str, list[int]]:
    """For each piece of each set, the longest run of top-line notes (from RUN_LENGTHS) found in
    some training piece. The training runs of each length are hashed once for all the sets."""
    lines = {name: [_top_line_tokens(p) for p in pieces] for name, pieces in sets.items()}
    train_lines = [_top_line_tokens(p) for p in training]
    best = {name: [0] * len(found) for name, found in lines.items()}
    for k, length in enumerate(RUN_LENGTHS):
        # Only pieces that shared a run of the previous length can share a longer one.
        candidates = [(name, i) for name, found in lines.items() for i in range(len(found))
                      if k == 0 or best[name][i] == RUN_LENGTHS[k - 1]]
        if not candidates:
            break
        seen = {hash(tuple(line[i:i + length])) for line in train_lines for i in range(len(line) - length + 1)}
        for name, i in candidates:
            line = lines[name][i]
            if any(hash(tuple(line[j:j + length])) in seen for j in range(len(line) - length + 1)):
                best[name][i] = length
    return best


def mgeval_report(dataset: NoteDataset, styles: Sequence[str], samplers: dict[str, PieceSampler],
                  pieces_per_style: int, seconds: float, seed: int, log: Log | None = None) -> dict[str, Any]:
    """Compare each sampler's pieces with the held-out test pieces of every style."""
    per_style: dict[str, Any] = {}
    for s, style in enumerate(styles):
        held_idx = dataset.indices("test", style)
        if len(held_idx) < MIN_SET_SIZE:
            held_idx = np.concatenate([held_idx, dataset.indices("validation", style)])
        if len(held_idx) < MIN_SET_SIZE:
            per_style[style] = {"skipped": "fewer than two held-out pieces"}
            continue
        # Features depend on length (pitch count, range): compare equally long stretches of music.
        whole = [dataset.piece(int(i)) for i in held_idx]
        held = [crop(piece, seconds) for piece in whole]
        sets: dict[str, list[NoteSequence]] = {"held_out": held}
        for name, sampler in samplers.items():
            started = time.time()
            sets[name] = [p for p in sampler(style, pieces_per_style, seed * 7919 + s * 1000) if len(p)]
            if log:
                log(f"{style}: {len(sets[name])} {name} pieces in {time.time() - started:.0f} s")
        features = {name: [piece_features(p) for p in pieces] for name, pieces in sets.items()}
        entry: dict[str, Any] = {"sets": {name: asdict(summarize(features[name], [len(p) for p in sets[name]]))
                                          for name in sets}}
        # What a listener hears of form, for the same pieces and the same cropped real ones; but a real
        # piece's ending is its own last bars, not where the crop fell.
        scores = {name: [_whole_ending(form_scores(c), w) for c, w in zip(held, whole)]
                  if name == "held_out" else [form_scores(p) for p in pieces] for name, pieces in sets.items()}
        entry["form"] = {name: summarise_form(values) for name, values in scores.items()}
        # Each set against the real pieces, both ways: as tonal and as repetitive, neither less nor more.
        entry["form_against_real"] = {name: against_real(scores[name], scores["held_out"]) for name in samplers}
        # Memorisation: how long a stretch of melody each set shares with some training piece.
        training = [dataset.piece(int(i)) for i in dataset.indices("train", style)]
        entry["shared_with_training"] = {}
        for name, runs in longest_shared_runs(sets, training).items():
            entry["shared_with_training"][name] = {
                "median": float(np.median(runs)), "p90": float(np.percentile(runs, 90)), "max": int(max(runs))}
        # Can a classifier tell each set from the real pieces? Every held-out piece training did not
        # see (the validation pieces too where the test split is small), whole: the discriminator crops
        # them to the generated pieces' length itself. Variations of one request share a fold.
        real_whole = [dataset.piece(int(i)) for i in unseen(dataset, style)]
        entry["discriminator"] = {}
        for name in samplers:
            try:
                entry["discriminator"][name] = discriminator_report(
                    real_whole, sets[name], [i // 4 for i in range(len(sets[name]))], style, seed=seed)
            except ValueError as exc:  # too few pieces for the folds
                entry["discriminator"][name] = {"skipped": str(exc)}
        # What a model would score that wrote exactly its training pieces: as many of them as the
        # model wrote, cut to its length (where the test pieces differ from the training ones, the
        # real-against-real floor is out of any model's reach).
        if sets.get("model"):
            try:
                entry["discriminator_training_floor"] = training_floor(
                    dataset, real_whole, style, len(sets["model"]), generated_beats(sets["model"]), seed=seed)
            except ValueError as exc:
                entry["discriminator_training_floor"] = {"skipped": str(exc)}
        for name in samplers:
            if len(features[name]) < MIN_SET_SIZE:
                entry[name] = {"skipped": "fewer than two generated pieces"}
                continue
            entry[name] = {f: asdict(c) for f, c in compare_sets(features[name], features["held_out"]).items()}
        per_style[style] = entry

    mean: dict[str, dict[str, dict[str, float]]] = {}
    for name in samplers:
        mean[name] = {}
        for feature in FEATURES:
            values = [e[name][feature] for e in per_style.values() if feature in e.get(name, {})]
            if values:
                mean[name][feature] = {"overlap": float(np.mean([v["overlap"] for v in values])),
                                       "kl": float(np.mean([v["kl"] for v in values]))}
    report: dict[str, Any] = {"seconds": seconds, "pieces_per_style": pieces_per_style, "features": list(FEATURES),
                              "per_style": per_style, "mean": mean}
    if {"model", "markov"} <= set(mean):
        shared = [f for f in FEATURES if f in mean["model"] and f in mean["markov"]]
        report["model_overlap_at_least_markov"] = sum(
            mean["model"][f]["overlap"] >= mean["markov"][f]["overlap"] for f in shared)
        report["features_compared"] = len(shared)
    return report


def _whole_ending(scores: Any, whole: NoteSequence) -> Any:
    """A cropped real piece's measures, with its tonic ending and cadence read from the whole piece."""
    from ml.data.notes import estimate_key

    tonic_ending, cadence = ending(whole, estimate_key(whole))
    return replace(scores, tonic_ending=tonic_ending, cadence=cadence)


# The metres a request may ask for, with the length of their bar in quarter-note beats; each is checked
# against bars of the other length (3-beat bars for 4/4, 4-beat bars for the others).
REQUESTED_METRES = (("4/4", 4.0), ("3/4", 3.0), ("6/8", 3.0))


def _other_bar(bar: float) -> float:
    return 3.0 if bar == 4.0 else 4.0


def real_metres(dataset: NoteDataset, styles: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The metre measure of the requests on real music: per style and requested metre, the held-out
    (test) pieces notated in it, whole, with their downbeat accent in bars of their own length and of
    the other length. In even motion (a chorale's quarter-note chords, a reel's eighths) every onset of
    a bar weighs alike and the measure gives the first, so real 4/4 music need not stand apart from
    3-beat bars: this says what a generated piece in that metre is to be compared with."""
    report: dict[str, dict[str, Any]] = {}
    for style in styles:
        pieces = [dataset.piece(int(i)) for i in dataset.indices("test", style)]
        by_metre: dict[str, Any] = {}
        for signature, bar in REQUESTED_METRES:
            notated = tuple(int(x) for x in signature.split("/"))
            own, other = [], []
            for seq in pieces:
                if tuple(seq.time_signature) != notated:
                    continue
                here, there = downbeat_accent(seq, bar), downbeat_accent(seq, _other_bar(bar))
                if here is not None and there is not None:
                    own.append(here)
                    other.append(there)
            by_metre[signature] = {"pieces": len(own)} if not own else {
                "pieces": len(own), "downbeat_accent": float(np.mean(own)), "in_the_other_metre": float(np.mean(other)),
                "follows": float(np.mean(own)) > float(np.mean(other))}
        report[style] = by_metre
    return report


def requests_report(model_path: Path, styles: Sequence[str], pieces_per_style: int, seconds: float,
                    seed: int, log: Log | None = None, dataset: NoteDataset | None = None) -> dict[str, Any]:
    """Whether the model does what a request asks: the key it was given, and 3/4 or 6/8 over 4/4;
    with the product's constraints and with every one of them off (the network alone).

    Every style gets `pieces_per_style` pieces in keys drawn at random (tonic and mode), and the
    same seeds in 4/4, 3/4 and 6/8; a metre is followed when the bars of its own length carry
    their accent on the first beat more often than bars of the other length do. With `dataset`, each
    style also gets the same measure on its held-out pieces notated in each metre (`real_metres`).
    """
    from ml.generation.generator import Generator

    generators = {"defaults": Generator(model_path), "unconstrained": Generator(model_path, off=every_constraint())}
    per_style: dict[str, Any] = {}
    for s, style in enumerate(styles):
        found = {name: _requests_of_style(generator, style, s, pieces_per_style, seconds, seed)
                 for name, generator in generators.items()}
        per_style[style] = {**found["defaults"], "unconstrained": found["unconstrained"]}
        if dataset is not None:
            per_style[style]["real_metre"] = real_metres(dataset, [style])[style]
        if log:
            log(f"{style}: requested key honoured in {found['defaults']['requested_key']:.0%} "
                f"({found['unconstrained']['requested_key']:.0%} with every constraint off)")
    return {"pieces_per_style": pieces_per_style, "seconds": seconds, "per_style": per_style}


def _requests_of_style(generator: Any, style: str, s: int, pieces_per_style: int, seconds: float,
                       seed: int) -> dict[str, Any]:
    from ml.generation.request import GenerationRequest

    names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    rng = np.random.default_rng(seed * 104729 + s)
    hits = 0
    for k in range(pieces_per_style):
        tonic, mode = int(rng.integers(12)), ("major", "minor")[int(rng.integers(2))]
        request = GenerationRequest(style=style, seconds=seconds, key=names[tonic], mode=mode,
                                    seed=(seed + k) % 2**32)
        piece = generator.generate(request)[0]
        own = piece.notes.slice(piece.primer_length, len(piece.notes)) if piece.primer_length else piece.notes
        hits += form_scores(own).key == (tonic, mode)
    metre: dict[str, Any] = {}
    notes_by_metre: dict[str, list[tuple[int, ...]]] = {}
    for signature, bar in REQUESTED_METRES:
        numerator, denominator = (int(x) for x in signature.split("/"))
        own_bar, other_bar, aligned = [], [], []
        notes_by_metre[signature] = []
        for k in range(pieces_per_style):
            request = GenerationRequest(style=style, seconds=seconds, time_signature=(numerator, denominator),
                                        seed=(seed + k) % 2**32)
            notes = generator.generate(request)[0].notes
            notes_by_metre[signature].append(tuple(int(p) for p in notes.pitch))
            aligned.append(downbeat_alignment(notes, bar))
            own_bar.append(downbeat_accent(notes, bar))
            other_bar.append(downbeat_accent(notes, _other_bar(bar)))
        mean_own = float(np.mean([v for v in own_bar if v is not None] or [0.0]))
        mean_other = float(np.mean([v for v in other_bar if v is not None] or [0.0]))
        # A metre is followed when its bars carry their accent on beat 1 more often than bars of
        # the other length would.
        metre[signature] = {"downbeat_alignment": float(np.mean([v for v in aligned if v is not None] or [0.0])),
                            "downbeat_accent": mean_own, "in_the_other_metre": mean_other,
                            "follows": mean_own > mean_other}
    metre["same_notes_as_4/4"] = {
        signature: float(np.mean([a == b for a, b in zip(notes_by_metre[signature], notes_by_metre["4/4"])]))
        for signature in ("3/4", "6/8")
    }
    # Everything at once, as `compose --form AABB --key D --mode minor --time-signature 6/8` asks.
    combined: dict[str, Any] = {"key": 0, "tonic_ending": 0, "whole_bars": 0, "downbeat": []}
    for k in range(pieces_per_style):
        request = GenerationRequest(style=style, seconds=seconds, form="AABB", key="D", mode="minor",
                                    time_signature=(6, 8), seed=(seed + k) % 2**32)
        notes = generator.generate(request)[0].notes
        scores_ = form_scores(notes)
        combined["key"] += scores_.key == (2, "minor")
        combined["tonic_ending"] += ending(notes, (2, "minor"))[0]
        bars = float(notes.seconds_to_beats(np.array([notes.end_time]))[0]) / 3.0
        combined["whole_bars"] += abs(bars - round(bars)) < 1e-3
        combined["downbeat"].append(downbeat_alignment(notes, 3.0))
    return {"requested_key": hits / pieces_per_style, "metre": metre, "aabb_d_minor_6_8": {
        "key": combined["key"] / pieces_per_style, "tonic_ending": combined["tonic_ending"] / pieces_per_style,
        "whole_bars": combined["whole_bars"] / pieces_per_style,
        "downbeat_alignment": float(np.mean([v for v in combined["downbeat"] if v is not None] or [0.0]))}}


SWEEP = ((1.0, 1.0), (0.9, 1.0), (0.85, 0.95), (0.9, 0.95), (1.0, 0.95), (0.8, 0.9))
SWEEP_MEASURES = ("key_stability", "tonic_ending", "downbeat_alignment", "off_grid_onsets", "motif_recurrence")


def sampling_sweep(model_path: Path, dataset: NoteDataset, pieces_per_style: int, seconds: float, seed: int,
                   settings: Sequence[tuple[float, float]] = SWEEP, log: Log | None = None) -> dict[str, Any]:
    """Which (pitch temperature, top-p) writes music closest to the held-out pieces of each style,
    with the product's constraints and with every one of them off.

    For every setting, the same seeds in every style. Two distances: the discriminator's accuracy at
    telling the pieces from the real ones (`ml.evaluation.discriminator`, 0.5 is chance), which
    chooses the best setting, and the mean absolute difference between the setting's form measures
    and the held-out pieces' (cropped to the same length), with the parallel fifths and octaves per
    100 chord changes over 10 where a style has chords.
    """
    from ml.generation.generator import Generator
    from ml.generation.request import GenerationRequest

    generators = {"defaults": Generator(model_path), "unconstrained": Generator(model_path, off=every_constraint())}
    styles = [s for s in dataset.styles if s in generators["defaults"].styles]
    real: dict[str, list[NoteSequence]] = {}
    for style in styles:
        real[style] = [dataset.piece(int(i)) for i in unseen(dataset, style)]
    held = {style: summarise_form([form_scores(crop(piece, seconds)) for piece in real[style]]) for style in styles}
    results: list[dict[str, Any]] = []
    for temperature, top_p in settings:
        row: dict[str, Any] = {"temperature": temperature, "top_p": top_p}
        for name, generator in generators.items():
            per_style: dict[str, Any] = {}
            for style in styles:
                pieces, groups = [], []
                for k in range(0, pieces_per_style, 4):
                    request = GenerationRequest(style=style, seconds=seconds, temperature=temperature, top_p=top_p,
                                                seed=(seed + k) % 2**32, variations=min(4, pieces_per_style - k))
                    made = [piece.notes for piece in generator.generate(request)]
                    pieces += made
                    groups += [k] * len(made)
                summary = summarise_form([form_scores(p) for p in pieces])
                gaps = [abs(summary[m] - held[style][m]) for m in SWEEP_MEASURES  # type: ignore[operator]
                        if summary.get(m) is not None and held[style].get(m) is not None]
                if summary.get("parallels_per_100") is not None and held[style].get("parallels_per_100") is not None:
                    gaps.append(abs(summary["parallels_per_100"] - held[style]["parallels_per_100"]) / 10)  # type: ignore[operator]
                try:
                    accuracy = discriminator_report(real[style], pieces, groups, style, seed=seed)[
                        "generated_vs_real"]["accuracy"]
                except ValueError:  # too few pieces for the folds
                    accuracy = None
                per_style[style] = {"summary": summary, "distance": float(np.mean(gaps)) if gaps else None,
                                    "discriminator": accuracy}
            accuracies = [v["discriminator"] for v in per_style.values() if v["discriminator"] is not None]
            row[name] = {"per_style": per_style,
                         "distance": float(np.mean([v["distance"] for v in per_style.values()
                                                    if v["distance"] is not None])),
                         "discriminator": float(np.mean(accuracies)) if accuracies else None}
        # The defaults' figures stay at the top level, as before.
        row.update(distance=row["defaults"]["distance"], discriminator=row["defaults"]["discriminator"],
                   per_style=row["defaults"]["per_style"])
        results.append(row)
        if log:
            log(f"temperature {temperature}, top-p {top_p}: discriminator {row['discriminator']}, "
                f"{row['unconstrained']['discriminator']} with every constraint off; distance {row['distance']:.3f}")
    judged = [r for r in results if r["discriminator"] is not None]
    best = min(judged, key=lambda r: r["discriminator"]) if judged else min(results, key=lambda r: r["distance"])
    return {"pieces_per_style": pieces_per_style, "seconds": seconds, "held_out": held, "settings": results,
            "chosen_by": "discriminator" if judged else "distance",
            "best": {"temperature": best["temperature"], "top_p": best["top_p"]}}


# -- the whole evaluation ----------------------------------------------------------------------

def evaluate(model_path: Path, dataset: NoteDataset | Path, out_dir: Path, pieces_per_style: int = 100,
             seconds: float = 30.0, seed: int = 0, *, sampler: PieceSampler | None = None,
             log: Log | None = None) -> dict[str, Any]:
    """Score a model and its baselines on the test split, compare generated pieces, write a report.

    Args:
        model_path: A `.keras` note model.
        dataset: The dataset (or its `.npz`) the model was trained on; its test split is scored.
        out_dir: Receives evaluation.json, evaluation.md and PNG plots.
        pieces_per_style: Pieces generated per style by the model and by the Markov baseline.
        seconds: Length of every generated piece; held-out pieces are cropped to it.
        seed: Seed of every random choice, so that a report can be reproduced.
        sampler: Where the model's pieces come from; default `ml.generation.generator.Generator`.
        log: Receives progress lines.

    Returns:
        The report, as written to evaluation.json.
    """
    from ml.model.network import load_model

    started = time.time()
    say = log or (lambda message: None)
    if not isinstance(dataset, NoteDataset):
        dataset = NoteDataset.load(Path(dataset))
    if pieces_per_style < MIN_SET_SIZE:
        raise ValueError(f"pieces_per_style must be at least {MIN_SET_SIZE}.")
    model = load_model(Path(model_path))
    config = model.config
    styles = [s for s in dataset.styles if s in config.styles]
    if not styles:
        raise ValueError("The model knows none of the dataset's styles.")

    say("scoring the model on the test split")
    notes, model_preds = model_predictions(model, dataset, "test", say)
    if not len(notes.index):
        raise ValueError("The dataset has no test pieces in the model's styles.")
    say("fitting baselines")
    baselines = {style: fit_baselines(dataset, style, config.quantize_beats, config.time_classes) for style in styles}
    say("fitting the joint-token Markov chains and scoring them")
    chains = fit_chains(dataset, config, styles)
    predictors = {"model": model_preds, "joint-markov": chain_predictions(dataset, config, chains, notes),
                  **baseline_predictions(dataset, notes, baselines)}
    next_note = next_note_report(dataset, notes, predictors)
    markov_names = [n for n in PITCH_BASELINES if n.startswith("markov-")]
    best_markov = min(markov_names, key=lambda n: next_note["overall"][n]["pitch_ce"])

    say(f"generating {pieces_per_style} pieces per style with the model and with the joint-token chain")
    samplers = {
        "model": sampler or generator_sampler(Path(model_path), seconds),
        # The fair baseline: the same plan, masks, guards and lengths, with the chain choosing the notes.
        "markov": generator_sampler(Path(model_path), seconds, chains=chains),
    }
    if sampler is None:
        # The constraints make some measures true by construction: the network alone, every one off.
        samplers["model_unconstrained"] = generator_sampler(Path(model_path), seconds, constrained=False)
    mgeval = mgeval_report(dataset, styles, samplers, pieces_per_style, seconds, seed, say)
    say("checking that requests for a key or a metre are honoured")
    requests = requests_report(Path(model_path), styles, max(MIN_SET_SIZE, pieces_per_style // 4), seconds, seed, say,
                               dataset=dataset) \
        if sampler is None else {"skipped": "a custom sampler takes no requests"}

    report: dict[str, Any] = {
        "model": {"path": str(model_path), "styles": list(config.styles), "window": config.window,
                  "training": model.extra.get("training", {})},
        "dataset": {"test_pieces": int(len(np.unique(notes.piece))), "test_notes": int(len(notes.index)),
                    "styles": styles},
        "next_note": next_note,
        "baselines": {
            "best_markov": best_markov,
            "alphas": {style: {name: getattr(b.pitch[name], "alpha", None) for name in PITCH_BASELINES}
                       for style, b in baselines.items()},
            "fitting": "per style, on its training pieces; alphas tuned on its validation pieces",
        },
        "mgeval": mgeval,
        "requests": requests,
        "form_definitions": FORM_DEFINITIONS,
        "seed": seed,
        "seconds_taken": round(time.time() - started, 1),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report["plots"] = write_plots(report, out_dir)
    (out_dir / "evaluation.json").write_text(json.dumps(_jsonable(report), indent=1))
    (out_dir / "evaluation.md").write_text(markdown(report))
    say(f"wrote {out_dir / 'evaluation.md'} in {time.time() - started:.0f} s")
    return report


def _jsonable(value: Any) -> Any:
    """NaN and infinity become null: JSON has no such numbers."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# -- report writing ----------------------------------------------------------------------------

_NEXT_NOTE_COLUMNS = (("notes", "notes", "{:d}"), ("pitch_ce", "pitch CE", "{:.3f}"),
                      ("pitch_top1", "pitch top-1", "{:.1%}"), ("step_ce", "step CE", "{:.3f}"),
                      ("joint_ce", "step+pitch CE", "{:.3f}"), ("step_mae_s", "step MAE (s)", "{:.3f}"),
                      ("duration_mae_s", "duration MAE (s)", "{:.3f}"), ("velocity_mae", "velocity MAE", "{:.1f}"))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(scores_: dict[str, Any], key: str, fmt: str) -> str:
    value = scores_.get(key)
    return "—" if value is None else fmt.format(value)


def _overlap_rows(model: dict[str, Any], markov: dict[str, Any], features: Sequence[str]) -> list[list[str]]:
    """Feature | model OA | Markov OA | model KL | Markov KL."""
    return [[f] + [_cell(side.get(f, {}), key, "{:.3f}") for key in ("overlap", "kl") for side in (model, markov)]
            for f in features]


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables."""
    nn = report["next_note"]
    ds = report["dataset"]
    parts = [
        "# Model evaluation",
        "",
        f"Model `{report['model']['path']}`; {ds['test_notes']} notes of {ds['test_pieces']} held-out test "
        f"pieces ({', '.join(ds['styles'])}). Cross-entropies in nats per note; lower is better.",
        "",
        "The model's pitch CE is conditioned on the true step (its factorisation p(step) p(pitch | step), "
        "teacher-forced as in training); the pitch baselines ignore timing. Compare *step+pitch CE*: "
        "for baselines it adds the CE of the style's training step-class frequencies (uniform: of uniform "
        "step classes). Baselines are "
        "fitted per style; Markov chains use interpolated Witten-Bell smoothing. Timing MAEs of the "
        "*mean*/*median* rows predict the style's training mean/median in beats, at the piece's tempo.",
        "",
        "## Next-note scores, all test notes",
        "",
    ]
    header = ["predictor"] + [title for _, title, _ in _NEXT_NOTE_COLUMNS]

    def rows_of(group: dict[str, Any]) -> list[list[str]]:
        return [[name] + [_cell(s, key, fmt) for key, _, fmt in _NEXT_NOTE_COLUMNS] for name, s in group.items()]

    parts += [_table(header, rows_of(nn["overall"])), ""]
    for style, group in nn.items():
        if style != "overall":
            parts += [f"### {style}", "", _table(header, rows_of(group)), ""]

    mg = report["mgeval"]
    best = "joint-markov"
    parts += [
        "## MGEval comparison with held-out pieces",
        "",
        f"{mg['pieces_per_style']} pieces of {mg['seconds']:.0f} s per style from the model and from "
        "the joint-token Markov chain (the baseline: whole notes as tokens, key-relative, with the bar "
        "position and the two tokens before; it writes through the generator's own sampler, so it gets the same "
        "form plan and repeats, key, range, cadence, voice and loop constraints and lengths, but unlike the network "
        "it does not read the metre, the mode, the beats to the next cadence or more than two notes back), each "
        "against the style's held-out test pieces cropped to the same length (Yang & Lerch 2018). "
        "OA: overlap of the held-out intra-set and the inter-set distance densities (higher is better); "
        "KL: KL(intra held-out || inter) in nats (lower is better). Averaged over styles.",
        "",
    ]
    mean = mg["mean"]
    if {"model", "markov"} <= set(mean):
        rows = _overlap_rows(mean["model"], mean["markov"], mg["features"])
        parts += [_table(["feature", "model OA", f"{best} OA", "model KL", f"{best} KL"], rows), "",
                  f"Model OA ≥ {best} OA on **{mg.get('model_overlap_at_least_markov', 0)} of "
                  f"{mg.get('features_compared', 0)}** features.", ""]
    parts += ["## Per-piece measures", "",
              "Loop rate: share of pieces `ml.evaluation.mgeval.find_degenerate_loop` flags (a pitch 6 times in a row, "
              "a figure "
              "of 2 pitches 4 times or of 3-4 pitches 3 times, 12 notes on one onset, or a step over 8 beats). "
              "Scale consistency: largest share of notes in one major or harmonic-minor scale. Entropy: of the "
              "pitch-class histogram, in bits. Common chords: of the onsets where three or more pitch classes "
              "sound, the share that music21 names a triad or a seventh chord (the harmony measure).", ""]
    rows = []
    for style, entry in mg["per_style"].items():
        for name, summary in entry.get("sets", {}).items():
            rows.append([style, name.replace("_", "-"), str(summary["pieces"]), f"{summary['notes_mean']:.0f}",
                         f"{summary['loop_rate']:.1%}", f"{summary['scale_consistency']:.3f}",
                         f"{summary['pitch_class_entropy']:.2f}", f"{summary.get('common_chord_share', 0):.1%}"])
    header = ["style", "set", "pieces", "notes/piece", "loop rate", "scale consistency", "PC entropy",
              "common chords"]
    parts += [_table(header, rows), ""]
    for style, entry in mg["per_style"].items():
        if "model" in entry and "markov" in entry and "skipped" not in entry["model"]:
            rows = _overlap_rows(entry["model"], entry["markov"], mg["features"])
            parts += [f"### {style}", "", _table(["feature", "model OA", f"{best} OA", "model KL", f"{best} KL"], rows),
                      ""]
    parts += _discriminator_section(report)
    parts += _form_section(report)
    if report.get("plots"):
        parts += ["## Plots", ""] + [f"![{name}]({name})" for name in report["plots"]] + [""]
    return "\n".join(parts)


def _discriminator_section(report: dict[str, Any]) -> list[str]:
    """Accuracy of telling each set from the real pieces, per style, with the real-against-real floor."""
    rows, words = [], []
    for style, entry in report["mgeval"]["per_style"].items():
        found = entry.get("discriminator") or {}
        learnt = (entry.get("discriminator_training_floor") or {}).get("accuracy")
        for name, row in found.items():
            test = row.get("generated_vs_real")
            if not test:
                rows.append([style, name.replace("_", "-"), "n/a", "", "", "", row.get("skipped", "")])
                continue
            floor = row.get("real_vs_real", {}).get("accuracy")
            rows.append([style, name.replace("_", "-"), f"{test['accuracy']:.2f}",
                         f"{test['ci95'][0]:.2f}-{test['ci95'][1]:.2f}", "n/a" if floor is None else f"{floor:.2f}",
                         "n/a" if learnt is None else f"{learnt:.2f}",
                         f"{row['generated_pieces']} vs {row['real_pieces']}"])
            if name == "model":
                words += [f"- {style}: " + "; ".join(s["words"] for s in row.get("separating", [])[:3])]
    if not rows:
        return []
    return ["## Can a classifier tell them from real music?", "",
            "Per style, a logistic regression and a random forest (`ml.evaluation.discriminator`, the better of the "
            "two) on tempo-free features of the notes (scale degrees, top-line intervals, inter-onset times and "
            "durations, positions in the bar, texture), cross-validated with the variations of one request in one "
            "fold; accuracy 0.5 is chance. The floor tells two random halves of the real pieces apart. Real pieces "
            "are cropped to the generated pieces' median length. \"Training vs real\" sets as many of the style's "
            "training pieces, cut to the model's length, against the same real pieces (the mean of 5 draws): "
            "what a model would score that wrote exactly the music it learnt from.", "",
            _table(["style", "set", "accuracy", "95% CI", "real vs real", "training vs real",
                    "pieces (generated vs real)"], rows), "",
            "What separates the model's pieces (defaults) most:", "", *words, ""]


def _percent(value: Any) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _form_section(report: dict[str, Any]) -> list[str]:
    """Form as a listener hears it: each set beside the held-out pieces cropped to the same length."""
    parts = ["## Form: key, metre, repetition, endings, voices", "",
             "Every measure beside real held-out pieces of the style, cropped to the same length, except the tonic "
             "ending and the cadence, which are read on the real pieces' own last bars (whole pieces). What the "
             "constraints make true by construction (with them on): the cadence and the tonic ending (the "
             "`cadence` constraint writes V-I on the tonic), downbeat alignment (`metre` puts a note on every "
             "downbeat), loops (`loop`), parallels in chorales (`voice`), and much of motif recurrence (`repeats` "
             "copies the plan's repeated phrases). The *model-unconstrained* rows are the network alone.", ""]
    parts += [f"- **{name.replace('_', ' ')}**: {text}" for name, text in report.get("form_definitions", {}).items()]
    parts += [""]
    header = ["style", "set", "key stability", "tonic ending", "cadence", "downbeat", "accent", "off grid",
              "motifs recur", "parallels /100"]
    rows = []
    for style, entry in report["mgeval"]["per_style"].items():
        for name, form in entry.get("form", {}).items():
            parallels = form.get("parallels_per_100")
            rows.append([style, name.replace("_", "-"), _percent(form.get("key_stability")),
                         _percent(form.get("tonic_ending")), _percent(form.get("cadence")),
                         _percent(form.get("downbeat_alignment")), _percent(form.get("downbeat_accent")),
                         _percent(form.get("off_grid_onsets")),
                         _percent(form.get("motif_recurrence")), "n/a" if parallels is None else f"{parallels:.1f}"])
    parts += [_table(header, rows), ""]
    parts += ["### Like the real pieces, both ways", "",
              "A measure is like the real pieces' when the set's mean is within 0.10 of theirs or, for the "
              "measures that spread per piece (key stability, downbeat alignment and accent, motif recurrence), "
              "inside their interquartile range; otherwise it is *more* or *less* than real.", ""]
    rows = []
    for style, entry in report["mgeval"]["per_style"].items():
        for name, verdicts in entry.get("form_against_real", {}).items():
            rows.append([style, name.replace("_", "-")] + [
                f"{v['direction']} ({v['generated']:.0%} / {v['real']:.0%})" if v else "n/a"
                for v in (verdicts.get(m) for m in ("key_stability", "tonic_ending", "cadence", "downbeat_alignment",
                                                    "downbeat_accent", "motif_recurrence"))])
    parts += [_table(["style", "set", "key stability", "tonic ending", "cadence", "downbeat", "accent",
                      "motifs recur"], rows), ""]
    parts += ["### Memorisation", "",
              "The longest run of top-line notes (intervals and lengths, so in any key) that a piece shares with "
              "some training piece of its style, in notes (runs tried: " + ", ".join(map(str, RUN_LENGTHS)) + "). "
              "Held-out pieces share this much with the training pieces by chance (stock figures, scales).", ""]
    rows = []
    for style, entry in report["mgeval"]["per_style"].items():
        for name, shared in entry.get("shared_with_training", {}).items():
            rows.append([style, name.replace("_", "-"), f"{shared['median']:.0f}", f"{shared['p90']:.0f}",
                         str(shared["max"])])
    parts += [_table(["style", "set", "median", "90th percentile", "longest"], rows), ""]
    nn = report["next_note"]
    parts += ["### Next-note cross-entropy against the fair chain", "",
              "Step+pitch CE in nats per note (the model's p(step) p(pitch | step) against the chain's joint "
              "p(step, pitch)), and pitch CE with both given the true step.", ""]
    rows = []
    for group, by_name in nn.items():
        model, chain = by_name.get("model", {}), by_name.get("joint-markov", {})
        if "joint_ce" in model and "joint_ce" in chain:
            rows.append([group, f"{model['joint_ce']:.3f}", f"{chain['joint_ce']:.3f}",
                         f"{1 - model['joint_ce'] / chain['joint_ce']:.0%}", f"{model['pitch_ce']:.3f}",
                         f"{chain['pitch_ce']:.3f}", f"{1 - model['pitch_ce'] / chain['pitch_ce']:.0%}"])
    parts += [_table(["notes", "model step+pitch", "chain step+pitch", "model lower by", "model pitch | step",
                      "chain pitch | step", "model lower by"], rows), ""]
    requests = report.get("requests", {})
    if "per_style" in requests:
        parts += ["### Requests", "",
                  f"{requests['pieces_per_style']} pieces per style and request. *Requested key*: share whose "
                  "key estimate is the key and mode asked for. *4/4, 3/4, 6/8*: downbeat alignment in bars of "
                  "the metre's own length; then the downbeat accent in them, and in brackets in bars of the "
                  "other length (4 beats for 3/4 and 6/8, 3 for 4/4): a metre is followed when the first is "
                  "higher. *Same notes*: share of pieces whose pitches equal the 4/4 piece of the same seed. "
                  "*Real*: the held-out pieces notated in each metre, whole (how many in brackets after the "
                  "accents): in even motion a bar's onsets weigh alike and the first wins, so real 4/4 music "
                  "need not stand apart from 3-beat bars by this measure.", ""]
        rows = []
        for style, by_style in requests["per_style"].items():
            for name, entry in (("defaults", by_style), ("every constraint off", by_style.get("unconstrained"))):
                if not entry:
                    continue
                metre = entry["metre"]

                def both(signature: str, metre: dict[str, Any] = metre) -> str:
                    result = metre[signature]
                    return (f"{_percent(result['downbeat_alignment'])}; {_percent(result['downbeat_accent'])} "
                            f"({_percent(result['in_the_other_metre'])})")

                combined = entry.get("aabb_d_minor_6_8", {})
                rows.append([style, name, _percent(entry["requested_key"]), both("4/4"), both("3/4"), both("6/8"),
                             _percent(metre["same_notes_as_4/4"]["3/4"]),
                             " / ".join(_percent(combined.get(k)) for k in
                                        ("key", "tonic_ending", "whole_bars", "downbeat_alignment"))])
            real = by_style.get("real_metre")
            if real:
                def accents(signature: str, real: dict[str, Any] = real) -> str:
                    result = real[signature]
                    if not result["pieces"]:
                        return "no pieces"
                    return (f"{_percent(result['downbeat_accent'])} ({_percent(result['in_the_other_metre'])}); "
                            f"{result['pieces']} pieces")

                rows.append([style, "real", "", accents("4/4"), accents("3/4"), accents("6/8"), "", ""])
        parts += [_table(["style", "constraints", "requested key", "4/4: aligned; accent (in 3)", "3/4 (in 4)",
                          "6/8 (in 4)", "3/4 same notes as 4/4",
                          "AABB in D minor, 6/8: key / tonic end / whole bars / downbeat"], rows), ""]
    return parts


def write_plots(report: dict[str, Any], out_dir: Path) -> list[str]:
    """Pitch-class histograms per style and OA per feature; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    mg = report["mgeval"]
    styles = [s for s, e in mg["per_style"].items() if "sets" in e]
    if styles:
        fig, axes = plt.subplots(1, len(styles), figsize=(4 * len(styles), 3.2), squeeze=False)
        for ax, style in zip(axes[0], styles):
            sets = mg["per_style"][style]["sets"]
            width = 0.8 / len(sets)
            for k, (name, summary) in enumerate(sets.items()):
                ax.bar(np.arange(12) + (k - (len(sets) - 1) / 2) * width, summary["pitch_class_histogram"],
                       width=width, label=name.replace("_", "-"))
            ax.set_xticks(range(12), PITCH_CLASS_NAMES, fontsize=7)
            ax.set_title(style)
        axes[0][0].set_ylabel("share of notes")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "pitch_class_histograms.png", dpi=90)
        plt.close(fig)
        written.append("pitch_class_histograms.png")
    mean = mg["mean"]
    if mean:
        fig, ax = plt.subplots(figsize=(8, 3.4))
        width = 0.8 / len(mean)
        for k, (name, by_feature) in enumerate(mean.items()):
            ax.bar(np.arange(len(mg["features"])) + (k - (len(mean) - 1) / 2) * width,
                   [by_feature.get(f, {}).get("overlap", 0.0) for f in mg["features"]], width=width, label=name)
        ax.set_xticks(range(len(mg["features"])), [f.replace("_", " ") for f in mg["features"]],
                      rotation=25, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("overlap area (higher: closer to held-out)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "overlap_by_feature.png", dpi=90)
        plt.close(fig)
        written.append("overlap_by_feature.png")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a note model against baselines.")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"a .keras note model ({DEFAULT_MODEL})")
    parser.add_argument("--dataset", type=Path, help="the dataset .npz the model was trained on "
                        "(default: the newest data/cache/corpus-*.npz)")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--pieces-per-style", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", action="store_true",
                        help="only compare sampling settings (temperature, top-p) against the held-out pieces")
    args = parser.parse_args(argv)
    started = time.time()
    if args.dataset is None:
        found = sorted(Path("data/cache").glob("corpus-*.npz"), key=lambda p: p.stat().st_mtime)
        if not found:
            print("No --dataset given and no data/cache/corpus-*.npz to default to.", file=sys.stderr)
            return 2
        args.dataset = found[-1]

    def log(message: str) -> None:
        print(f"[{time.time() - started:6.0f} s] {message}", flush=True)

    if args.sweep:
        sweep = sampling_sweep(args.model, NoteDataset.load(args.dataset), args.pieces_per_style, args.seconds,
                               args.seed, log=log)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sweep.json").write_text(json.dumps(_jsonable(sweep), indent=1))
        print(f"closest to the held-out pieces: temperature {sweep['best']['temperature']}, "
              f"top-p {sweep['best']['top_p']}")
        return 0
    try:
        report = evaluate(args.model, args.dataset, args.out, args.pieces_per_style, args.seconds, args.seed, log=log)
    except (ValueError, OSError) as exc:
        print(f"Evaluation failed: {exc}", file=sys.stderr)
        return 2
    overall = report["next_note"]["overall"]
    for name in ("model", "joint-markov"):
        s = overall[name]
        print(f"{name}: pitch CE {s.get('pitch_ce', math.nan):.3f}, step+pitch CE {s.get('joint_ce', math.nan):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
