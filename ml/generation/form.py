"""The form of a piece, planned before any note: phrases of whole bars, with letters and cadences.

A plan such as AABB with 4-bar phrases says where every phrase starts and ends, which phrases
repeat an earlier one (the generator copies its notes, so a repeat is a real repeat), and where
the music must arrive at a cadence. The last phrase always closes on the tonic and its final
chord is held to the end of the piece. Only numpy-free Python: the site shows the plan too.
"""

from __future__ import annotations

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
    # Bar form: the Stollen (two phrases) twice, then the Abgesang.
    "chorale": ("ABABCD", 2),
    "fiddle": ("AABB", 4),
    "folk": ("AABA", 4),
    "renaissance": (THROUGH, 4),
    "string-quartet": ("ABA", 4),
}
DEFAULT_FORM = ("AABA", 4)
# Where in its last bar a phrase's cadence arrives (beats after the bar line), by style and metre;
# elsewhere on the downbeat. A chorale in 4/4 rests on beat 3, a quarter-note fermata before the
# next phrase's pickup: of the fermatas in the training chorales in 4/4, 895 fall on beat 3 and 314
# on beat 1; in 3/4, 187 of 224 fall on the downbeat.
STYLE_CADENCE_BEAT: dict[tuple[str, tuple[int, int]], float] = {("chorale", (4, 4)): 2.0}
# A style's phrase is counted in bars of about four beats (STYLE_FORMS), except where its pieces in a
# metre phrase otherwise: Bach's chorales in 3/4 put 12 beats between fermatas (54% of the 188 phrases
# of the training chorales in 3/4; 8 beats, two bars, in 48% of 1882 in 4/4): four bars, not two.
STYLE_METRE_PHRASE_BARS: dict[tuple[str, tuple[int, int]], int] = {("chorale", (3, 4)): 4}
MAX_PHRASES = 256  # 600 s of 2-bar phrases at a fast tempo is about 150
# A piece that would hear its form more than this many times over is planned in sections.
SECTIONS_AFTER = 2
# How far (a share of the length) whole phrases may take a piece from its length; the generator's
# tempo makes up the difference at the style's tempo.
LENGTH_GIVE = 0.2
# The most times a phrase is heard note for note (its first statement and two exact repeats).
VERBATIM = 3


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
        cadence_at: Beat of the cadence's arrival: in the phrase's last bar, on its downbeat or where
            the style closes its phrases (a chorale's beat 3).
        final: The last phrase: it closes on the tonic and holds its last chord to `end`.
        varied: Some of its bars were written again after the piece was made (regenerated).
        section: Index of its section (a long piece is planned in sections, one per letter of the
            form; a short one is one section).
        key: Semitones from the home tonic up to the tonic of its section's key (0: at home).
        ornamented: A return (its model phrase heard before other music came between, and no
            strain restated with it): only the notes on its strong beats are copied, and the
            network writes what lies between them anew, leading to each (a varied reprise).
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
    section: int = 0
    key: int = 0
    ornamented: bool = False

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
    # Whether the network is told of every phrase's cadence. A model learns what "the cadence is
    # n beats away" means from its training pieces: where they mark their phrase ends (a chorale's
    # fermatas) each phrase's close is signalled; where they mark only their end, so is the plan's,
    # since a phrase's cadence signalled there reads "the piece ends here" (held chords mid-piece).
    signalled: bool = True

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

    def next_signal(self, beat: float) -> float | None:
        """Beat of the next cadence the network is told of (see `signalled`), or None."""
        if self.signalled:
            return self.next_cadence(beat)
        last = self.phrases[-1]
        return last.cadence_at if last.cadence and last.cadence_at >= beat - 1e-9 else None

    def is_final(self, cadence_at: float | None) -> bool:
        """Whether a cadence (a beat from `next_cadence` or `next_signal`) is the one that ends the piece."""
        last = self.phrases[-1]
        return cadence_at is not None and last.cadence and abs(cadence_at - last.cadence_at) < 1e-9

    def to_dict(self) -> dict[str, Any]:
        """The plan as the site stores and shows it: the letters with each phrase's bars."""
        return {
            "form": self.form, "bars": self.bars, "bar_beats": self.bar_beats,
            "phrases": [{"letter": p.letter, "start": p.start, "end": p.end,
                         "first_bar": int(round(p.start / self.bar_beats)) + 1,
                         "last_bar": int(round(p.end / self.bar_beats)),
                         "repeat_of": p.copy_of,
                         "varied": p.varied or (p.copy_of is not None and (p.copy_until < p.bars or p.ornamented)),
                         "ornamented": p.ornamented,
                         "cadence": p.cadence, "cadence_at": p.cadence_at, "section": p.section,
                         "key": p.key} for p in self.phrases],
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
                              cadence_at=float(row.get("cadence_at", end - bar_beats)), final=i == len(rows) - 1,
                              varied=varied and copy_of is None, section=int(row.get("section", 0)),
                              key=int(row.get("key", 0)),
                              ornamented=bool(row.get("ornamented")) and copy_of is not None))
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


