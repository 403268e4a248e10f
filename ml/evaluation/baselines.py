"""Baselines the note model must beat: n-gram pitch models and constant timing and velocity.

Pitch baselines share one interface. They are fitted on training pieces (one pitch array per
piece), score every note of a piece from the first one (at the start of a piece the context is
shorter than the order, and they back off to the context there is), and sample continuations.
All log-probabilities are natural logarithms (nats).

The Markov chains use interpolated Witten-Bell smoothing (Witten & Bell 1991; Chen & Goodman
1998): the estimate for a context is mixed with the next lower order in proportion to how many
distinct pitches have followed that context, down to an add-alpha unigram, which itself backs off
to the uniform distribution. It has no free parameter besides the unigram's alpha, which
`fit_pitch_baselines` tunes on validation pieces. Plain add-alpha smoothing (backing off only for
contexts never seen) is available for comparison and for hand-checkable tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PITCHES = 128
MAX_ORDER = 7  # context codes are base-128 numbers inside int64
ALPHA_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
_CHUNK = 4096  # rows of 128 probabilities computed at a time


class PitchBaseline:
    """A next-pitch distribution given up to `order` previous pitches.

    Subclasses implement `_probs`. Everything else (scoring whole pieces, sampling) is shared.
    """

    name = "pitch baseline"
    order = 0

    def fit(self, pieces: Sequence[np.ndarray]) -> PitchBaseline:
        """Learn from training pieces, each a 1-D array of MIDI pitches. Returns self."""
        return self

    def _probs(self, history: np.ndarray, length: np.ndarray) -> np.ndarray:
        """Next-pitch probabilities [rows, 128].

        Args:
            history: [rows, order] previous pitches, right-aligned (the last column is the most
                recent pitch); only the last `length` columns of a row are meaningful.
            length: [rows] how many previous pitches each row has (0..order).
        """
        raise NotImplementedError

    def probs(self, history: np.ndarray, length: np.ndarray) -> np.ndarray:
        """`_probs` computed in chunks, so that memory stays small for many rows."""
        history = np.asarray(history, dtype=np.int64).reshape(len(length), self.order)
        length = np.asarray(length, dtype=np.int64)
        out = np.empty((len(length), PITCHES))
        for a in range(0, len(length), _CHUNK):
            out[a:a + _CHUNK] = self._probs(history[a:a + _CHUNK], length[a:a + _CHUNK])
        return out

    def log_prob_next(self, context: Sequence[int] | np.ndarray) -> np.ndarray:
        """Log-probabilities [128] of the next pitch after `context` (oldest first; may be empty)."""
        history, length = self._histories([np.asarray(context, dtype=np.int64)], last_only=True)
        return np.log(self.probs(history, length)[0])

    def score(self, pieces: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Log-probability in nats of every note of every piece, each given the notes before it."""
        log_probs, _ = self.score_and_predict(pieces)
        bounds = np.cumsum([0] + [len(p) for p in pieces])
        return [log_probs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def score_and_predict(self, pieces: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Flat log-probabilities of every note and the most likely pitch at each position."""
        pieces = [np.asarray(p, dtype=np.int64) for p in pieces]
        history, length = self._histories(pieces)
        target = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        log_probs = np.empty(len(target))
        best = np.empty(len(target), dtype=np.int64)
        for a in range(0, len(target), _CHUNK):
            p = self._probs(history[a:a + _CHUNK], length[a:a + _CHUNK])
            log_probs[a:a + _CHUNK] = np.log(p[np.arange(len(p)), target[a:a + _CHUNK]])
            best[a:a + _CHUNK] = np.argmax(p, axis=1)
        return log_probs, best

    def _histories(self, pieces: Sequence[np.ndarray], last_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Right-aligned histories of every position of every piece (or only after the last note)."""
        k = self.order
        rows, lengths = [], []
        for p in pieces:
            padded = np.concatenate([np.zeros(k, np.int64), p])
            positions = np.array([len(p)]) if last_only else np.arange(len(p))
            # Row i holds padded[i : i + k], i.e. the k pitches before note i.
            rows.append(padded[positions[:, None] + np.arange(k)[None, :]])
            lengths.append(np.minimum(positions, k))
        if not rows:
            return np.zeros((0, k), np.int64), np.zeros(0, np.int64)
        return np.concatenate(rows), np.concatenate(lengths)

    def sample(self, rng: np.random.Generator, n: int, primer: Sequence[int] | np.ndarray | None = None,
               temperature: float = 1.0) -> np.ndarray:
        """Sample `n` pitches that continue `primer` (or start a piece); the primer is not returned."""
        primers = None if primer is None else [np.asarray(primer, dtype=np.int64)]
        return self.sample_batch(rng, n, 1, primers, temperature)[0]

    def sample_batch(self, rng: np.random.Generator, n: int, count: int,
                     primers: Sequence[np.ndarray] | None = None, temperature: float = 1.0) -> np.ndarray:
        """Sample `count` continuations of `n` pitches at once, [count, n]."""
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        if primers is not None and len(primers) != count:
            raise ValueError("Give one primer per sample.")
        k = self.order
        history, length = self._histories(primers or [np.zeros(0, np.int64)] * count, last_only=True)
        out = np.empty((count, n), dtype=np.int64)
        for t in range(n):
            p = self.probs(history, length)
            if temperature != 1.0:
                p = p ** (1.0 / temperature)
            cdf = np.cumsum(p, axis=1)
            u = rng.random(count) * cdf[:, -1]
            out[:, t] = np.minimum((cdf < u[:, None]).sum(axis=1), PITCHES - 1)
            if k:
                history = np.concatenate([history[:, 1:], out[:, t:t + 1]], axis=1)
                length = np.minimum(length + 1, k)
        return out


class UniformPitch(PitchBaseline):
    """Every pitch equally likely: log(128) nats per note, the score of knowing nothing."""

    name = "uniform"

    def _probs(self, history: np.ndarray, length: np.ndarray) -> np.ndarray:
        return np.full((len(length), PITCHES), 1.0 / PITCHES)


class UnigramPitch(PitchBaseline):
    """Pitch frequencies of the training pieces with add-alpha smoothing, ignoring context."""

    name = "unigram"

    def __init__(self, alpha: float = 0.1) -> None:
        if alpha <= 0:
            raise ValueError("alpha must be positive")
        self.alpha = alpha
        self.counts = np.zeros(PITCHES)

    def fit(self, pieces: Sequence[np.ndarray]) -> UnigramPitch:
        flat = np.concatenate([np.asarray(p, np.int64) for p in pieces]) if pieces else np.zeros(0, np.int64)
        self.counts = np.bincount(flat, minlength=PITCHES).astype(np.float64)
        return self

    def distribution(self) -> np.ndarray:
        return (self.counts + self.alpha) / (self.counts.sum() + PITCHES * self.alpha)

    def _probs(self, history: np.ndarray, length: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.distribution(), (len(length), PITCHES)).copy()


@dataclass
class _OrderCounts:
    """Counts of one Markov order, as sorted keys for vectorised lookup."""

    keys: np.ndarray  # context code * 128 + next pitch, sorted
    counts: np.ndarray  # how often each key occurred
    contexts: np.ndarray  # context codes, sorted
    context_total: np.ndarray  # c(h): how often the context was followed by anything
    context_types: np.ndarray  # N1+(h .): how many distinct pitches followed it


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """values[key] for each query, 0 where the key is absent."""
    if not len(sorted_keys):
        return np.zeros(queries.shape)
    idx = np.searchsorted(sorted_keys, queries)
    idx_c = np.minimum(idx, len(sorted_keys) - 1)
    return np.where(sorted_keys[idx_c] == queries, values[idx_c], 0).astype(np.float64)


class MarkovPitch(PitchBaseline):
    """A Markov chain over pitch of order 1..7, smoothed with lower orders.

    Args:
        order: How many previous pitches condition the next one.
        alpha: Add-alpha constant of the unigram at the bottom of the back-off chain (Witten-Bell),
            or of every order (add-alpha).
        smoothing: "witten-bell" (interpolated) or "add-alpha" (each context's add-alpha estimate;
            a context never seen in training backs off to the longest shorter one that was).
    """

    def __init__(self, order: int, alpha: float = 0.1, smoothing: str = "witten-bell") -> None:
        if not 1 <= order <= MAX_ORDER:
            raise ValueError(f"order must be between 1 and {MAX_ORDER}")
        if smoothing not in ("witten-bell", "add-alpha"):
            raise ValueError("smoothing must be 'witten-bell' or 'add-alpha'")
        self.order = order
        self.smoothing = smoothing
        self.unigram = UnigramPitch(alpha)
        self.tables: list[_OrderCounts] = []

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"markov-{self.order}"

    @property
    def alpha(self) -> float:
        return self.unigram.alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        if value <= 0:
            raise ValueError("alpha must be positive")
        self.unigram.alpha = value

    def fit(self, pieces: Sequence[np.ndarray]) -> MarkovPitch:
        pieces = [np.asarray(p, dtype=np.int64) for p in pieces if len(p)]
        self.unigram.fit(pieces)
        self.tables = []
        for j in range(1, self.order + 1):
            keys = [self._codes(np.stack([p[j - k - 1:len(p) - k - 1] for k in range(j)][::-1], axis=1)) * PITCHES
                    + p[j:] for p in pieces if len(p) > j]
            flat = np.concatenate(keys) if keys else np.zeros(0, np.int64)
            unique, counts = np.unique(flat, return_counts=True)
            contexts, inverse = np.unique(unique // PITCHES, return_inverse=True)
            self.tables.append(_OrderCounts(
                keys=unique, counts=counts.astype(np.float64), contexts=contexts,
                context_total=np.bincount(inverse, weights=counts, minlength=len(contexts)),
                context_types=np.bincount(inverse, minlength=len(contexts)).astype(np.float64),
            ))
        return self

    @staticmethod
    def _codes(history: np.ndarray) -> np.ndarray:
        """Base-128 code of each row of pitches (oldest first)."""
        code = np.zeros(len(history), dtype=np.int64)
        for col in range(history.shape[1]):
            code = code * PITCHES + history[:, col]
        return code

    def _probs(self, history: np.ndarray, length: np.ndarray) -> np.ndarray:
        p = np.broadcast_to(self.unigram.distribution(), (len(length), PITCHES)).copy()
        candidates = np.arange(PITCHES, dtype=np.int64)
        alpha = self.alpha
        for j, table in enumerate(self.tables, start=1):
            rows = np.flatnonzero(length >= j)
            if not len(rows):
                break
            code = self._codes(history[rows, self.order - j:])
            total = _lookup(table.contexts, table.context_total, code)
            seen = total > 0
            rows, code, total = rows[seen], code[seen], total[seen]
            if not len(rows):
                continue
            counts = _lookup(table.keys, table.counts, code[:, None] * PITCHES + candidates[None, :])
            if self.smoothing == "witten-bell":
                types = _lookup(table.contexts, table.context_types, code)
                p[rows] = (counts + types[:, None] * p[rows]) / (total + types)[:, None]
            else:
                p[rows] = (counts + alpha) / (total + PITCHES * alpha)[:, None]
        return p


def cross_entropy(model: PitchBaseline, pieces: Sequence[np.ndarray]) -> float:
    """Mean negative log-probability per note, in nats."""
    log_probs, _ = model.score_and_predict(pieces)
    return float(-log_probs.mean()) if len(log_probs) else math.nan


def tune_alpha(model: UnigramPitch | MarkovPitch, valid: Sequence[np.ndarray],
               grid: Sequence[float] = ALPHA_GRID) -> float:
    """Set the model's alpha to the value of `grid` with the lowest validation cross-entropy.

    The model must be fitted already; alpha only enters at scoring time, so no refit is needed.
    With no validation notes the alpha is left as it is.
    """
    if not sum(len(p) for p in valid):
        return model.alpha
    scores = {}
    for alpha in grid:
        model.alpha = alpha
        scores[alpha] = cross_entropy(model, valid)
    model.alpha = min(scores, key=scores.__getitem__)
    return model.alpha


PITCH_BASELINES = ("uniform", "unigram", "markov-1", "markov-2", "markov-3")


def make_pitch_baseline(name: str) -> PitchBaseline:
    """A fresh, unfitted baseline by name: uniform, unigram or markov-N (Witten-Bell)."""
    if name == "uniform":
        return UniformPitch()
    if name == "unigram":
        return UnigramPitch()
    if name.startswith("markov-") and name[7:].isdigit():
        return MarkovPitch(int(name[7:]))
    raise ValueError(f"Unknown pitch baseline {name!r}.")


def fit_pitch_baseline(name: str, train: Sequence[np.ndarray], valid: Sequence[np.ndarray]) -> PitchBaseline:
    """Fit a baseline on training pieces and tune its alpha (if it has one) on validation pieces."""
    model = make_pitch_baseline(name).fit(train)
    if isinstance(model, (UnigramPitch, MarkovPitch)):
        tune_alpha(model, valid)
    return model


# -- timing and velocity ------------------------------------------------------------------------

@dataclass
class ConstantBaseline:
    """Predicts one value for every note: the training mean or median.

    The median minimises the mean absolute error, so it is the strong constant for an MAE table.
    """

    statistic: str = "median"
    value: float = 0.0

    def fit(self, values: np.ndarray) -> ConstantBaseline:
        if self.statistic not in ("mean", "median"):
            raise ValueError("statistic must be 'mean' or 'median'")
        values = np.asarray(values, dtype=np.float64)
        if not len(values):
            raise ValueError("A constant baseline needs at least one training value.")
        self.value = float(np.mean(values) if self.statistic == "mean" else np.median(values))
        return self

    def predict(self, n: int) -> np.ndarray:
        return np.full(n, self.value)


@dataclass
class ClassFrequencies:
    """Add-alpha smoothed frequencies of classes (step or duration classes), ignoring context."""

    classes: int
    alpha: float = 1.0
    counts: np.ndarray | None = None

    def fit(self, values: np.ndarray) -> ClassFrequencies:
        self.counts = np.bincount(np.asarray(values, np.int64), minlength=self.classes)[:self.classes].astype(float)
        return self

    def distribution(self) -> np.ndarray:
        counts = self.counts if self.counts is not None else np.zeros(self.classes)
        return (counts + self.alpha) / (counts.sum() + self.classes * self.alpha)

    def log_prob(self, values: np.ndarray) -> np.ndarray:
        return np.log(self.distribution()[np.asarray(values, np.int64)])

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(self.classes, size=n, p=self.distribution())
