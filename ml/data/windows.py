"""Training windows: every note of some pieces as a target, with the window of notes before it.

The model's inputs per note (key-relative pitch, bar position, beats to the next cadence) are
computed here once per piece; `WindowBatches` cuts the windows and shuffles them for `fit`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from ml.data.datasets import NoteDataset
from ml.data.notes import NoteSequence
from ml.model.config import (
    CADENCE_CLASSES,
    PAD_PITCH,
    PITCHES,
    UNTIL_CLASSES,
    ModelConfig,
    cadence_class,
    key_shift,
    metre_class,
    piece_density_class,
    until_class,
)

# Training shows half of the windows the harmony of each half bar, and half of them the notes
# after a gap, so that one model writes with and without a progression, and with and without a
# passage to lead into.
CHORD_SHARE = 0.5
FUTURE_SHARE = 0.5
LONGEST_GAP = 64  # notes between the note to predict and the first note after the gap, at most
# A pitch class belongs to a half bar's harmony when it sounds for this share of it or more (at
# most four, the longest-sounding first): passing notes, which are short, stay outside.
CHORD_TONE_SHARE = 0.12
# A note this many beats or fewer before a cadence (a marked phrase end, the last note) closes it.
CADENCE_NEAR_BEATS = 2.0
# The voices below a note whose motion can make parallels with it (a chord of four: three).
PARALLEL_SLOTS = 3
HELD_LOOKBACK = 64  # a note held into an onset started at most this many notes before it


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
    chord: np.ndarray  # uint8 [notes, 12]: key-relative pitch classes of the harmony of its half bar
    onset: np.ndarray  # float64 [notes]: beats from its piece's start
    targets: np.ndarray  # int64 [examples]: flat index of the note to predict
    first: np.ndarray  # int64 [examples]: flat index of the first note of its piece
    last: np.ndarray  # int64 [examples]: flat index one past the last note of its piece
    style: np.ndarray  # int32 [examples]
    piece: np.ndarray  # int32 [examples]: piece index in the dataset
    metre: np.ndarray  # int32 [examples]
    mode: np.ndarray  # int32 [examples]
    # Per note (where the config asks for them, `unlikelihood`): the pitches that would move it in
    # parallel fifths or octaves with a voice below it (`parallel_slots`); empty otherwise.
    parallel_class: np.ndarray = field(default_factory=lambda: np.zeros((0, PARALLEL_SLOTS), np.int8))
    parallel_side: np.ndarray = field(default_factory=lambda: np.zeros((0, PARALLEL_SLOTS), np.int8))
    parallel_from: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    # Per example (where the config asks for it, `density`): how busy its piece is (`density_class`).
    density: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.targets)


def make_examples(dataset: NoteDataset, config: ModelConfig, split: str | None = None,
                  pieces: np.ndarray | None = None) -> Examples:
    """Targets for every note of the chosen pieces (all pieces of `split` by default)."""
    chosen = dataset.indices(split) if pieces is None else np.asarray(pieces)
    style_map = np.array([config.style_index(s) if s in config.styles else -1 for s in dataset.styles])
    targets, first, last, style, piece, metre, mode, density = [], [], [], [], [], [], [], []
    pitch = dataset.pitch.astype(np.int32)
    position = np.full(len(pitch), config.pad_position, np.int32)
    cadence = np.full(len(pitch), CADENCE_CLASSES - 1, np.int32)
    chord = np.zeros((len(pitch) if config.chords else 0, 12), np.uint8)
    onset = np.zeros(len(pitch), np.float64)
    slots = len(pitch) if config.unlikelihood else 0
    parallel_class = np.full((slots, PARALLEL_SLOTS), -1, np.int8)
    parallel_side = np.zeros((slots, PARALLEL_SLOTS), np.int8)
    parallel_from = np.full(slots, -1, np.int16)
    for i in chosen:
        a, b = int(dataset.offsets[i]), int(dataset.offsets[i + 1])
        if b <= a or style_map[dataset.piece_style[i]] < 0:
            continue
        features = piece_features(dataset.piece(int(i)), config, tonic=int(dataset.piece_key[i]))
        pitch[a:b], position[a:b], cadence[a:b] = features["pitch"], features["position"], features["cadence"]
        onset[a:b] = features["onset"]
        if config.chords:
            chord[a:b] = features["chord"]
        if slots and (not config.unlikelihood_styles or dataset.styles[dataset.piece_style[i]]
                      in config.unlikelihood_styles):
            parallel_class[a:b], parallel_side[a:b], parallel_from[a:b] = parallel_slots(
                features["onset"], features["pitch"], dataset.duration_beats[a:b])
        targets.append(np.arange(a, b))
        first.append(np.full(b - a, a))
        last.append(np.full(b - a, b))
        style.append(np.full(b - a, style_map[dataset.piece_style[i]]))
        piece.append(np.full(b - a, i))
        metre.append(np.full(b - a, metre_class(tuple(dataset.piece_time_signature[i]))))
        mode.append(np.full(b - a, int(dataset.piece_mode[i])))
        if config.density:
            density.append(np.full(b - a, piece_density_class(features["onset"])))

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    return Examples(
        pitch=pitch, step=config.quantize_beats(dataset.step_beats),
        duration=config.quantize_beats(dataset.duration_beats),
        velocity=(dataset.velocity / 127.0).astype(np.float32), position=position, cadence=cadence,
        chord=chord, onset=onset, targets=cat(targets, np.int64), first=cat(first, np.int64),
        last=cat(last, np.int64), style=cat(style, np.int32),
        piece=cat(piece, np.int32), metre=cat(metre, np.int32), mode=cat(mode, np.int32),
        parallel_class=parallel_class, parallel_side=parallel_side, parallel_from=parallel_from,
        density=cat(density, np.int32),
    )


def piece_features(seq: NoteSequence, config: ModelConfig, tonic: int) -> dict[str, np.ndarray]:
    """The model's per-note inputs for a piece: (key-relative) pitch, bar position, beats to
    cadence, onset in beats, and the harmony of each note's half bar.

    A piece's cadences are its phrase ends (fermatas) and its last onset, the final cadence (a
    class of its own where the config tells it apart).
    """
    onset = np.round(seq.seconds_to_beats(seq.start) * 48) / 48
    in_bar, _, bar_length = seq.bar_positions()
    marked = seq.seconds_to_beats(np.array(seq.phrase_ends, dtype=np.float64)) if seq.phrase_ends else np.zeros(0)
    ends = np.array(sorted({round(float(e) * 48) / 48 for e in marked} | {float(onset.max())}))
    upcoming = ends[np.clip(np.searchsorted(ends, onset - 1e-6), 0, len(ends) - 1)]
    shift = key_shift(tonic) if config.key_relative else 0
    pitch = np.clip(seq.pitch.astype(np.int32) - shift, 0, PITCHES - 1)
    _, duration = seq.to_beats()
    cadence = config.cadence_input(upcoming - onset, final=upcoming >= ends[-1] - 1e-9)
    return {"pitch": pitch, "position": config.position_class(in_bar), "cadence": cadence,
            "onset": onset, "chord": half_bar_harmony(onset, duration.astype(np.float64), pitch, in_bar, bar_length)}


def parallel_slots(onset: np.ndarray, pitch: np.ndarray, duration: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per note of a piece (notes in onset order, the notes of an onset from the lowest up), the pitches
    that would make it move in parallel fifths or octaves with a voice below it, for the unlikelihood
    loss (`ModelConfig.unlikelihood`).

    Two voices move in parallels when they sound a perfect fifth or an octave apart (or compounds),
    both move the same way, and sound the same interval again. Where as many notes sound at an onset
    as at the onset before it (notes held through it included; with no `duration` (beats), the notes
    struck there), the k-th sounding note from the bottom continues the k-th voice. For a note struck
    there as the k-th, and each voice j below it that moved, the pitches x with x - (j's note now) the
    interval the two voices sounded before (mod 12), on the side of the k-th voice's previous note that
    voice j moved to, would make parallels. Returns, per note and voice below (the nearest
    PARALLEL_SLOTS): that pitch class (-1 for none) and side (+1 above, -1 below); and per note its
    voice's previous note (-1 for none).
    """
    n = len(pitch)
    classes = np.full((n, PARALLEL_SLOTS), -1, np.int8)
    sides = np.zeros((n, PARALLEL_SLOTS), np.int8)
    previous_note = np.full(n, -1, np.int16)
    if n == 0:
        return classes, sides, previous_note
    pitch = np.asarray(pitch, np.int64)
    cuts = np.flatnonzero(np.diff(onset) > 1e-6) + 1
    groups = np.split(np.arange(n), cuts)
    end = None if duration is None else np.asarray(onset, np.float64) + np.asarray(duration, np.float64)

    def sounding(k: int) -> tuple[np.ndarray, np.ndarray]:
        """Pitches sounding at group k's onset, from the lowest, and which note of the group each is (-1: held)."""
        struck = groups[k]
        if end is None:
            return pitch[struck], struck
        at, first = onset[struck[0]], max(0, int(struck[0]) - HELD_LOOKBACK)
        held = first + np.flatnonzero((onset[first:struck[0]] < at - 1e-6) & (end[first:struck[0]] > at + 1e-6))
        notes = np.concatenate([held, struck])
        order = np.argsort(pitch[notes], kind="stable")
        return pitch[notes][order], np.concatenate([np.full(len(held), -1), struck])[order]

    before = sounding(0)
    for k in range(1, len(groups)):
        now = sounding(k)
        (old, _), (new, note) = before, now
        before = now
        if len(new) != len(old) or len(new) < 2:
            continue
        for voice in range(1, len(new)):
            if note[voice] < 0:
                continue  # held: it does not move
            previous_note[note[voice]] = old[voice]
            for slot, j in enumerate(range(voice - 1, max(voice - 1 - PARALLEL_SLOTS, -1), -1)):
                motion = new[j] - old[j]
                interval = (old[voice] - old[j]) % 12
                if motion == 0 or interval not in (0, 7):
                    continue
                classes[note[voice], slot] = (new[j] + interval) % 12
                sides[note[voice], slot] = 1 if motion > 0 else -1
    return classes, sides, previous_note