def style_phrase_bars(style: str, metre: tuple[int, int]) -> int:
    """Bars in a phrase of the style in `metre`: its phrase of bars of about four beats (twice the
    bars in 2/4 or 3/8, half in 4/2 or 3/2), or what its pieces in that metre do."""
    metre = (int(metre[0]), int(metre[1]))
    if (style, metre) in STYLE_METRE_PHRASE_BARS:
        return STYLE_METRE_PHRASE_BARS[(style, metre)]
    bars, bar_beats = style_form(style)[1], metre[0] * 4.0 / metre[1]
    return bars * 2 if bar_beats <= 2 else max(1, bars // 2) if bar_beats >= 6 else bars


def cadence_beat(style: str, metre: tuple[int, int]) -> float:
    """Beats after its last bar line where a phrase of the style closes (STYLE_CADENCE_BEAT)."""
    return STYLE_CADENCE_BEAT.get((style, (int(metre[0]), int(metre[1]))), 0.0)


def plan_form(form: str, *, phrase_bars: int, total_bars: int, bar_beats: float,
              cadences: str = "sections", ending_bars: int = 2, mode: str = "major",
              cadence_beat: float = 0.0) -> FormPlan:
    """Lay out `form` over about `total_bars` bars of `bar_beats` beats.

    Phrases are `phrase_bars` long, and the piece is a whole number of them (its length moves by at
    most half a phrase, or by a fifth of the piece: beyond that the phrases are shortened); a piece too
    short for its whole form at that length plays its first phrases. A form
    heard at most twice over the piece is played again (a fiddle tune's AABB, then AABB); a longer
    piece is planned in sections, one per letter of the form, each made of phrases whose themes
    follow the form's own pattern (section A of a long AABB piece is A1 A1 A2 A2 ...), a returning
    section repeats the first one's phrases, and a section between two statements of A stands in
    a related key (the dominant of a major key, the relative major of a minor one). No phrase is
    heard note for note more than `VERBATIM` times: a later return writes its second half anew, and
    a repeat that leads on to other music (AABB's second A) has a second ending, its last bar anew.
    A return after other music (AABA's last A, ABA's second A) is ornamented: its strong beats are
    its model's, what lies between them is written anew. An immediate repeat (AA) and a strain
    restated whole (ABAB's second AB, the chorale's repeated Stollen) are copied as they are.
    `cadences` is "every" (each phrase closes, as chorale phrases at their fermatas) or "sections"
    (phrases whose next phrase has another label, and the last). A last phrase that repeats an
    earlier one writes its last `ending_bars` anew: the close (a single line needs only its final
    bar; parts in voices need the dominant bar before it too). A phrase's cadence arrives
    `cadence_beat` beats into its last bar (the last phrase's on that bar's downbeat, to hold the
    final chord).
    """
    form = check_form(form)
    total_bars = max(1, int(total_bars))
    phrase_bars = max(1, int(phrase_bars))
    shape = form if form != THROUGH else ""
    labels: list[str]
    sections: list[int]
    keys: list[int]
    count = max(1, min(MAX_PHRASES, int(total_bars / phrase_bars + 0.5)))
    if abs(count * phrase_bars - total_bars) > LENGTH_GIVE * total_bars:
        # Whole phrases of the planned length would miss the length by more than a tempo can make
        # up (a 5-second piece is not a 4-bar phrase): the phrases are as long as the piece allows.
        phrase_bars = max(1, int(total_bars / count + 0.5))
    if form != THROUGH and count < len(shape):
        # Too short for the whole form at its phrase length: its first phrases (AABB's AAB).
        labels, sections, keys = list(shape[:count]), [0] * count, [0] * count
    else:
        labels, sections, keys = _layout(form, count, mode)
    lengths = [phrase_bars] * count
    arrive = cadence_beat if 0.0 <= cadence_beat < bar_beats else 0.0
    phrases: list[Phrase] = []
    first_of: dict[str, int] = {}
    heard: dict[int, int] = {}  # how often each first statement has been heard note for note
    start = 0.0
    for i, (label, bars) in enumerate(zip(labels, lengths)):
        final = i == len(labels) - 1
        end = start + bars * bar_beats
        source = first_of.get(label)
        copy_until = 0.0
        if source is not None and phrases[source].key == keys[i]:
            source_beats = phrases[source].end - phrases[source].start
            copy_until = min(source_beats, end - start)
            if heard.get(source, 1) >= VERBATIM:
                # Heard often enough as it was: this return keeps its first half and goes its own way.
                copy_until = min(copy_until, max(1, bars // 2) * bar_beats)
            if final:
                # The last phrase must close V-I: its ending is written anew.
                copy_until = min(copy_until, (bars - ending_bars) * bar_beats)
            elif i + 1 < len(labels) and labels[i + 1] != label and bars > 1:
                # A repeat that leads on to other music has a second ending: its last bar anew.
                copy_until = min(copy_until, (bars - 1) * bar_beats)
            if copy_until <= 0:
                source, copy_until = None, 0.0
            else:  # a return with a new ending counts as a hearing too: its ending may come out the same
                heard[source] = heard.get(source, 1) + 1
        else:
            source = None
            first_of.setdefault(label, i)
        next_label = labels[i + 1] if not final else None
        cadence = final or cadences == "every" or next_label != label
        # A return, not a repeat: neither straight after its model phrase, nor a strain restated
        # with the phrase before or after it (in the form as written: a chorale cut short after
        # ABA is singing its Stollen AB again).
        following = next_label if next_label is not None else (
            shape[i + 1] if len(labels) < len(shape) else None)
        ornamented = source is not None and labels[i - 1] != label and not (
            following is not None and source + 1 < i and labels[source + 1] == following) and not (
            source >= 1 and labels[source - 1] == labels[i - 1])
        phrases.append(Phrase(letter=label, start=start, end=end, copy_of=source, copy_until=copy_until,
                              cadence=cadence, cadence_at=end - bar_beats + (0.0 if final else arrive),
                              final=final, section=sections[i],
                              key=keys[i], ornamented=ornamented))
        start = end
    name = form if form == THROUGH else (shape if max(sections) > 0 else "".join(labels))
    return FormPlan(form=name, bar_beats=bar_beats, bars=int(round(start / bar_beats)), phrases=tuple(phrases))


def _layout(form: str, count: int, mode: str) -> tuple[list[str], list[int], list[int]]:
    """Each phrase's label, section and key (semitones above the home tonic) for `count` phrases."""
    if form == THROUGH:
        labels = [chr(ord("A") + i % 26) + (str(i // 26 + 1) if i >= 26 else "") for i in range(count)]
        return labels, [0] * count, [0] * count
    if count <= SECTIONS_AFTER * len(form):
        return [form[i % len(form)] for i in range(count)], [0] * count, [0] * count
    # In sections: one per letter of the form, the spare phrases to the last (a coda).
    size = count // len(form)
    sizes = [size] * len(form)
    sizes[-1] += count - size * len(form)
    distinct = list(dict.fromkeys(form))
    related = 7 if mode == "major" else 3
    labels, sections, keys = [], [], []
    for s, (letter, k) in enumerate(zip(form, sizes)):
        # A section between two statements of A is the contrast, in the related key.
        contrast = letter != form[0] and form[0] in form[:s] and form[0] in form[s + 1:]
        for j in range(k):
            cycle, place = divmod(j, len(form))
            theme = cycle * len(distinct) + distinct.index(form[place]) + 1
            labels.append(f"{letter}{theme}")
            sections.append(s)
            keys.append(related if contrast else 0)
    return labels, sections, keys
