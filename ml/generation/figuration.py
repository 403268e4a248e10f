"""Passing notes: a voice that moves by a third from one beat to the next passes through the step between.

In a chorale, a voice that sings a quarter note and then a note a third away often fills the third
with a passing eighth (C-D-E where the chord moves from C to E): in the training chorales the bass
does in 84% of such moves, the tenor 71%, the alto 60% and the soprano 55%. The shipped model, with
the product's other defaults, fills 77%, 23%, 19% and 12% (12 chorales of 30 s): its inner voices
step by quarters. This puts the eighths in, after the notes are written, as an arranger adds
figuration to a plain harmonisation.

Voices are read as `ml.generation.voices.assign_voices` reads them. A candidate is a note of one beat
(a quarter) that starts on a beat and is followed in its voice, one beat later, by a note a minor or
major third away. It is split into two eighths, the second a tone of the key's scale a second from
both (in minor, the raised sixth or seventh going up, the lowered going down), at the rate that brings the
piece's filled share of its voice's thirds to the training pieces' share, unless the new eighth would
move in parallel fifths or octaves with another voice (into the next beat, or beside another passing
note) or sound a half step or a major seventh against a note another voice holds. Only in metres whose
beat is a quarter or a half note. The rates per style and voice are fitted on the training pieces and
stored in the model file (`extra["passing"]`):

    python -m ml.generation.figuration --model ml/pretrained/default.keras --write   # 16 s

The `passing` constraint (ml.generation.constraints.PassingNotes) applies it where the model file
has rates for the style; the share of filled thirds in the pieces it touches is then true by
construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ml.data.notes import NoteSequence, scale_pitch_classes
from ml.generation.voices import VOICE_RANGES, assign_voices

THIRDS = (3, 4)  # semitones: a minor or a major third
EPS = 1e-6
SOFTER = 6  # a passing eighth falls off the beat: this much softer than the note it follows (0..127)


def _beats(seq: NoteSequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onset and length in beats (to 1/48), and the place in the bar, of every note."""
    onset = np.round(seq.seconds_to_beats(seq.start) * 48) / 48
    _, duration = seq.to_beats()
    in_bar = seq.bar_positions()[0]
    return onset, np.round(np.asarray(duration, np.float64) * 48) / 48, in_bar


def _near(a: float, b: float) -> bool:
    return abs(a - b) < EPS


def thirds(seq: NoteSequence, voices: int, ranges: tuple[tuple[int, int], ...] | None = None
           ) -> tuple[list[tuple[int, int, int]], np.ndarray, np.ndarray]:
    """The open thirds of a piece (voice, note, the voice's next note: a quarter on a beat, then a
    third one beat later), and per voice how many of its beat-to-beat thirds are open and how many
    are already filled (two eighths through a note between)."""
    return _thirds(*_beats(seq), assign_voices(seq, voices, ranges), seq.pitch.astype(np.int64), voices)


def _thirds(onset: np.ndarray, duration: np.ndarray, in_bar: np.ndarray, voice: np.ndarray, pitch: np.ndarray,
            voices: int) -> tuple[list[tuple[int, int, int]], np.ndarray, np.ndarray]:
    """`thirds`, from the notes' beats (`_beats`), voices and pitches."""
    open_ = np.zeros(voices, np.int64)
    filled = np.zeros(voices, np.int64)
    found: list[tuple[int, int, int]] = []
    for v in range(voices):
        line = np.flatnonzero(voice == v)
        line = line[np.argsort(onset[line], kind="stable")]
        for k in range(len(line) - 1):
            i, j = int(line[k]), int(line[k + 1])
            if not _near(in_bar[i], round(float(in_bar[i]))):
                continue
            # The voice's only note at its onset (sorted: a doubled one would be the note before).
            alone = k == 0 or onset[line[k - 1]] != onset[i]
            if (_near(duration[i], 1) and _near(onset[j] - onset[i], 1) and abs(pitch[j] - pitch[i]) in THIRDS
                    and alone):
                open_[v] += 1
                found.append((v, i, j))
            elif k + 2 < len(line):
                n = int(line[k + 2])
                if (_near(duration[i], 0.5) and _near(onset[j] - onset[i], 0.5) and _near(duration[j], 0.5)
                        and _near(onset[n] - onset[i], 1) and abs(pitch[n] - pitch[i]) in THIRDS
                        and min(pitch[i], pitch[n]) < pitch[j] < max(pitch[i], pitch[n])):
                    filled[v] += 1
    return found, open_, filled


def fill_rates(pieces: Iterable[NoteSequence], voices: int, ranges: tuple[tuple[int, int], ...] | None = None
               ) -> list[float]:
    """Per voice (from the lowest), the share of beat-to-beat thirds that pieces fill with a passing eighth."""
    open_ = np.zeros(voices, np.int64)
    filled = np.zeros(voices, np.int64)
    for seq in pieces:
        _, o, f = thirds(seq, voices, ranges)
        open_ += o
        filled += f
    return [round(float(f / (o + f)), 3) if o + f else 0.0 for o, f in zip(open_, filled)]


