"""A harmony for a piece nobody gave chords for, drawn from its style's chain.

The network reads the harmony of each half bar (`chords` in its config). Where a user gives a
progression it reads theirs, and the `chords` constraint makes the notes follow it. Where nobody
does, it would read nothing and choose the harmony note by note, and a line that reads only its
own notes wanders (the chromatic notes and plain rhythm of the chorales it writes alone). This
draws a harmony for the plan from the style's training pieces
(`ml.data.progressions.harmony_table`, stored in the model file's statistics) and gives it to the
network as input only: no rule makes a note follow it. A repeated phrase repeats its model's
harmony as far as its notes are copied; a section in another key has its harmony moved there.
"""

from __future__ import annotations

import numpy as np

from ml.data.progressions import START, context, near
from ml.generation.form import FormPlan

# A context seen fewer times than this backs off to a shorter one.
MIN_SEEN = 3


def modes_of(mode: str, key: int) -> str:
    """The mode whose table a section `key` semitones from home uses: the relative key changes mode."""
    if mode == "major" and key % 12 == 9:
        return "minor"
    if mode != "major" and key % 12 == 3:
        return "major"
    return "major" if mode == "major" else "minor"


def span_length(bar_beats: float) -> float:
    """As `ml.data.windows.harmony_span`: half bars in bars of four beats or more."""
    return bar_beats / 2 if bar_beats >= 4 - 1e-9 else bar_beats


def draw(table: dict[str, dict[str, int]], slot: int, cadence: str, before: list[int | str],
         rng: np.random.Generator) -> int | None:
    """The next harmony from the longest context seen often enough (None: the table has nothing)."""
    for back in (2, 1, 0):
        row = table.get(context(slot, cadence, before[len(before) - back:] if back else []))
        if row is None:
            continue
        counts = np.array(list(row.values()), dtype=np.float64)
        if counts.sum() < MIN_SEEN and back:
            continue
        return int(list(row)[int(rng.choice(len(counts), p=counts / counts.sum()))])
    return None


def rotate(harmony: int, semitones: int) -> int:
    semitones %= 12
    return ((harmony << semitones) | (harmony >> (12 - semitones))) & 0xFFF


def plan_harmony(tables: dict[str, dict[str, dict[str, int]]], plan: FormPlan, mode: str,
                 rng: np.random.Generator) -> list[tuple[float, float, np.ndarray]]:
    """(start, end, key-relative 12-vector) per span of the plan; empty without a table for the mode."""
    length = span_length(plan.bar_beats)
    count = int(round(plan.beats / length))
    cadences = [(p.cadence_at, p.final) for p in plan.phrases if p.cadence and (plan.signalled or p.final)]
    drawn: list[int] = []
    before: dict[str, list[int | str]] = {}
    for k in range(count):
        start = k * length
        phrase = next((p for p in plan.phrases if p.start - 1e-9 <= start < p.end - 1e-9), plan.phrases[-1])
        table = tables.get(modes_of(mode, phrase.key))
        if not table:
            return []
        copied = phrase.copy_of is not None and start < phrase.start + phrase.copy_until - 1e-9
        if copied:
            model = plan.phrases[phrase.copy_of or 0]
            index = int(round((model.start + start - phrase.start) / length))
            harm = drawn[index] if 0 <= index < len(drawn) else 0
        elif drawn and cadences and start > cadences[-1][0] + 1e-9:
            harm = drawn[-1]  # the last chord holds to the end
        else:
            coming = next(((at, final) for at, final in cadences if at >= start - 1e-9), None)
            distance = 2 if coming is None else int((coming[0] - start + 1e-9) // length)
            history = before.setdefault(str(phrase.key), [START, START])
            slot = int(bars_into(start, plan.bar_beats) > 1e-6)
            local = draw(table, slot, near(distance, bool(coming and coming[1])), history, rng)
            harm = rotate(local, phrase.key) if local is not None else 0
        local_harm = rotate(harm, -phrase.key)
        history = before.setdefault(str(phrase.key), [START, START])
        before[str(phrase.key)] = [history[-1], local_harm]
        drawn.append(harm)
    spans = []
    for k, harm in enumerate(drawn):
        vector = np.array([(harm >> pc) & 1 for pc in range(12)], np.float32)
        spans.append((k * length, (k + 1) * length, vector))
    return spans


def bars_into(beat: float, bar_beats: float) -> float:
    return beat - bar_beats * np.floor(beat / bar_beats + 1e-9)
