"""The form of a piece, planned before any note: phrases of whole bars, with letters and cadences.

A plan such as AABB with 4-bar phrases says where every phrase starts and ends, which phrases
repeat an earlier one (the generator copies its notes, so a repeat is a real repeat), and where
the music must arrive at a cadence. The last phrase always closes on the tonic and its final
chord is held to the end of the piece. Only numpy-free Python: the site shows the plan too.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

THROUGH = "through"
FORMS = (THROUGH, "AABB", "AABA", "ABAC", "AB", "ABA", "AAB", "ABAB", "AA")
FORM_LABELS = {
    THROUGH: "Through-composed (no repeats)",
    "AABB": "AABB (two repeated strains, as a fiddle tune)",
    "AABA": "AABA (song form)",
    "ABAC": "ABAC",
    "AB": "AB (binary)",
    "ABA": "ABA (ternary)",
    "AAB": "AAB (bar form, as a chorale)",
    "ABAB": "ABAB",
    "AA": "AA (a strain and its repeat)",
}
# The style's usual form and phrase length in bars; styles a model was trained on elsewhere get
# the last entry.
STYLE_FORMS: dict[str, tuple[str, int]] = {
    "chorale": ("AAB", 2),
    "fiddle": ("AABB", 4),
    "folk": ("AABA", 4),
    "renaissance": (THROUGH, 4),
    "string-quartet": ("ABA", 4),
}
DEFAULT_FORM = ("AABA", 4)
MAX_PHRASES = 64


@dataclass(frozen=True)
class Phrase:
    """One phrase of the plan.

    Attributes:
        letter: Its letter in the form ("A"); phrases with one letter are the same music.
        start, end: Beats from the start of the piece, on bar lines.
        copy_of: Index of the earlier phrase whose notes this one repeats, or None.
        copy_until: Beats into the phrase up to which the notes are copied; the rest is written
            anew (a changed ending). Equal to the phrase's length for an exact repeat.
        cadence: The phrase ends on a cadence (its closing note falls on `cadence_at`).
        cadence_at: Beat of the cadence's arrival: the downbeat of the phrase's last bar.
        final: The last phrase: it closes on the tonic and holds its last chord to `end`.
        varied: Some of its bars were written again after the piece was made (regenerated).
    """

    letter: str
    start: float
    end: float
    copy_of: int | None
    copy_until: float
    cadence: bool
    cadence_at: float
    final: bool
    varied: bool = False

    @property
    def bars(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class FormPlan:
    form: str
    bar_beats: float
    bars: int
    phrases: tuple[Phrase, ...]

    @property
    def beats(self) -> float:
        return self.bars * self.bar_beats

    @property
    def letters(self) -> str:
        return "".join(p.letter for p in self.phrases)

    def phrase_at(self, beat: float) -> int:
        for i, phrase in enumerate(self.phrases):
            if beat < phrase.end - 1e-9:
                return i
        return len(self.phrases) - 1

    def next_cadence(self, beat: float) -> float | None:
        """Beat of the next cadence at or after `beat`, or None."""
        for phrase in self.phrases:
            if phrase.cadence and phrase.cadence_at >= beat - 1e-9:
                return phrase.cadence_at
        return None

    def to_dict(self) -> dict[str, Any]:
        """The plan as the site stores and shows it: the letters with each phrase's bars."""
        return {
            "form": self.form, "bars": self.bars, "bar_beats": self.bar_beats,
            "phrases": [{"letter": p.letter, "start": p.start, "end": p.end,
                         "first_bar": int(round(p.start / self.bar_beats)) + 1,
                         "last_bar": int(round(p.end / self.bar_beats)),
                         "repeat_of": p.copy_of,
                         "varied": p.varied or (p.copy_of is not None and p.copy_until < p.bars),
                         "cadence": p.cadence} for p in self.phrases],
        }


