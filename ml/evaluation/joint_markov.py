"""The fair baseline: a Markov chain over whole notes, given what the network is given.

A token is a whole note: (step class, key-relative pitch, duration class). The chain predicts the
next token from the two before it and from where the last note fell in its bar, one chain per
style, learnt from the same key-relative training pieces as the network. Smoothing is
interpolated Witten-Bell (as in ml.evaluation.baselines) over the contexts (position, t-1, t-2) ->
(position, t-1) -> (t-1) -> (), down to an add-alpha unigram over every possible token.

`ChainSteps` puts a chain where the network's compiled steps go in `ml.generation.generator`, so that the
chain writes through the same sampler: the same form plan and copied repeats, the same key mask,
range, cadence and voice guards, the same lengths. Nothing here imports Keras.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml.model.config import PAD_PITCH, PITCHES

START = -1  # the token before a piece's first note
ALPHA = 0.01


@dataclass
class _Context:
    total: int = 0
    tokens: Counter[int] = field(default_factory=Counter)
    step_pitch: Counter[int] = field(default_factory=Counter)
    arrays: tuple[np.ndarray, np.ndarray] | None = None

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        if self.arrays is None:
            self.arrays = (np.fromiter(self.tokens.keys(), np.int64, len(self.tokens)),
                           np.fromiter(self.tokens.values(), np.float64, len(self.tokens)))
        return self.arrays


class JointMarkov:
    """p(step, pitch, duration | position of the last note, previous two notes), for one style."""

    def __init__(self, time_classes: int, alpha: float = ALPHA) -> None:
        self.time_classes = time_classes
        self.alpha = alpha
        self.contexts: dict[tuple[int, ...], _Context] = {}
        self.unigram: Counter[int] = Counter()
        self.unigram_step_pitch: Counter[int] = Counter()
        self.total = 0

    # tokens
    def token(self, step: int, pitch: int, duration: int) -> int:
        return (int(step) * PITCHES + int(pitch)) * self.time_classes + int(duration)

    def split(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        step_pitch, duration = np.divmod(tokens, self.time_classes)
        step, pitch = np.divmod(step_pitch, PITCHES)
        return step, pitch, duration

    @staticmethod
    def _keys(position: int, t1: int, t2: int) -> tuple[tuple[int, ...], ...]:
        """Contexts from the most to the least specific."""
        return ((0, position, t1, t2), (1, position, t1), (2, t1))

    @property
    def vocabulary(self) -> int:
        return self.time_classes * PITCHES * self.time_classes

    def fit(self, pieces: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> JointMarkov:
        """Learn from pieces given as (step classes, key-relative pitches, duration classes, positions)."""
        for step, pitch, duration, position in pieces:
            t1 = t2 = START
            last_position = -1
            for s, p, d, pos in zip(step.tolist(), pitch.tolist(), duration.tolist(), position.tolist()):
                tok = self.token(s, p, d)
                sp = tok // self.time_classes
                for key in self._keys(last_position, t1, t2):
                    ctx = self.contexts.get(key)
                    if ctx is None:
                        ctx = self.contexts[key] = _Context()
                    ctx.total += 1
                    ctx.tokens[tok] += 1
                    ctx.step_pitch[sp] += 1
                self.unigram[tok] += 1
                self.unigram_step_pitch[sp] += 1
                self.total += 1
                t2, t1, last_position = t1, tok, pos
        return self

    def _chain(self, position: int, t1: int, t2: int) -> list[_Context]:
        """The contexts seen in training, from the least to the most specific."""
        found = [self.contexts.get(key) for key in self._keys(position, t1, t2)]
        return [ctx for ctx in reversed(found) if ctx is not None and ctx.total]

    def step_pitch_prob(self, position: int, t1: int, t2: int, step: int, pitch: int) -> float:
        """p(step, pitch | context), summed over durations: the chain's like-for-like joint score."""
        sp = int(step) * PITCHES + int(pitch)
        denominator = self.total + self.alpha * self.vocabulary
        prob = (self.unigram_step_pitch.get(sp, 0) + self.alpha * self.time_classes) / denominator
        for ctx in self._chain(position, t1, t2):
            distinct = len(ctx.tokens)
            prob = (ctx.step_pitch.get(sp, 0) + distinct * prob) / (ctx.total + distinct)
        return prob

    def distribution(self, position: int, t1: int, t2: int) -> tuple[np.ndarray, np.ndarray, float]:
        """The next-token distribution as (tokens, probabilities) plus the weight of the unigram."""
        tokens = np.zeros(0, np.int64)
        probs = np.zeros(0, np.float64)
        base = 1.0
        for ctx in self._chain(position, t1, t2):
            distinct = len(ctx.tokens)
            keep = distinct / (ctx.total + distinct)
            their_tokens, their_counts = ctx.table()
            tokens = np.concatenate([tokens, their_tokens])
            probs = np.concatenate([probs * keep, their_counts / (ctx.total + distinct)])
            base *= keep
        return tokens, probs, base

    def _unigram_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The add-alpha unigram as p(step) [T], p(step, pitch) [T, 128] and p(step, duration) [T, T]."""
        if not hasattr(self, "_tables"):
            t = self.time_classes
            denominator = self.total + self.alpha * self.vocabulary
            joint = np.full((t, PITCHES, t), self.alpha / denominator)
            tokens = np.fromiter(self.unigram.keys(), np.int64, len(self.unigram))
            counts = np.fromiter(self.unigram.values(), np.float64, len(self.unigram))
            s, p, d = self.split(tokens)
            np.add.at(joint, (s, p, d), counts / denominator)
            self._tables = (joint.sum(axis=(1, 2)), joint.sum(axis=2), joint.sum(axis=1))
        return self._tables

    def step_log_probs(self, position: int, t1: int, t2: int) -> np.ndarray:
        tokens, probs, base = self.distribution(position, t1, t2)
        out = base * self._unigram_tables()[0]
        np.add.at(out, self.split(tokens)[0], probs)
        return np.log(out + 1e-300)

    def given_step(self, position: int, t1: int, t2: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Log-probabilities (unnormalised: p(step, x)) of the pitch and of the duration, given the step."""
        tokens, probs, base = self.distribution(position, t1, t2)
        _, uni_pitch, uni_duration = self._unigram_tables()
        pitch = base * uni_pitch[step]
        duration = base * uni_duration[step]
        s, p, d = self.split(tokens)
        here = s == step
        np.add.at(pitch, p[here], probs[here])
        np.add.at(duration, d[here], probs[here])
        return np.log(pitch + 1e-300), np.log(duration + 1e-300)


