"""Form at the length of the piece: what a listener hears of a 30-s, a 2-minute and a 10-minute piece.

Measured on the notes as written and on the plan the site names and draws, never on how the
generator laid the plan out (its copies and sections are not read):

- `most_heard`: how many times the most repeated phrase is heard note for note (the notes of a
  phrase span, relative to its start, compared as sets of onset, pitch and duration);
- `named_is_lane`: whether the form the page names is the one its lane draws (the letters of the
  phrases, or of the sections of a long piece, one per section);
- `phrase_bars`: the lengths of the phrases in bars; a phrase is as planned when its length in beats is
  within a quarter of the style's phrase (its bars of about four beats: 4 bars, 16 beats, for most;
  a chorale's phrase is what Bach writes between fermatas, 8 beats in 4/4 and 12 in 3/4);
- `leading_note`: in a piece in a minor key, whether the raised seventh (a semitone under the
  tonic) sounds in the bar before the final bar, where the closing cadence's dominant stands.

Command line (a few pieces per style and length, with the constraints on and with every one off):

    python -m ml.evaluation.long_form --seconds 30 120 600 --requests 2 --variations 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.notes import NoteSequence

DEFAULT_MODEL = Path("ml/pretrained/default.keras")
# Where a style's phrase is not about sixteen beats: Bach's chorales between fermatas, by metre (the
# commonest spacing in the corpus's chorales: 8 beats in 4/4, 12 in 3/4).
PHRASE_BEATS: dict[tuple[str, tuple[int, ...]], float] = {("chorale", (4, 4)): 8.0, ("chorale", (3, 4)): 12.0}


def _beats(seq: NoteSequence) -> tuple[np.ndarray, np.ndarray]:
    """Onsets and durations in beats from the piece's start."""
    spb = 60.0 / float(seq.tempo_bpm)
    return np.asarray(seq.start, float) / spb, np.asarray(seq.duration, float) / spb


def most_heard(seq: NoteSequence, form: dict[str, Any]) -> int:
    """How many times the most often repeated phrase of `form` (as `GeneratedPiece.form()` gives it,
    with `start`/`end` in beats from the plan's start) is heard note for note."""
    onset, duration = _beats(seq)
    start = float(form.get("plan_start_beats", 0.0))
    seen: Counter[tuple[float, tuple[tuple[float, int, float], ...]]] = Counter()
    for phrase in form["phrases"]:
        lo, hi = start + float(phrase["start"]), start + float(phrase["end"])
        inside = (onset >= lo - 1e-6) & (onset < hi - 1e-6)
        notes = tuple(sorted((round(float(o - lo), 3), int(p), round(float(min(d, hi - o)), 3))
                             for o, p, d in zip(onset[inside], np.asarray(seq.pitch)[inside], duration[inside])))
        if notes:
            seen[(round(hi - lo, 3), notes)] += 1
    return max(seen.values()) if seen else 0


def named_is_lane(form: dict[str, Any]) -> bool:
    """Whether the named form is what the lane draws: the phrases' letters in order, or (where the
    phrases are grouped in sections) the first letter of each section's phrases, one per section."""
    phrases = form["phrases"]
    sections: list[str] = []
    last = None
    for phrase in phrases:
        if phrase.get("section", 0) != last:
            sections.append(str(phrase["letter"])[0])
            last = phrase.get("section", 0)
    letters = "".join(str(p["letter"]) for p in phrases)
    name = str(form["form"])
    if name == "through":
        return len({p["letter"] for p in phrases}) == len(phrases)
    return name == ("".join(sections) if len(sections) > 1 else letters)


def phrase_bars(form: dict[str, Any]) -> list[float]:
    bar = float(form["bar_beats"])
    return [round((float(p["end"]) - float(p["start"])) / bar, 3) for p in form["phrases"]]


def leading_note(seq: NoteSequence, tonic: int, bar_beats: float, plan_start_beats: float = 0.0) -> bool:
    """Whether the raised seventh of the key (tonic - 1) sounds in the bar before the last bar."""
    onset, duration = _beats(seq)
    end = float((onset + duration).max())
    last_bar = plan_start_beats + np.floor((end - plan_start_beats) / bar_beats - 1e-6) * bar_beats
    lo, hi = last_bar - bar_beats, last_bar
    sounding = (onset < hi - 1e-6) & (onset + duration > lo + 1e-6)
    return bool(np.any((np.asarray(seq.pitch)[sounding] - tonic) % 12 == 11))