def _slots(ex: Examples, target: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The target notes' `parallel_slots`, shaped [examples, slots, 1] to meet the pitches: each slot's
    pitch class (-1: none) and side, and the voice's previous note moved by `shift` ([examples, 1, 1])."""
    classes = ex.parallel_class[target].astype(np.int64)[:, :, None]
    sides = ex.parallel_side[target].astype(np.int64)[:, :, None]
    previous = ex.parallel_from[target].astype(np.int64)[:, None, None] + shift[:, None, None]
    return classes, sides, previous


def parallel_mask(ex: Examples, target: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """bool [examples, PITCHES]: the pitches that would put each target note in parallels with a voice
    below it (`parallel_slots`), moved by `shift`; the composer's own note is never among them.
    Nothing is marked where the examples carry no such sets (a config without `unlikelihood`)."""
    if not len(ex.parallel_class):
        return np.zeros((len(target), PITCHES), bool)
    x = np.arange(PITCHES)[None, None, :]
    classes, sides, previous = _slots(ex, target, shift)
    hit = (classes >= 0) & ((x - shift[:, None, None]) % 12 == classes) & (sides * (x - previous) > 0)
    mask = hit.any(axis=1)
    mask[np.arange(len(target)), np.clip(ex.pitch[target] + shift, 0, PITCHES - 1)] = False
    return mask


def contrary_mask(ex: Examples, target: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """bool [examples, PITCHES]: for each target note with pitches to avoid (`parallel_mask`), the
    pitches that move it against every voice below that it could move in parallel with (contrary
    motion, the way out of parallels that voice-leading teaches); nothing for the other notes."""
    if not len(ex.parallel_class):
        return np.zeros((len(target), PITCHES), bool)
    classes, sides, previous = _slots(ex, target, shift)
    marked = classes >= 0
    against = (sides * (np.arange(PITCHES)[None, None, :] - previous) < 0) | ~marked
    return against.all(axis=1) & marked.any(axis=1)


def harmony_span(in_bar: np.ndarray, bar_length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(beats from the start of its harmony span, the span's length) at each onset: half bars in
    bars of four beats or more, whole bars in shorter ones, as a progression is written."""
    halves = bar_length >= 4 - 1e-9
    span = np.where(halves, bar_length / 2, bar_length)
    into = np.where(halves & (in_bar >= span - 1e-9), in_bar - span, in_bar)
    return into, span


def half_bar_harmony(onset: np.ndarray, duration: np.ndarray, pitch: np.ndarray, in_bar: np.ndarray,
                     bar_length: np.ndarray) -> np.ndarray:
    """Per note, the pitch classes (a 12-vector of 0/1) that sound longest in its harmony span.

    Every note sounding in the span counts for the time it sounds there (a held bass too); the
    classes that fill at least `CHORD_TONE_SHARE` of the span's sounding time are its harmony, at
    most four of them.
    """
    n = len(onset)
    out = np.zeros((n, 12), np.uint8)
    if not n:
        return out
    into, span = harmony_span(in_bar, bar_length)
    starts = np.round((onset - into) * 48) / 48
    unique, inverse = np.unique(np.stack([starts, span]), axis=1, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    end = onset + duration
    pcs = pitch % 12
    for k in range(unique.shape[1]):
        a, length = unique[0, k], unique[1, k]
        overlap = np.clip(np.minimum(end, a + length) - np.maximum(onset, a), 0, None)
        weights = np.bincount(pcs, weights=overlap, minlength=12)
        total = weights.sum()
        if total <= 0:
            continue
        order = np.argsort(-weights, kind="stable")[:4]
        tones = order[weights[order] >= CHORD_TONE_SHARE * total]
        out[np.ix_(np.flatnonzero(inverse == k), tones)] = 1
    return out


def batch_arrays(ex: Examples, rows: np.ndarray, config: ModelConfig, rng: np.random.Generator | None = None, *,
                 chord_share: float = CHORD_SHARE, future_share: float = FUTURE_SHARE, transpose: bool = True,
                 noise: float = 0.0, parallels: bool = False) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Inputs and targets for the examples `rows`.

    With `rng` (training), each example is transposed at random (absolute-pitch models), and a
    model with chord inputs or future notes sees them in a random share of the examples. Without
    it, the model reads what plain generation gives it: no chords and nothing after the note.
    The shares say which part of the examples see the chords and a future (the evaluation sets
    them to 0 or 1 to measure what each input is worth). `noise` (training, with `rng`) is the
    share of window notes whose pitch, step and duration are each read from another note (`noisy`).
    With `parallels` (a config with `unlikelihood`), the pitch target is a row of 1 + PITCHES floats:
    the note, then the pitches that would make parallels (`parallel_mask`).
    """
    target = ex.targets[rows]
    shift = np.zeros(len(rows), np.int64)
    idx = target[:, None] - config.window + np.arange(config.window)[None, :]
    pad = idx < ex.first[rows][:, None]
    idx = np.where(pad, 0, idx)
    pitch = ex.pitch[idx]
    next_pitch = ex.pitch[target]
    if rng is not None and transpose and config.transpose_range and not config.key_relative:
        shift = rng.integers(-config.transpose_range, config.transpose_range + 1, size=len(rows)).astype(np.int64)
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
        "cadence": np.where(pad, config.pad_cadence, ex.cadence[idx]).astype(np.int32),
        "style": ex.style[rows],
        "metre": ex.metre[rows],
        "mode": ex.mode[rows],
        "next_step": ex.step[target].astype(np.int32),
        "next_position": ex.position[target].astype(np.int32),
        "next_cadence": ex.cadence[target].astype(np.int32),
    }
    if config.density:
        inputs["density"] = ex.density[rows]
    if rng is not None and noise > 0:
        for name in ("pitch", "step", "duration"):
            inputs[name] = noisy(inputs[name], pad, noise, rng, within_window=name == "pitch")
    if config.chords:
        inputs.update(chord_inputs(ex, idx, pad, target, shift, rng, chord_share))
    if config.future:
        inputs.update(future_inputs(ex, config, target, rows, rng, future_share))
    outputs = {
        "pitch": next_pitch.astype(np.int32),
        "step": ex.step[target].astype(np.int32),
        "duration": ex.duration[target].astype(np.int32),
        "velocity": ex.velocity[target][:, None],
    }
    if parallels:
        columns = [next_pitch[:, None].astype(np.float32), parallel_mask(ex, target, shift).astype(np.float32)]
        if config.contrary:  # for the teacher's target (anchored_targets), then dropped
            columns.append(contrary_mask(ex, target, shift).astype(np.float32))
        outputs["pitch"] = np.concatenate(columns, axis=1)
    return inputs, outputs


def noisy(values: np.ndarray, pad: np.ndarray, share: float, rng: np.random.Generator, *,
          within_window: bool = False) -> np.ndarray:
    """`values` (examples x window, padded on the left) with a `share` of the non-pad entries
    replaced by another note's: with `within_window` (pitches) one of the same window, still in
    its key and register; otherwise (steps, durations) one drawn from the whole batch, the note
    values of the music it learns from. A cheap stand-in for reading its own samples (scheduled
    sampling): the notes the network writes are mostly likely ones, sometimes not, and what
    follows should not hang on each of them."""
    hit = (rng.random(values.shape) < share) & ~pad
    if not hit.any():
        return values
    out = values.copy()
    rows, columns = np.nonzero(hit)
    if within_window:
        first = pad.sum(axis=1)[rows]
        width = values.shape[1] - first
        out[rows, columns] = values[rows, first + (rng.random(len(rows)) * width).astype(np.int64)]
    else:
        real = np.flatnonzero(~pad.reshape(-1))
        out[rows, columns] = values.reshape(-1)[real[rng.integers(0, len(real), len(rows))]]
    return out


Predict = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
# A teacher's logits per anchored head for some inputs, or None where it says nothing (`untaught`).
Teach = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray] | None]

# The heads a teacher speaks to (`ModelConfig.anchor`); the velocity stays the score's alone.
ANCHORED_HEADS = ("pitch", "step", "duration")


def _probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of a [examples, classes] array of logits, in float64."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def untaught(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """A `WindowBatches.teacher` that says nothing: anchored targets with empty teacher columns, whose
    anchored loss is the plain cross-entropy of the notes (a teacher's run validated like any other)."""
    return None


def anchored_targets(outputs: dict[str, np.ndarray], logits: dict[str, np.ndarray] | None,
                     config: ModelConfig | None = None) -> dict[str, np.ndarray]:
    """The targets of a config with `anchor`: each anchored head's row is its class, then the teacher's
    distribution over the classes (`logits`, the teacher's outputs for the same inputs). The pitch row
    (`batch_arrays` with `parallels`) keeps the pitches to avoid between the two, and the teacher's
    pitch distribution loses them: what the teacher would write with the rule, renormalised. With a
    contrary-motion column after them (a config with `contrary`), the probability taken out goes to the
    pitches that move against the voices below, in the teacher's proportions, and the column is dropped.
    With no `logits` (`untaught`) the teacher's columns are zeros, as many as the `config`'s classes."""
    if logits is None and config is None:
        raise ValueError("Anchored targets without a teacher need the config's classes.")
    out = dict(outputs)
    for name in ANCHORED_HEADS:
        if logits is None:
            assert config is not None
            target = np.asarray(outputs[name], np.float32)
            known = target[:, :1 + PITCHES] if name == "pitch" else target[:, None]
            classes = PITCHES if name == "pitch" else config.time_classes
            out[name] = np.concatenate([known, np.zeros((len(target), classes), np.float32)], axis=1)
            continue
        p = _probabilities(np.asarray(logits[name], dtype=np.float64))
        target = outputs[name]
        if name == "pitch":
            avoid = target[:, 1:1 + PITCHES]
            kept = p * (1.0 - avoid)
            if target.shape[1] > 1 + PITCHES:  # `contrary`: what is taken out goes to contrary motion
                against = p * target[:, 1 + PITCHES:] * (1.0 - avoid)
                share = against.sum(axis=1, keepdims=True)
                taken = (p * avoid).sum(axis=1, keepdims=True)
                kept += np.where(share > 0, taken * against / np.maximum(share, 1e-12), 0.0)
            kept /= np.maximum(kept.sum(axis=1, keepdims=True), 1e-12)
            out[name] = np.concatenate([target[:, :1 + PITCHES], kept.astype(np.float32)], axis=1)
        else:
            out[name] = np.concatenate([np.asarray(target, np.float32)[:, None], p.astype(np.float32)], axis=1)
    return out


def own_samples(ex: Examples, rows: np.ndarray, config: ModelConfig, inputs: dict[str, np.ndarray],
                predict: Predict, share: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`inputs` with the last window notes of a `share` of the examples replaced by the network's own
    samples for them, each drawn given the real notes before it (what generation reads, without
    chords or notes after a gap). The targets stay the real notes, so the network learns to go on
    from notes it wrote as well as from notes the composer wrote (scheduled sampling).

    One note deep (`config.own_depth` 1), the last note's step is drawn from the network's step
    distribution, then its pitch and duration from theirs given the real step. Deeper, the pitches and
    durations of the last `own_depth` notes are drawn in order, each reading the ones drawn before it,
    and every step stays real, so that bar positions stay true (`config.own_fields` draws one of the
    two alone). Each note deep costs one more forward pass over the `share` of the batch."""
    depth = config.own_depth
    target = ex.targets[rows]
    chosen = (target - depth >= ex.first[rows]) & (rng.random(len(rows)) < share)
    earlier = []  # per depth j (deepest first), the example whose target is the note j before
    for j in range(depth, 0, -1):
        at = np.clip(np.searchsorted(ex.targets, target - j), 0, len(ex.targets) - 1)
        chosen &= ex.targets[at] == target - j
        earlier.append(at)
    if not chosen.any():
        return inputs
    drawn_names = ("step", "pitch", "duration") if depth == 1 else config.own_fields
    drawn = {name: np.zeros((int(chosen.sum()), depth), np.int32) for name in drawn_names}
    for k, at in enumerate(earlier):  # note t - depth + k, read after the k notes drawn before it
        before, _ = batch_arrays(ex, at[chosen], config, None)
        if k:
            for name in drawn_names:
                before[name][:, -k:] = drawn[name][:, :k]
        out = predict(before)
        for name in drawn_names:
            logits = np.asarray(out[name], dtype=np.float64)
            cumulative = np.cumsum(_probabilities(logits), axis=1)
            drawn[name][:, k] = (cumulative < rng.random((len(logits), 1))).sum(axis=1).clip(0, logits.shape[1] - 1)
    inputs = dict(inputs)
    for name in drawn_names:
        column = inputs[name].copy()
        column[np.flatnonzero(chosen)[:, None], np.arange(-depth, 0)[None, :]] = drawn[name]
        inputs[name] = column
    return inputs


def chord_inputs(ex: Examples, idx: np.ndarray, pad: np.ndarray, target: np.ndarray, shift: np.ndarray,
                 rng: np.random.Generator | None, share: float = CHORD_SHARE) -> dict[str, np.ndarray]:
    """The harmony of each window note's half bar and of the note to predict, for a share of the
    examples (all zero for the others: harmony unknown)."""
    shown = (rng.random(len(target)) < share) if rng is not None else np.zeros(len(target), bool)
    chord = np.where((pad | ~shown[:, None])[:, :, None], 0, ex.chord[idx]).astype(np.float32)
    next_chord = np.where(shown[:, None], ex.chord[target], 0).astype(np.float32)
    if shift.any():  # a transposed example's harmony moves with it
        rolled = (np.arange(12)[None, :] - shift[:, None]) % 12
        chord = np.take_along_axis(chord, np.broadcast_to(rolled[:, None, :], chord.shape), axis=2)
        next_chord = np.take_along_axis(next_chord, rolled, axis=1)
    return {"chord": chord, "next_chord": next_chord}


def future_inputs(ex: Examples, config: ModelConfig, target: np.ndarray, rows: np.ndarray,
                  rng: np.random.Generator | None, share: float = FUTURE_SHARE) -> dict[str, np.ndarray]:
    """For a share of the examples, the notes after a gap of 1 to `LONGEST_GAP` notes (more short
    gaps than long ones) and the beats to the first of them; for the others, nothing follows."""
    n, f = len(target), config.future
    far = np.full(n, UNTIL_CLASSES - 1, np.int32)
    empty = {"future_pitch": np.full((n, f), PAD_PITCH, np.int32),
             "future_step": np.full((n, f), config.pad_time, np.int32),
             "future_duration": np.full((n, f), config.pad_time, np.int32),
             "future_position": np.full((n, f), config.pad_position, np.int32),
             "until": far, "next_until": far.copy()}
    if rng is None:
        return empty
    shown = rng.random(n) < share
    gap = np.floor(np.exp(rng.uniform(0, np.log(LONGEST_GAP + 1), n))).astype(np.int64).clip(1, LONGEST_GAP)
    begin = target + gap
    shown &= begin < ex.last[rows]
    idx = begin[:, None] + np.arange(f)[None, :]
    valid = shown[:, None] & (idx < ex.last[rows][:, None])
    idx = np.where(valid, idx, 0)
    step = np.where(valid, ex.step[idx], config.pad_time)
    step[:, 0] = config.pad_time  # the note before the first one is in the gap: its step is unknown
    previous = np.where(target > ex.first[rows], ex.onset[np.maximum(target - 1, 0)], ex.onset[target])
    first_onset = ex.onset[np.where(shown, begin, 0)]
    return {
        "future_pitch": np.where(valid, ex.pitch[idx], PAD_PITCH).astype(np.int32),
        "future_step": step.astype(np.int32),
        "future_duration": np.where(valid, ex.duration[idx], config.pad_time).astype(np.int32),
        "future_position": np.where(valid, ex.position[idx], config.pad_position).astype(np.int32),
        "until": np.where(shown, until_class(first_onset - previous), far).astype(np.int32),
        "next_until": np.where(shown, until_class(first_onset - ex.onset[target]), far).astype(np.int32),
    }


class WindowBatches(keras.utils.PyDataset):
    """Shuffled, augmented batches for training, or ordered, plain batches for evaluation.

    `conditioned` ordered batches (validation during training) show the chords and the notes after
    a gap in the same shares as training, drawn the same way every epoch, so that the validation
    loss measures what the model is trained for; plain ones (the evaluation) show neither.
    """

    def __init__(self, examples: Examples, config: ModelConfig, *, train: bool, seed: int = 0,
                 steps: int | None = None, style_weights: dict[str, float] | None = None,
                 cadence_weight: float = 1.0, parallel_weight: float = 1.0, conditioned: bool = False) -> None:
        super().__init__()
        self.ex, self.config, self.train, self.seed = examples, config, train, seed
        self.conditioned = conditioned
        # In training and its validation the pitch target carries the pitches to avoid (unlikelihood;
        # with a teacher, always). Plain batches (the evaluation's) carry the note alone.
        self.parallels = (config.unlikelihood > 0 or config.anchor > 0) and (train or conditioned)
        # What the network predicts for some inputs: set by training when the config asks for its own samples.
        self.predict: Predict | None = None
        # The logits of a frozen teacher for some inputs: set by training when the config has an `anchor`.
        self.teacher: Teach | None = None
        self.epoch = 0
        self.steps = steps
        # Per example, how often an epoch draws it: 1, or its style's weight (oversampling).
        self.weights = np.ones(len(examples))
        for name, weight in (style_weights or {}).items():
            self.weights[examples.style == config.style_index(name)] = weight
        # The notes that close a phrase are few (a fiddle tune's last two beats are about 1% of its
        # notes): `cadence_weight` draws those within CADENCE_NEAR_BEATS of a cadence more often.
        near = examples.cadence[examples.targets] % CADENCE_CLASSES <= cadence_class(CADENCE_NEAR_BEATS)
        self.weights[near] *= cadence_weight
        # The notes some of whose pitches would make parallels are few too (19% of a chorale's):
        # `parallel_weight` draws them more often where the second pitch loss speaks of them.
        if len(examples.parallel_class):
            self.weights[(examples.parallel_class[examples.targets] >= 0).any(axis=1)] *= parallel_weight
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
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            inputs, outputs = batch_arrays(self.ex, rows, self.config, rng, noise=self.config.input_noise,
                                           parallels=self.parallels)
            if self.predict is not None and self.config.own_samples > 0:
                inputs = own_samples(self.ex, rows, self.config, inputs, self.predict, self.config.own_samples, rng)
        elif self.conditioned:
            inputs, outputs = batch_arrays(self.ex, rows, self.config, np.random.default_rng((self.seed, i)),
                                           transpose=False, parallels=self.parallels)
        else:
            inputs, outputs = batch_arrays(self.ex, rows, self.config, None, parallels=self.parallels)
        if self.teacher is not None:
            outputs = anchored_targets(outputs, self.teacher(inputs), self.config)
        return inputs, outputs

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._shuffle()


def as_tf_dataset(batches: WindowBatches) -> Any:
    """Wrap batches in tf.data with prefetching when TensorFlow is the backend; else return them.
    Batches that call a network (own samples, a teacher) are not wrapped: `ml.model.train` passes them
    to Keras as they are."""
    if keras.backend.backend() != "tensorflow":
        return batches
    import tensorflow as tf

    c = batches.config
    w = c.window
    shapes: dict[str, tuple[None, ...] | tuple[None, int] | tuple[None, int, int]] = {
        name: (None, w) for name in c.window_inputs}
    shapes.update({"chord": (None, w, 12), "next_chord": (None, 12)})
    shapes.update({name: (None, c.future) for name in ("future_pitch", "future_step", "future_duration",
                                                        "future_position")})
    floats = {"velocity", "chord", "next_chord"}
    spec_in = {name: tf.TensorSpec(shapes.get(name, (None,)), tf.float32 if name in floats else tf.int32)
               for name in c.input_names}
    # A config with `unlikelihood` learns its pitch from the note and the pitches to avoid (batch_arrays).
    pitch_spec = (tf.TensorSpec((None, 1 + PITCHES), tf.float32) if batches.parallels
                  else tf.TensorSpec((None,), tf.int32))
    spec_out = {
        "pitch": pitch_spec, "step": tf.TensorSpec((None,), tf.int32),
        "duration": tf.TensorSpec((None,), tf.int32), "velocity": tf.TensorSpec((None, 1), tf.float32),
    }

    def generate() -> Iterator[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        while True:  # endless; fit() bounds each epoch with steps_per_epoch = len(batches)
            for i in range(len(batches)):
                yield batches[i]
            batches.on_epoch_end()

    return tf.data.Dataset.from_generator(generate, output_signature=(spec_in, spec_out)).prefetch(4)