class ChainSteps:
    """The interface of ml.generation.generator's compiled steps, answered by a chain instead of the network."""

    def __init__(self, chain: JointMarkov, batch: int) -> None:
        self.chain = chain
        self.batch = batch
        self.window: dict[str, np.ndarray] = {}

    def reset(self, window: dict[str, np.ndarray], piece: dict[str, Any],
              future: dict[str, np.ndarray] | None = None) -> None:
        self.window = {k: v.copy() for k, v in window.items() if k != "chord"}

    def _context(self, v: int) -> tuple[int, int, int]:
        w = self.window
        tokens = []
        for k in (-1, -2):
            pitch = int(w["pitch"][v, k])
            tokens.append(START if pitch == PAD_PITCH else self.chain.token(
                int(w["step"][v, k]), pitch, int(w["duration"][v, k])))
        position = int(w["position"][v, -1]) if tokens[0] != START else -1
        return position, tokens[0], tokens[1]

    def encode(self, note: dict[str, np.ndarray] | None) -> np.ndarray:
        if note is not None:
            for key in self.window:
                self.window[key] = np.concatenate([self.window[key][:, 1:], note[key][:, None]], axis=1)
        return np.stack([self.chain.step_log_probs(*self._context(v)) for v in range(self.batch)])

    def decode(self, step: np.ndarray, position: np.ndarray, cadence: np.ndarray, until: np.ndarray | None = None,
               chord: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The chain's next pitch and duration given the step (it reads no chords and nothing ahead)."""
        pitch, duration = zip(*(self.chain.given_step(*self._context(v), int(step[v])) for v in range(self.batch)))
        return np.stack(pitch), np.stack(duration), np.full((self.batch, 1), 80 / 127.0)


def chain_writer(chains: dict[str, JointMarkov]) -> Callable[[str, int], ChainSteps]:
    """What `Generator(writer=...)` takes: the style's chain writes, in place of the network."""
    return lambda style, batch: ChainSteps(chains[style], batch)