def _parallel(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Two voices moving (from, to) the same way into a fifth or an octave from a fifth or an octave."""
    (a0, a1), (b0, b1) = a, b
    return (a1 - a0) * (b1 - b0) > 0 and abs(a0 - b0) % 12 in (0, 7) and abs(a1 - b1) % 12 in (0, 7)


def passing_notes(seq: NoteSequence, tonic: int, mode: str, rates: Sequence[float], rng: np.random.Generator, *,
                  ranges: tuple[tuple[int, int], ...] | None = None, within: tuple[float, float] | None = None
                  ) -> NoteSequence:
    """`seq` with passing eighths in the open thirds of its voices (one voice per rate), so that each
    voice fills about its rate of them; `within` (seconds) limits the notes split to that stretch."""
    if len(seq) == 0 or seq.time_signature[1] not in (2, 4) or not rates:
        return seq
    voices = len(rates)
    onset, duration, in_bar = _beats(seq)
    voice = assign_voices(seq, voices, ranges)
    pitch = seq.pitch.astype(np.int64)
    found, open_, filled = _thirds(onset, duration, in_bar, voice, pitch, voices)
    have = filled / np.maximum(open_ + filled, 1)
    # The chance to fill an open third that brings the voice's share to its rate.
    chance = np.clip((np.asarray(rates, np.float64) - have) / np.maximum(1 - have, EPS), 0, 1)
    start = np.asarray(seq.start, np.float64)
    length = np.asarray(seq.duration, np.float64).copy()
    velocity = np.asarray(seq.velocity, np.int64)
    scale = scale_pitch_classes(tonic, mode)
    added: list[tuple[float, int, float, int]] = []
    by_beat: dict[float, list[tuple[int, int, int]]] = {}
    for v, i, j in found:
        if within is None or within[0] - EPS <= start[i] < within[1] - EPS:
            by_beat.setdefault(float(onset[i]), []).append((v, i, j))

    def sounding(beat: float) -> dict[int, int]:
        on = (onset <= beat + EPS) & (onset + duration > beat + EPS)
        return {int(voice[i]): int(pitch[i]) for i in np.flatnonzero(on)}

    for beat, moves in sorted(by_beat.items()):
        order = rng.permutation(len(moves))
        passing: dict[int, tuple[int, int]] = {}  # voice -> (from, passing note) at beat + 1/2
        held, after = sounding(beat), sounding(beat + 1)
        for k in order:
            v, i, j = moves[k]
            if rng.random() >= chance[v]:
                continue
            a, c = int(pitch[i]), int(pitch[j])
            # The third split into two seconds, through a note of the key.
            between = [x for x in range(min(a, c) + 1, max(a, c))
                       if x % 12 in scale and abs(x - a) <= 2 and abs(c - x) <= 2]
            if not between:
                continue
            x = between[-1] if c > a else between[0]
            if any(_parallel((a, x), motion) for motion in passing.values()):
                continue
            # Nor a half step (or a major seventh) against a note another voice holds through it.
            if any(abs(x - p) % 12 in (1, 11) for w, p in held.items() if w != v and w not in passing):
                continue
            if any(_parallel((x, c), (passing.get(w, (p, p))[1], after[w]))
                   for w, p in held.items() if w != v and w in after):
                continue
            passing[v] = (a, x)
            half = length[i] / 2
            length[i] = half
            added.append((float(start[i] + half), x, half, max(1, int(velocity[i]) - SOFTER)))
    if not added:
        return seq
    new_start, new_pitch, new_length, new_velocity = (np.array(column) for column in zip(*added))
    return NoteSequence.from_notes(np.concatenate([start, new_start]), np.concatenate([pitch, new_pitch]),
                                   np.concatenate([length, new_length]),
                                   np.concatenate([velocity, new_velocity]), **seq.meta())


def fit(pieces_by_style: dict[str, list[NoteSequence]]) -> dict[str, list[float]]:
    """Per style with voices (`VOICE_RANGES`), the fill rate of each voice in its pieces."""
    return {style: fill_rates(pieces, len(VOICE_RANGES[style]), VOICE_RANGES[style])
            for style, pieces in pieces_by_style.items() if style in VOICE_RANGES}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    from pathlib import Path

    from ml.data.datasets import NoteDataset
    from ml.model.config import read_model_info, write_model_extra

    parser = argparse.ArgumentParser(description="Fit the passing constraint's rates on the training pieces.")
    parser.add_argument("--model", type=Path, default=Path("ml/pretrained/default.keras"))
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus-1500.npz"))
    parser.add_argument("--write", action="store_true", help="store the rates in the model file")
    args = parser.parse_args(argv)
    dataset = NoteDataset.load(args.dataset)
    info: dict[str, Any] = read_model_info(args.model)
    styles = [s for s in dataset.styles if s in info["config"].styles and s in VOICE_RANGES]
    rates = fit({s: [dataset.piece(int(i)) for i in dataset.indices("train", s)] for s in styles})
    print(json.dumps(rates))
    if args.write:
        write_model_extra(args.model, "passing", rates)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
