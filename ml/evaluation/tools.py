"""How well the musician's tools do what they promise, measured on the music.

    python -m ml.evaluation.tools --chords --harmonise --out reports/tools.json

- Chords: per style, requests with a progression, read bar by bar (ml.evaluation.harmony) with
  the chord constraint on, off (what the network does given only the key the chords suggest),
  and without the chords at all (the chance rate of the same key and length). Single-line
  styles are read on their notes alone and with their accompaniment.
- Passages: bars 5-7 of held-out pieces of each style cut and filled, by the model choosing among
  candidates, and by a plain continuation that ignores what follows, beside the real bars.
- Harmonisation: held-out Bach chorales (the test split of the training corpus, after its
  deduplication), their soprano given as the melody; the result measured beside Bach's own
  harmonisation: parallels per 100 chord changes, voices inside their ranges, consonance of the
  melody on the beats (with the bass, and no second or seventh against another voice), key
  stability, and the bass at the melody's phrase ends (fermatas).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.notes import NoteSequence, estimate_key_from_histogram, merge, pitch_class_histogram
from ml.evaluation.form_metrics import key_stability, parallels_per_100
from ml.evaluation.harmony import chord_follow_rate

PROGRESSIONS = (("C", "C Am F G7"), ("D", "I vi IV V7"), ("G", "| I IV | V I | vi ii | V7 I |"),
                ("A", "Am Dm E7 Am"), ("F", "F Bb C7 F"), ("E", "i iv V i"))
# Standard SATB ranges (MIDI), as harmony textbooks give them: the measure's own, not the constraint's.
SATB = ((40, 62), (48, 67), (55, 74), (60, 81))
CONSONANT = {0, 3, 4, 7, 8, 9}  # intervals above the bass, in semitones mod 12 (a fourth is not)
SECONDS = {1, 2, 10, 11}  # seconds and sevenths: dissonant between any two voices


def chords_report(model: Path, styles: list[str], seeds: int, seconds: float,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    from ml.generation.generator import Generator
    from ml.generation.request import GenerationRequest

    generator = Generator(model)
    out: dict[str, Any] = {}
    for style in styles:
        rates: dict[str, list[float]] = {"on": [], "on_with_accompaniment": [], "off": [], "no_chords": []}
        for key, progression in PROGRESSIONS:
            mode = "minor" if progression.startswith(("i ", "Am")) else "major"
            asked = GenerationRequest(style=style, seconds=seconds, key=key, mode=mode, chords=progression,
                                      seed=7, variations=seeds)
            for setting, off, request in (("on", (), asked), ("off", ("chords",), asked),
                                          ("no_chords", (), GenerationRequest(
                                              style=style, seconds=seconds, key=key, mode=mode, seed=7,
                                              variations=seeds))):
                generator.off = frozenset(off)
                for piece in generator.generate(request):
                    assert piece.plan is not None
                    spb = 60.0 / piece.notes.tempo_bpm
                    spans = [(piece.plan_start + s.start * spb, piece.plan_start + s.end * spb, s.chord.tones,
                              s.chord.root) for s in generator.chord_spans(asked, piece.plan) or []]
                    rates[setting].append(chord_follow_rate(piece.notes, spans) or 0.0)
                    if setting == "on":
                        rates["on_with_accompaniment"].append(chord_follow_rate(merge(piece.parts), spans) or 0.0)
        out[style] = {name: round(float(np.mean(values)), 3) for name, values in rates.items()}
        log(f"chords {style}: {out[style]}")
    generator.off = frozenset()
    return out


def _onset_chords(seq: NoteSequence) -> list[tuple[float, list[int]]]:
    end = seq.start + seq.duration
    return [(float(at), sorted(int(p) for p in seq.pitch[(seq.start <= at + 1e-6) & (end > at + 1e-6)]))
            for at in np.unique(np.round(seq.start, 6))]


def harmony_measures(seq: NoteSequence, melody: NoteSequence, phrase_ends: list[float]) -> dict[str, float | None]:
    """The measures of a four-part harmonisation of `melody` (which it holds as its top line)."""
    beat = 60.0 / seq.tempo_bpm
    chords = _onset_chords(seq)
    full = [(at, c) for at, c in chords if len(c) == 4]
    in_range = [all(low <= p <= high for p, (low, high) in zip(c, SATB)) for _, c in full]
    on_beat = [(at, c) for at, c in chords if abs(at / beat - round(at / beat)) < 1e-3 and len(c) >= 2]
    # The melody note (the top) is consonant with the bass, and makes no second or seventh with any voice.
    consonant = [(c[-1] - c[0]) % 12 in CONSONANT and all((c[-1] - p) % 12 not in SECONDS for p in c[1:-1])
                 for _, c in on_beat]
    key = estimate_key_from_histogram(pitch_class_histogram(seq.pitch, seq.duration + 1e-3))
    cadence_bass = []
    for end in phrase_ends:
        here = [c for at, c in chords if abs(at - end) < 1e-3]
        if here:
            cadence_bass.append((here[0][0] - key[0]) % 12 in (0, 7))
    return {
        "parallels_per_100": parallels_per_100(seq),
        "in_range": float(np.mean(in_range)) if in_range else None,
        "consonant_on_beats": float(np.mean(consonant)) if consonant else None,
        "key_stability": key_stability(seq, key),
        "cadence_bass_i_or_v": float(np.mean(cadence_bass)) if cadence_bass else None,
        "four_part_share": len(full) / max(1, len(chords)),
    }


def harmonise_report(model: Path, cache_dir: Path, pieces: int, log: Callable[[str], None] = print,
                     seeds: int = 1) -> dict[str, Any]:
    """Bach's chorales and the model's harmonisations of their melodies, measured alike.

    Each melody is harmonised `seeds` times (seeds n, n + 100, ..., n its place in the test split),
    and the means are over all harmonisations ("pieces" counts them): with one harmonisation per
    melody, another seed moves the means of 20 chorales by several points.
    """
    from ml.data.datasets import load_corpus_cached
    from ml.generation.generator import Generator
    from ml.generation.harmonise import MelodyError, melody_line
    from ml.generation.request import GenerationRequest

    dataset, _ = load_corpus_cached(cache_dir, styles=["chorale"], max_pieces_per_style=1500)  # deduplicated
    test = [int(i) for i in dataset.indices("test", "chorale")][:pieces]
    generator = Generator(model)
    rows: dict[str, list[dict[str, float | None]]] = {"bach": [], "model": [], "model_voice_off": []}
    for n, i in enumerate(test):
        real = dataset.piece(i)
        melody = melody_line(real)
        ends = [float(e) - float(real.start[0]) for e in real.phrase_ends]
        rows["bach"].append(harmony_measures(real, melody, ends))
        for name, off in (("model", ()), ("model_voice_off", ("voice",))):
            generator.off = frozenset(off)
            for seed in range(n, n + 100 * seeds, 100):
                try:
                    piece = generator.harmonise(real, GenerationRequest(style="chorale", seed=seed))[0]
                except MelodyError as exc:
                    log(f"skip {dataset.piece_name[i]}: {exc}")
                    break
                offset = float(real.start[0])
                rows[name].append(harmony_measures(piece.notes, melody,
                                                   [e - offset + piece.plan_start for e in ends]))
        log(f"harmonised {n + 1}/{len(test)}")
    generator.off = frozenset()

    def mean(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return round(float(np.mean(kept)), 3) if kept else None

    return {name: {measure: mean([r[measure] for r in table]) for measure in (table[0] if table else {})}
            | {"pieces": len(table)} for name, table in rows.items()}


def _top_line(seq: NoteSequence) -> np.ndarray:
    """The highest pitch at each onset, in order."""
    start = np.round(seq.start, 4)
    return np.array([int(seq.pitch[start == at].max()) for at in np.unique(start)], dtype=np.int64)


def fill_measures(piece: NoteSequence, gap: tuple[float, float]) -> dict[str, float] | None:
    """Of a piece with a filled gap (start s, end s): the gap's own notes and both joins."""
    start, end = gap
    inside = (piece.start >= start - 1e-6) & (piece.start < end - 1e-6)
    before = piece.start < start - 1e-6
    after = piece.start >= end - 1e-6
    if not inside.any() or not before.any() or not after.any():
        return None

    def part(mask: np.ndarray) -> NoteSequence:
        return NoteSequence.from_notes(start=piece.start[mask], pitch=piece.pitch[mask], duration=piece.duration[mask],
                                       velocity=piece.velocity[mask], tempo_bpm=piece.tempo_bpm)

    gap_top, before_top, after_top = _top_line(part(inside)), _top_line(part(before)), _top_line(part(after))
    histogram = pitch_class_histogram(piece.pitch[inside], piece.duration[inside] + 1e-3)
    whole = pitch_class_histogram(piece.pitch, piece.duration + 1e-3)
    beats = (end - start) * piece.tempo_bpm / 60.0
    return {
        "notes_per_beat": float(inside.sum() / beats),
        "leap_in": float(abs(gap_top[0] - before_top[-1])),
        "leap_out": float(abs(after_top[0] - gap_top[-1])),
        "pitch_class_distance": float(np.abs(histogram / histogram.sum() - whole / whole.sum()).sum()),
        "in_key": float(estimate_key_from_histogram(histogram) == estimate_key_from_histogram(whole)),
        "mean_pitch": float(piece.pitch[inside].mean()),
    }