def plan_from_dict(data: dict[str, Any]) -> FormPlan:
    """A plan as `FormPlan.to_dict` stored it (copy lengths are not stored: a repeat counts as whole,
    a varied one as rewriting its last bar)."""
    bar_beats = float(data["bar_beats"])
    rows = data["phrases"]
    phrases = []
    for i, row in enumerate(rows):
        start, end = float(row["start"]), float(row["end"])
        copy_of = row.get("repeat_of")
        varied = bool(row.get("varied"))
        copy_until = 0.0 if copy_of is None else (end - start - (bar_beats if varied else 0.0))
        phrases.append(Phrase(letter=str(row["letter"]), start=start, end=end, copy_of=copy_of,
                              copy_until=max(0.0, copy_until), cadence=bool(row.get("cadence", True)),
                              cadence_at=end - bar_beats, final=i == len(rows) - 1,
                              varied=varied and copy_of is None))
    return FormPlan(form=str(data.get("form", "")), bar_beats=bar_beats, bars=int(data["bars"]), phrases=tuple(phrases))


def check_form(form: str) -> str:
    """The form in its canonical spelling; ValueError if it is not a plan of letters."""
    text = form.strip()
    if text.lower() in (THROUGH, "through-composed", "none", ""):
        return THROUGH
    text = text.upper().replace(" ", "")
    if not re.fullmatch(r"[A-H]{1,16}", text):
        raise ValueError(f"Form {form!r} is not a plan such as AABB, AABA or ABAC (letters A to H), "
                         "nor 'through'.")
    if text[0] != "A":
        raise ValueError("A form starts with its A phrase.")
    return text


def style_form(style: str) -> tuple[str, int]:
    return STYLE_FORMS.get(style, DEFAULT_FORM)


def plan_form(form: str, *, phrase_bars: int, total_bars: int, bar_beats: float,
              cadences: str = "sections", ending_bars: int = 2) -> FormPlan:
    """Lay out `form` over `total_bars` bars of `bar_beats` beats.

    Phrases are `phrase_bars` long; a form shorter than the piece is played again (a fiddle tune's
    AABB, then AABB), and a piece too short for the form at that length gets shorter phrases. Bars
    that do not divide evenly go to the last phrase, which then repeats its model with a new
    ending. `cadences` is "every" (each phrase closes, as chorale phrases at their fermatas) or
    "sections" (phrases whose next phrase has another letter, and the last). A last phrase that
    repeats an earlier one writes its last `ending_bars` anew: the close (a single line needs only
    its final bar; parts in voices need the dominant bar before it too).
    """
    form = check_form(form)
    total_bars = max(1, int(total_bars))
    letters = "A" * max(1, math.ceil(total_bars / max(1, phrase_bars))) if form == THROUGH else form
    if form == THROUGH:
        letters = "".join(chr(ord("A") + min(i, 25)) for i in range(len(letters)))
    phrase_bars = max(1, int(phrase_bars))
    if total_bars >= phrase_bars * len(letters):
        count = min(MAX_PHRASES, total_bars // phrase_bars)
        letters = (letters * math.ceil(count / len(letters)))[:count]
    else:
        phrase_bars = max(1, total_bars // len(letters))
        letters = letters[:max(1, min(len(letters), total_bars // phrase_bars))]
    lengths = [phrase_bars] * len(letters)
    spare = total_bars - sum(lengths)
    if len(letters) * phrase_bars > total_bars // 2 and spare < len(letters):
        for k in range(spare):  # a short piece: the last phrases get a bar more each
            lengths[len(letters) - 1 - k] += 1
    else:
        lengths[-1] += spare
    phrases: list[Phrase] = []
    first_of: dict[str, int] = {}
    start = 0.0
    for i, (letter, bars) in enumerate(zip(letters, lengths)):
        final = i == len(letters) - 1
        end = start + bars * bar_beats
        source = first_of.get(letter)
        copy_until = 0.0
        if source is not None:
            source_beats = phrases[source].end - phrases[source].start
            copy_until = min(source_beats, end - start)
            if final:
                # The last phrase must close V-I: its ending is written anew.
                copy_until = min(copy_until, (bars - ending_bars) * bar_beats)
            if copy_until <= 0:
                source, copy_until = None, 0.0
        else:
            first_of[letter] = i
        next_letter = letters[i + 1] if not final else None
        cadence = final or cadences == "every" or next_letter != letter
        phrases.append(Phrase(letter=letter, start=start, end=end, copy_of=source, copy_until=copy_until,
                              cadence=cadence, cadence_at=end - bar_beats, final=final))
        start = end
    return FormPlan(form=form, bar_beats=bar_beats, bars=total_bars, phrases=tuple(phrases))