def measure(model: Path, styles: list[str], seconds: list[float], requests: int, variations: int,
            off: tuple[str, ...] = (), say: Any = print) -> dict[str, Any]:
    from ml.data.notes import parse_key
    from ml.generation.form import style_form
    from ml.generation.generator import Generator
    from ml.generation.request import GenerationRequest

    generator = Generator(model, off=off)
    report: dict[str, Any] = {}
    for style in styles:
        planned = style_form(style)[1]
        for length in seconds:
            rows: dict[str, Any] = {"most_heard": [], "named_is_lane": [], "phrase_bars": [], "phrase_beats": [],
                                    "planned_beats": [], "leading_note": []}
            for r in range(requests):
                # Every other request in a minor key: the leading note is measured there.
                key = "D" if r % 2 == 0 else "any"
                request = GenerationRequest(style=style, seconds=length, seed=1000 + r * variations,
                                            variations=variations, key=key,
                                            mode="minor" if key != "any" else "major")
                for piece in generator.generate(request):
                    form = piece.form() or {}
                    if not form:
                        continue
                    form["plan_start_beats"] = piece.plan_start / (60.0 / piece.notes.tempo_bpm)
                    rows["most_heard"].append(most_heard(piece.notes, form))
                    rows["named_is_lane"].append(named_is_lane(form))
                    rows["phrase_bars"].extend(phrase_bars(form))
                    rows["phrase_beats"].extend(b * float(form["bar_beats"]) for b in phrase_bars(form))
                    expected = PHRASE_BEATS.get((style, tuple(int(n) for n in piece.notes.time_signature)),
                                                planned * 4.0)
                    rows["planned_beats"].extend(expected for _ in phrase_bars(form))
                    if key != "any":
                        rows["leading_note"].append(leading_note(piece.notes, parse_key(key), float(form["bar_beats"]),
                                                                 form["plan_start_beats"]))
            beats_of = rows["phrase_beats"]
            report.setdefault(style, {})[f"{length:g}"] = {
                "pieces": len(rows["most_heard"]),
                "most_heard_max": max(rows["most_heard"] or [0]),
                "named_is_lane": float(np.mean(rows["named_is_lane"])) if rows["named_is_lane"] else None,
                # The style's phrase in beats (`planned` bars of about four beats, or PHRASE_BEATS): within
                # a quarter of it.
                "phrases_as_planned": float(np.mean([abs(b - e) <= e / 4 for b, e in zip(beats_of,
                                                                                    rows["planned_beats"])]))
                if beats_of else None,
                "planned_phrase_beats": sorted(set(rows["planned_beats"])),
                "leading_note_minor": float(np.mean(rows["leading_note"])) if rows["leading_note"] else None,
                "minor_pieces": len(rows["leading_note"]),
            }
            say(f"{style} {length:g} s: {report[style][f'{length:g}']}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Form at 30 s, 2 and 10 minutes: repeats, names, phrases, leading notes.")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--styles", nargs="*")
    parser.add_argument("--seconds", nargs="*", type=float, default=[30.0, 120.0, 600.0])
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--variations", type=int, default=2)
    parser.add_argument("--off", nargs="*", default=None,
                        help="constraints to switch off (default: measure with all on and with every one off)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from ml.evaluation.evaluate import every_constraint
    from ml.generation.generator import Generator

    styles = args.styles or Generator(args.model).styles
    started = time.time()
    sets: dict[str, tuple[str, ...]] = {"defaults": ()} if args.off is not None and not args.off else {}
    if args.off:
        sets = {"off: " + ",".join(args.off): tuple(args.off)}
    if args.off is None:
        sets = {"defaults": (), "every constraint off": every_constraint()}
    report: dict[str, Any] = {name: measure(args.model, styles, args.seconds, args.requests, args.variations, off)
              for name, off in sets.items()}
    report["seconds_taken"] = round(time.time() - started, 1)
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