def fills_report(model: Path, cache_dir: Path, styles: list[str], pieces: int, candidates: int,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Bars 5-7 of held-out pieces cut and filled: by the model choosing among `candidates` by how
    well each leads into bar 8 on, by a plain continuation (one candidate, nothing chosen), and the
    real bars; each measured the same way (fill_measures), none by the likelihood that chose it."""
    from ml.data.datasets import load_corpus_cached
    from ml.data.notes import estimate_key
    from ml.generation.form import plan_form
    from ml.generation.generator import Generator
    from ml.generation.infill import Passage
    from ml.generation.request import GenerationRequest

    generator = Generator(model)
    out: dict[str, Any] = {}
    for style in styles:
        dataset, _ = load_corpus_cached(cache_dir, styles=[style], max_pieces_per_style=1500)
        rows: dict[str, list[dict[str, float]]] = {"real": [], "model": [], "continuation": []}
        for i in dataset.indices("test", style):
            if len(rows["real"]) >= pieces:
                break
            seq = dataset.piece(int(i))
            numerator, denominator = seq.time_signature
            bar_beats = numerator * 4.0 / denominator
            spb = 60.0 / seq.tempo_bpm
            if seq.bar_phase or seq.tempo_changes[1:] or float(seq.end_time) < 10 * bar_beats * spb:
                continue  # a pickup, a tempo change or fewer than 10 bars: bars would not line up
            bars = int(float(seq.end_time) / (bar_beats * spb))
            plan = plan_form("through", phrase_bars=4, total_bars=bars, bar_beats=bar_beats)
            passage = Passage(notes=seq, plan=plan, plan_start=0.0, key=estimate_key(seq), first_bar=5, last_bar=7)
            gap = (4 * bar_beats * spb, 7 * bar_beats * spb)
            real = fill_measures(seq, gap)
            if real is None:
                continue
            filled = {}
            for name, count in (("model", candidates), ("continuation", 1)):
                request = GenerationRequest(style=style, seed=int(i), variations=count)
                filled[name] = fill_measures(generator.regenerate(passage, request).notes, gap)
            if any(v is None for v in filled.values()):
                continue
            rows["real"].append(real)
            for name, value in filled.items():
                assert value is not None
                rows[name].append(value)
        out[style] = {name: {k: round(float(np.mean([r[k] for r in table])), 3) for k in (table[0] if table else {})}
                      for name, table in rows.items()}
        out[style]["pieces"] = len(rows["real"])
        log(f"fills {style}: {out[style]}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the chords, harmonisation and passage tools.")
    parser.add_argument("--model", type=Path, default=Path("ml/pretrained/default.keras"))
    parser.add_argument("--chords", action="store_true")
    parser.add_argument("--harmonise", action="store_true")
    parser.add_argument("--fills", action="store_true", help="cut bars 5-7 of held-out pieces and fill them")
    parser.add_argument("--candidates", type=int, default=4, help="candidates per fill")
    parser.add_argument("--styles", nargs="*", default=["chorale", "fiddle", "folk", "renaissance", "string-quartet"])
    parser.add_argument("--variations", type=int, default=2, help="pieces per progression and setting")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pieces", type=int, default=20, help="held-out chorales to harmonise")
    parser.add_argument("--harmonise-seeds", type=int, default=1,
                        help="harmonisations of each chorale (seeds n, n + 100, ...), averaged")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/cache"))
    parser.add_argument("--out", type=Path, default=Path("reports/tools.json"))
    args = parser.parse_args(argv)
    started = time.time()
    report: dict[str, Any] = {}
    if args.chords:
        report["chords"] = chords_report(args.model, args.styles, args.variations, args.seconds)
    if args.harmonise:
        report["harmonise"] = harmonise_report(args.model, args.cache_dir, args.pieces, seeds=args.harmonise_seeds)
    if args.fills:
        report["fills"] = fills_report(args.model, args.cache_dir, args.styles, args.pieces, args.candidates)
    report["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
