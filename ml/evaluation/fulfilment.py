"""What was asked, and what the piece did: one check per control the user set.

Every check is measured on the finished notes, from the music's side, with the evaluation's own
measures (never the constraint that meant to enforce it): a check can fail where a constraint
was on, and then the page says so plainly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ml.data.notes import (
    PITCH_CLASS_NAMES,
    NoteSequence,
    estimate_key_from_histogram,
    merge,
    pitch_class_histogram,
    spell_pitch_class,
)
from ml.evaluation.harmony import chord_follow_rate

METRE_ACCENT = 0.75  # share of bars whose first beat is among their two heaviest onsets
CHORDS_FOLLOWED = 0.9  # share of bars that read as their chord


@dataclass(frozen=True)
class Check:
    control: str  # "key", "metre", "form", "chords", "range", "length", "passage", "melody"
    asked: str
    did: str
    met: bool | None  # None: nothing to judge (a form is described, not judged)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key_name(key: tuple[int, str]) -> str:
    return f"{PITCH_CLASS_NAMES[key[0]]} {key[1]}"


def key_check(seq: NoteSequence, tonic: int, mode: str) -> Check:
    """Met when the key heard in the whole piece is the one asked for, or its relative with the
    asked tonic in the final bass (a minor piece closing on its tonic, heard as its relative major)."""
    asked = (tonic % 12, "minor" if mode in ("minor", "dorian") else "major")
    heard = estimate_key_from_histogram(pitch_class_histogram(seq.pitch, seq.duration + 1e-3))
    last = seq.start >= seq.start.max() - 1e-6
    final_bass = int(seq.pitch[last].min()) % 12
    relative = (asked[0] + (3 if asked[1] == "minor" else -3)) % 12
    met = heard == asked or (heard == (relative, "major" if asked[1] == "minor" else "minor")
                             and final_bass == asked[0])
    did = f"heard in {_key_name(heard)}, final bass {PITCH_CLASS_NAMES[final_bass]}"
    return Check("key", _key_name(asked), did, bool(met))


def accented_bars(seq: NoteSequence) -> float | None:
    """Share of bars whose first beat is among their two heaviest onsets (the weight of an onset:
    the beats its notes sound, at most a bar each); bars with a single onset are left out."""
    numerator, denominator = seq.time_signature
    bar = numerator * 4.0 / denominator
    onset = np.round((seq.seconds_to_beats(seq.start) + float(seq.bar_phase)) * 48) / 48
    length = np.minimum(seq.seconds_to_beats(seq.start + seq.duration) - seq.seconds_to_beats(seq.start), bar)
    index = np.floor(onset / bar + 1e-9).astype(np.int64)
    accented = counted = 0
    for b in np.unique(index):
        here = index == b
        positions = np.round(onset[here] - b * bar, 3)
        places = np.unique(positions)
        if len(places) < 2:
            continue
        weight = np.array([length[here][positions == place].sum() for place in places])
        second = np.sort(weight)[-2]
        counted += 1
        accented += bool(places[0] == 0.0 and weight[0] >= second - 1e-9)
    return accented / counted if counted else None


def metre_check(seq: NoteSequence) -> Check:
    numerator, denominator = seq.time_signature
    share = accented_bars(seq)
    asked = f"{numerator}/{denominator}"
    if share is None:
        return Check("metre", asked, "too few notes to hear an accent", None)
    return Check("metre", asked, f"beat 1 is among the two heaviest onsets in {share:.0%} of bars",
                 share >= METRE_ACCENT)


ENDINGS = {"perfect": "a perfect cadence (V-I)", "tonic": "on the tonic, not from V", "open": "open"}


def ending_check(seq: NoteSequence, tonic: int, ending: str, mode: str = "major") -> Check:
    """The close as heard: the lowest note sounding at the last onset, and the lowest at the onset
    before it. A perfect cadence is the tonic there after the dominant (in a single line, after a tone
    of the dominant chord: the second, fifth or leading note); an open ending is whatever the network
    wrote, so it is reported, not judged; a close on the tonic is met when it is not a perfect one."""
    start = np.round(seq.start.astype(np.float64), 4)
    end = start + seq.duration
    onsets = np.unique(start)
    lowest = [int(seq.pitch[(start == at) | ((start < at) & (end > at + 1e-4))].min()) for at in onsets[-2:]]
    final = (lowest[-1] - tonic) % 12
    before = (lowest[0] - tonic) % 12 if len(lowest) == 2 else None
    line = len(seq) < 1.5 * len(onsets)
    dominant = before in ((2, 7, 11) if line else (7,))
    degree = {0: "the tonic", 7: "the dominant", 5: "the subdominant"}
    def name(relative: int) -> str:
        return spell_pitch_class((tonic + relative) % 12, tonic, mode if mode in ("major", "minor") else "major")

    did = f"closes on {degree.get(final, f'{name(final)} (not the tonic)')}" + (
        f", after {degree.get(before, name(before))}" if before is not None else "")
    met = {"perfect": final == 0 and dominant, "tonic": final == 0 and not dominant}.get(ending)
    return Check("ending", ENDINGS.get(ending, ending), did, met)


def fulfilment(*, parts: list[NoteSequence], settings: dict[str, Any], form: dict[str, Any] | None,
               chord_spans: list[tuple[float, float, frozenset[int], int]] | None = None,
               requested_seconds: float | None = None, kept: tuple[str, bool] | None = None,
               melody_kept: tuple[int, int] | None = None, tonic: int | None = None,
               mode: str = "major") -> list[Check]:
    """The checks for what the user set: `settings` as the request stores them; `form` as the plan
    is stored (with bars); `chord_spans` (start s, end s, tones, root) of the requested chords;
    `kept`: (what was to be kept, whether every such note is); `melody_kept`: (notes of the melody
    found as the top voice, notes of the melody); `tonic` and `mode`: the key the piece was written in,
    to say whether the progression closes on its tonic and how the piece closes."""
    seq = parts[0]
    everything = merge(parts)
    checks: list[Check] = []
    if len(seq) == 0:
        return [Check("notes", "a piece", "no notes", False)]
    key = str(settings.get("key") or "any")
    if key != "any":
        from ml.data.notes import parse_key

        checks.append(key_check(everything, parse_key(key), str(settings.get("mode") or "major")))
    checks.append(metre_check(everything))
    if form and form.get("phrases"):
        phrases = form["phrases"]
        asked = str(settings.get("form") or "the style's form")
        sections = len({p.get("section", 0) for p in phrases})
        if sections > 1:  # a long piece: the form's letters are its sections
            named = "".join(str(p["letter"])[0] for i, p in enumerate(phrases)
                            if i == 0 or p.get("section", 0) != phrases[i - 1].get("section", 0))
            did = f"{named} in {sections} sections of {len(phrases)} phrases over {form.get('bars')} bars"
        else:
            named = "".join(str(p["letter"]) for p in phrases)
            did = "".join(p["letter"] + ("′" if p.get("varied") else "") for p in phrases) + \
                f" over {form.get('bars')} bars"
        met = None if not settings.get("form") else named.startswith(str(settings["form"]))
        checks.append(Check("form", asked, did, met))
    if settings.get("chords") and chord_spans:
        rate = chord_follow_rate(everything, chord_spans)
        if rate is not None:
            closes = tonic is None or chord_spans[-1][3] == tonic
            note = "" if closes else "; the progression does not end on the tonic, and the piece ends as it does"
            checks.append(Check("chords", str(settings["chords"]),
                                f"{rate:.0%} of bars read as the chord asked for{note}", rate >= CHORDS_FOLLOWED))
    ending = str(settings.get("ending") or "style")
    if ending != "style" and tonic is not None and not settings.get("chords"):
        checks.append(ending_check(everything, tonic, ending, mode))
    low, high = int(settings.get("pitch_low", 0)), int(settings.get("pitch_high", 127))
    outside = int(((seq.pitch < low) | (seq.pitch > high)).sum())
    checks.append(Check("range", f"{low}–{high}", "every note inside" if not outside else
                        f"{outside} notes outside", outside == 0))
    if requested_seconds and form and form.get("bars"):
        # A piece is whole phrases: it may end up to half a phrase from the length asked for.
        phrases = form.get("phrases") or []
        bar_beats = float(form.get("bar_beats", 4.0))
        phrase_beats = bar_beats * max((int(p.get("last_bar", 1)) - int(p.get("first_bar", 1)) + 1 for p in phrases),
                                       default=1)
        length = float((seq.start + seq.duration).max())
        checks.append(Check("length", f"{requested_seconds:g} s", f"{length:.1f} s",
                            abs(length - requested_seconds) <= phrase_beats * 60.0 / float(seq.tempo_bpm) / 2 + 1e-6))
    if kept is not None:
        checks.append(Check("passage", kept[0], "every other note kept exactly" if kept[1]
                            else "some notes outside the passage changed", kept[1]))
    if melody_kept is not None:
        found, total = melody_kept
        checks.append(Check("melody", f"{total} melody notes on top", f"{found} of {total}", found == total))
    return checks
