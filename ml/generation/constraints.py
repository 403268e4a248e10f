"""The rules the sampler obeys beside the network: voice leading, voice ranges and loops."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ml.evaluation.mgeval import FIGURE_REPEATS, MAX_SAME_PITCH, find_degenerate_loop

if TYPE_CHECKING:
    from ml.generation.sampler import Line

# Chorale voices from the bass up (MIDI pitches), a little wider than Bach's own ranges.
VOICE_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "chorale": ((36, 64), (48, 69), (53, 76), (59, 81)),
}
# Figure length -> repeats in a row that count as a degenerate loop: the evaluation's thresholds.
LOOP_REPEATS = {1: MAX_SAME_PITCH, **FIGURE_REPEATS}
LOOP_WINDOW = max(length * repeats for length, repeats in LOOP_REPEATS.items())  # notes a loop can span



def sounding(line: Line, at: float, *, at_or_before: bool = False) -> list[int]:
    """Pitches of earlier notes still sounding at beat `at` (with `at_or_before`, those starting there too)."""
    found = []
    for onset, pitch, duration in zip(line.onsets[-48:], line.pitches[-48:], line.durations[-48:]):
        started = onset <= at + 1e-9 if at_or_before else onset < at - 1e-9
        if started and onset + duration > at + 1e-9:
            found.append(pitch)
    return found


def no_parallels(before: list[int], chord: list[int]) -> np.ndarray:
    """Pitches for the next note of `chord` that make no parallel fifth or octave with a note below it.

    `before` is what sounded at the previous onset. Each voice is taken to come from the nearest
    pitch that sounded before (voices move by small steps); a pair moves in parallels when both
    voices move the same way and keep a perfect fifth or octave (or a compound of one).
    """
    allowed = np.ones(128, dtype=bool)
    if not before or not chord:
        return allowed
    previous = np.array(before)
    candidates = np.arange(128)
    came_from = previous[np.abs(previous[None, :] - candidates[:, None]).argmin(axis=1)]
    for low in chord:
        low_from = int(previous[np.abs(previous - low).argmin()])
        if low_from == low:
            continue  # a voice that does not move makes no parallels
        interval = came_from - low_from
        same_way = np.sign(candidates - came_from) == np.sign(low - low_from)
        parallel = ((interval > 0) & np.isin(interval % 12, (0, 7)) & ((candidates - low) % 12 == interval % 12)
                    & (candidates > low) & (candidates != came_from) & same_way)
        allowed &= ~parallel
    return allowed


def completes_without_parallels(before: list[int], present: list[int], candidates: np.ndarray) -> np.ndarray:
    """Which of `candidates` complete `present` (three notes) to a four-note chord moving from
    `before` (four notes) with no parallel fifth or octave between any two voices."""
    allowed = np.ones(128, dtype=bool)
    old = sorted(before)
    for candidate in candidates.tolist():
        new = sorted([*present, candidate])
        if new == old:
            continue
        for low in range(4):
            for high in range(low + 1, 4):
                first, second = old[high] - old[low], new[high] - new[low]
                moved = new[low] != old[low] and new[high] != old[high]
                same_way = (new[low] - old[low]) * (new[high] - old[high]) > 0
                if moved and same_way and first > 0 and first % 12 in (0, 7) and second % 12 == first % 12:
                    allowed[candidate] = False
    return allowed


def loops_across(history: list[int], candidates: np.ndarray, upcoming: list[int]) -> np.ndarray:
    """The candidate pitches that, as the last note before a copied passage, make a degenerate
    loop with it (one that the passage alone, or the notes before it alone, do not make)."""
    def looped(middle: int) -> bool:
        seq = np.array(history[-LOOP_WINDOW:] + [middle] + upcoming[:LOOP_WINDOW])
        return find_degenerate_loop(seq, np.full(len(seq), 0.5)) is not None

    if looped(-1):  # a loop that no note here can break (nor make): nothing to ban
        return candidates[:0]
    return np.array([p for p in candidates if looped(int(p))], dtype=np.int64)


def loop_completions(history: list[int]) -> set[int]:
    """Pitches that, played next, would complete a degenerate loop (see LOOP_REPEATS)."""
    banned = set()
    for length, repeats in LOOP_REPEATS.items():
        needed = length * repeats - 1
        if len(history) < needed:
            continue
        tail = history[-needed:]
        if all(tail[i] == tail[i + length] for i in range(needed - length)):
            banned.add(int(tail[-length]))
    return banned
