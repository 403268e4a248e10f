"""What a user may ask the generator for: the one definition of every control.

`GenerationRequest` lists the controls once, each with its type, range, default, label and help
text (a `Control` in the field's metadata). The site builds its form, its API serializers, the
`compose` command's arguments and the settings table from `CONTROLS`; `from_dict` is the one
place where input from any of them is checked, and it reports every bad field by name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import pretty_midi

from ml.audio.arrangement import InstrumentError, parse_instruments, style_voices
from ml.data.notes import MODES, PITCH_CLASS_NAMES, NoteSequence, parse_key
from ml.generation.chords import ChordError, Progression, parse_progression
from ml.generation.form import FORM_LABELS, FORMS, check_form

DYNAMICS = ("soft", "medium", "loud", "crescendo", "diminuendo")
TIME_SIGNATURES = ("4/4", "3/4", "2/4", "6/8", "3/8", "2/2", "3/2", "4/2", "9/8", "12/8", "5/4", "7/8")
KEYS = ("any", *PITCH_CLASS_NAMES)
DENOMINATORS = (1, 2, 4, 8, 16, 32)

Kind = Literal["int", "float", "choice", "style", "time_signature", "pitch", "text", "bool"]


@dataclass(frozen=True)
class Control:
    """How one request field is presented and checked.

    Attributes:
        kind: "int", "float", "choice" (one of `choices`), "style" (one of the model's styles),
            "time_signature" ("3/4"), "pitch" (a MIDI note number, or a name such as "C4"), or "text"
            (free text of at most `maximum` characters, read by its own parser: chords).
        label: The field's name for people.
        help: One line of help.
        minimum, maximum: The allowed range of a number (inclusive, unless `above_minimum`).
        choices: (value, label) pairs for "choice" (and the usual values of "time_signature").
        nullable: None is a value ("style default", "random").
        advanced: Shown under "More options" on the form.
        cli: The command-line option, when it is not --<name with dashes>.
    """

    kind: Kind
    label: str
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False
    choices: tuple[tuple[str, str], ...] = ()
    nullable: bool = False
    advanced: bool = False
    cli: str = ""
    unit: str = ""  # "seconds": shown after the label on forms, and after the range in messages

    none_label: str = "default"

    def range_text(self) -> str:
        low, high = _number(self.minimum), _number(self.maximum)
        return f"above {low} and at most {high}" if self.above_minimum else f"between {low} and {high}"

    def display(self, value: Any) -> str:
        """The value as the settings table shows it."""
        if value is None:
            return self.none_label
        if self.kind == "bool":
            return "On" if value else "Off"
        if self.kind == "style":
            return style_label(str(value))
        if self.kind == "pitch":
            return f"{pretty_midi.note_number_to_name(int(value))} ({int(value)})"
        if self.choices and self.kind == "choice":
            return dict(self.choices).get(str(value), str(value))
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


def style_label(style: str) -> str:
    """A style's name as a title shows it: "String quartet", "Chorale"."""
    return style.replace("-", " ").replace("_", " ").capitalize()


def _number(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else f"{value:g}"


class RequestError(ValueError):
    """Some fields of a request are not valid; `errors` maps each field to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(" ".join(message for messages in errors.values() for message in messages))
        self.errors = errors


def _control(default: Any, **spec: Any) -> Any:
    return field(default=default, metadata={"control": Control(**spec)})


INSTRUMENTS = tuple((str(p), pretty_midi.program_to_instrument_name(p)) for p in range(128))


@dataclass(frozen=True)
class GenerationRequest:
    """What the user asked for. Validated when built; bad values raise RequestError (a ValueError)."""

    style: str = _control("", kind="style", label="Style", help="The kind of music to write.")
    seconds: float | None = _control(
        None, kind="float", label="Length", minimum=5, maximum=600, nullable=True, unit="seconds",
        help="5 to 600 seconds; or give the length in notes instead.")
    notes: int | None = _control(
        None, kind="int", label="Length", minimum=8, maximum=4000, nullable=True, unit="notes",
        help="8 to 4000 notes, instead of seconds.")
    tempo_bpm: float | None = _control(
        None, kind="float", label="Tempo", minimum=20, maximum=300, nullable=True, cli="--tempo", unit="BPM",
        none_label="style default",
        help="20 to 300 beats per minute; empty for the style's usual tempo.")
    time_signature: tuple[int, int] | None = _control(
        None, kind="time_signature", label="Time signature", choices=tuple((t, t) for t in TIME_SIGNATURES),
        nullable=True, none_label="style default",
        help="Beats per bar over the beat's note value, such as 3/4 or 6/8; empty for one of the style's own metres.")
    key: str = _control(
        "any", kind="choice", label="Key", choices=tuple((k, "Any key" if k == "any" else k) for k in KEYS),
        help="Notes outside this key's scale are made rarer, and in minor the leading note comes before "
             "cadences; with Any key, a key the style's pieces use, and the network's own notes.")
    mode: str = _control(
        "major", kind="choice", label="Mode", choices=tuple((m, m.title()) for m in MODES),
        help="Applies only with a key.")
    form: str | None = _control(
        None, kind="choice", label="Form", choices=tuple((f, FORM_LABELS[f]) for f in FORMS), nullable=True,
        none_label="style default",
        help="The plan of phrases: a repeated letter is the same music again; the last phrase closes on the tonic.")
    ending: str = _control(
        "style", kind="choice", label="Ending", advanced=True,
        choices=(("style", "Style default"), ("perfect", "Perfect cadence (V-I)"),
                 ("tonic", "On the tonic, not from V"), ("open", "Open (the network's own)")),
        help="How the piece closes: V-I with the leading note; on the tonic chord, approached otherwise (IV-I, "
             "a line's 3-1); or as the network ends it. By default one of these, drawn as often as the style's pieces "
             "in the mode close that way; a minor or dorian key you choose closes V-I with its leading note. "
             "Requested chords decide the close themselves.")
    phrase_bars: int | None = _control(
        None, kind="int", label="Phrase length", minimum=1, maximum=16, nullable=True, unit="bars",
        none_label="style default", advanced=True, help="Bars per phrase of the form, 1 to 16.")
    chords: str | None = _control(
        None, kind="text", label="Chords", maximum=400, nullable=True, none_label="none",
        help="One chord per bar, repeated: C Am F G7, or Roman numerals in the key: I vi IV V7. "
             "Two in a bar: | C G | Am F |. Per phrase: A: C F G C; B: Am Dm E Am.")
    accompany: bool = _control(
        True, kind="bool", label="Accompaniment", advanced=True,
        help="With chords, a bass and chords on their own track under a single melody (fiddle, folk).")
    # The sampling defaults: the network's own distribution, which a classifier found hardest to tell from
    # real music (`python -m ml.evaluation.discriminator --set temperature=1.0 top_p=1`; README).
    temperature: float = _control(
        1.0, kind="float", label="Temperature", minimum=0, maximum=3, above_minimum=True,
        help="Pitch sampling, 1 being the style's calibrated setting: higher is more adventurous; up to 3.")
    seed: int | None = _control(
        None, kind="int", label="Seed", minimum=0, maximum=2**32 - 1, nullable=True, none_label="random",
        help="The same seed and settings give the same piece.")
    variations: int = _control(1, kind="int", label="Variations", minimum=1, maximum=4,
                               help="1 to 4 pieces from one request.")
    pitch_low: int = _control(21, kind="pitch", label="Lowest note", minimum=0, maximum=127, advanced=True,
                              help="A MIDI note number or a name: 36 or C2.")
    pitch_high: int = _control(108, kind="pitch", label="Highest note", minimum=0, maximum=127, advanced=True,
                               help="At least an octave above the lowest note.")
    instrument: int | None = _control(
        None, kind="choice", label="Instrument", choices=INSTRUMENTS, advanced=True, nullable=True,
        none_label="the style's own",
        help="One General MIDI program (0 to 127) for every voice; empty for the style's own instruments "
             "(a choir for chorales, violins, viola and cello for quartets, a fiddle, a flute, recorders).")
    instruments: str | None = _control(
        None, kind="text", label="Instrument per voice", maximum=200, nullable=True, advanced=True,
        none_label="the style's own",
        help="From the top voice down, General MIDI names or numbers: Violin, Violin, Viola, Cello. "
             "One per voice of the style (four in chorales, quartets and Renaissance pieces, one in "
             "fiddle tunes and folk songs), or one for all. Takes the place of Instrument.")
    dynamics: str = _control(
        "medium", kind="choice", label="Dynamics", advanced=True,
        choices=(("medium", "Medium"), ("soft", "Soft"), ("loud", "Loud"),
                 ("crescendo", "Crescendo (getting louder)"), ("diminuendo", "Diminuendo (getting softer)")))
    timing_temperature: float = _control(
        1.0, kind="float", label="Rhythm temperature", minimum=0, maximum=3, above_minimum=True, advanced=True,
        help="Step and duration sampling, 1 being the style's calibrated setting; up to 3.")
    top_k: int = _control(0, kind="int", label="Top-k", minimum=0, maximum=128, advanced=True,
                          help="Sample among the k likeliest pitches; 0 turns it off.")
    top_p: float = _control(1.0, kind="float", label="Top-p", minimum=0, maximum=1, above_minimum=True,
                            advanced=True, help="Sample among the likeliest pitches that make up this share.")
    primer: NoteSequence | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.key, str):  # Db and C# are one key: keep one spelling
            try:
                object.__setattr__(self, "key", "any" if self.key.lower() == "any" else
                                   PITCH_CLASS_NAMES[parse_key(self.key)])
            except ValueError:
                pass  # reported below
        if isinstance(self.form, str):  # "aabb" and "AABB" are one form
            try:
                object.__setattr__(self, "form", check_form(self.form))
            except ValueError:
                pass  # reported below
        errors: dict[str, list[str]] = {}
        for name, control in CONTROLS.items():
            message = _check(name, control, getattr(self, name))
            if message:
                errors.setdefault(name, []).append(message)
        if not errors:
            if self.seconds is None and self.notes is None:
                object.__setattr__(self, "seconds", 30.0)
            if self.seconds is not None and self.notes is not None:
                errors["notes"] = ["Give the length either in seconds or in notes, not both."]
            if self.pitch_high - self.pitch_low < 12:
                errors["pitch_high"] = ["The pitch range must span at least an octave within 0..127."]
            if self.primer is not None and len(self.primer) == 0:
                errors["primer"] = ["The primer holds no notes."]
            if self.chords is not None:
                try:
                    _ = self.progression  # read now, so a bad symbol is reported with the request
                except ChordError as exc:
                    errors["chords"] = [str(exc)]
            if self.instruments is not None:
                message = _instruments_problem(self.instruments, self.style)
                if message:
                    errors["instruments"] = [message]
        if errors:
            raise RequestError(errors)

    @property
    def progression(self) -> Progression | None:
        """The chords asked for, read in the requested key (ChordError if they cannot be read)."""
        if self.chords is None:
            return None
        tonic = None if self.key == "any" else parse_key(self.key)
        return parse_progression(self.chords, tonic=tonic, mode=self.mode)

    @property
    def programs(self) -> tuple[int, ...] | None:
        """The instruments asked for per voice, from the top (None: one instrument, or the style's own)."""
        return None if self.instruments is None else parse_instruments(self.instruments)

    @property
    def metre(self) -> tuple[int, int]:
        """The time signature to write in: the one asked for, or the one `Generator.resolve` drew for
        the style (4/4 for a request no generator has resolved)."""
        return self.time_signature or (4, 4)

    @property
    def time_signature_text(self) -> str | None:
        """ "3/4", or None where the style's usual metre was asked for."""
        return None if self.time_signature is None else f"{self.time_signature[0]}/{self.time_signature[1]}"

    def to_dict(self) -> dict[str, Any]:
        """Every control, as JSON values (the time signature as "3/4"); the primer is not included."""
        data = {name: getattr(self, name) for name in CONTROLS}
        data["time_signature"] = self.time_signature_text
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, primer: NoteSequence | None = None) -> GenerationRequest:
        """Build a request from user input: strings from a form or a command line, or JSON values.

        Missing, empty and None values take the defaults. Raises RequestError naming each bad field,
        unknown fields included.
        """
        errors: dict[str, list[str]] = {}
        values: dict[str, Any] = {}
        for name, raw in data.items():
            control = CONTROLS.get(name)
            if control is None:
                errors.setdefault(name, []).append(f"There is no setting called {name!r}.")
                continue
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                if control.nullable:
                    values[name] = None
                continue
            try:
                values[name] = _coerce(control, raw)
            except ValueError as exc:
                errors.setdefault(name, []).append(str(exc))
        try:
            request = cls(**values, primer=primer)
        except RequestError as exc:  # the values that could be read may break a range too
            for name, messages in exc.errors.items():
                errors.setdefault(name, messages)
        if errors:
            raise RequestError(errors)
        return request


CONTROLS: dict[str, Control] = {
    f.name: f.metadata["control"] for f in fields(GenerationRequest) if "control" in f.metadata
}
# Each control's default as JSON writes it (the time signature as "4/4"), for forms and API clients.
DEFAULTS: dict[str, Any] = {
    f.name: f"{f.default[0]}/{f.default[1]}" if isinstance(f.default, tuple) else f.default
    for f in fields(GenerationRequest) if f.name in CONTROLS
}


def _instruments_problem(text: str, style: str) -> str:
    """Why an instrument list cannot serve `style`, or "" when it can."""
    try:
        programs = parse_instruments(text)
    except InstrumentError as exc:
        return str(exc)
    voices = style_voices(style)
    if voices is not None and len(programs) not in (1, voices):
        return (f"A {style.replace('-', ' ')} piece has {voices} voice{'s' if voices > 1 else ''}: "
                f"name {voices} instrument{'s' if voices > 1 else ''}, from the top voice down, or one for all.")
    return ""


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(name: str, control: Control, value: Any) -> str:
    """Why `value` is not allowed for `control`, or "" when it is."""
    if value is None:
        return "" if control.nullable else f"{control.label} is required."
    if control.kind == "style":
        return "" if isinstance(value, str) and value else "Choose a style."
    if control.kind == "text":
        if not isinstance(value, str):
            return f"{control.label} must be text."
        return "" if len(value) <= (control.maximum or 0) else \
            f"{control.label} may be at most {_number(control.maximum)} characters long."
    if control.kind == "bool":
        return "" if isinstance(value, bool) else f"{control.label} must be true or false."
    if control.kind == "time_signature":
        numerator, denominator = value if isinstance(value, tuple) and len(value) == 2 else (0, 0)
        if not (isinstance(numerator, int) and 1 <= numerator <= 32 and denominator in DENOMINATORS):
            return "Time signature must be like 4/4, 3/4 or 6/8."
        return ""
    if control.kind == "choice":
        allowed = [v for v, _ in control.choices]
        if str(value) not in allowed or (name == "instrument" and not isinstance(value, int)):
            if name == "instrument":
                return "Instrument must be a General MIDI program between 0 and 127."
            return f"Unknown {control.label.lower()} {value!r}: use one of {', '.join(allowed)}."
        return ""
    whole = control.kind in ("int", "pitch")
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        return f"{control.label} must be {'a whole number' if whole else 'a number'}."
    assert control.minimum is not None and control.maximum is not None
    low_ok = value > control.minimum if control.above_minimum else value >= control.minimum
    if not (_finite(value) and low_ok and value <= control.maximum):  # NaN and infinity are out of range
        unit = f" {control.unit}" if control.unit else ""
        return f"{control.label} must be {control.range_text()}{unit}."
    return ""


def _coerce(control: Control, raw: Any) -> Any:
    """Turn a form string or a JSON value into the control's type; ValueError says why not."""
    text = raw.strip() if isinstance(raw, str) else raw
    if control.kind == "text":
        if not isinstance(text, str):
            raise ValueError(f"{control.label} must be text.")
        return text
    if control.kind == "bool":
        if isinstance(text, bool):
            return text
        if isinstance(text, str) and text.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return text.lower() in ("true", "1", "yes", "on")
        raise ValueError(f"{control.label} must be true or false.")
    if control.kind == "time_signature":
        if isinstance(text, (list, tuple)) and len(text) == 2:
            return int(text[0]), int(text[1])
        match = re.fullmatch(r"(\d{1,2})\s*/\s*(\d{1,2})", str(text))
        if match is None:
            raise ValueError(f"Time signature {raw!r} is not like 4/4, 3/4 or 6/8.")
        return int(match.group(1)), int(match.group(2))
    if control.kind == "pitch" and isinstance(text, str) and not text.lstrip("-").isdigit():
        try:
            return int(pretty_midi.note_name_to_number(text))
        except ValueError:
            raise ValueError(f"{raw!r} is neither a MIDI note number nor a note name like C4.") from None
    if control.kind in ("int", "pitch") or (control.kind == "choice" and control.choices[0][0].isdigit()):
        if isinstance(text, bool):
            raise ValueError(f"{control.label} must be a whole number.")
        if isinstance(text, float) and text.is_integer():
            return int(text)
        if isinstance(text, int):
            return text
        if isinstance(text, str) and re.fullmatch(r"-?\d+", text):
            return int(text)
        raise ValueError(f"{control.label} must be a whole number.")
    if control.kind == "float":
        if isinstance(text, bool):
            raise ValueError(f"{control.label} must be a number.")
        try:
            return float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{control.label} must be a number.") from None
    if not isinstance(text, str):
        raise ValueError(f"{control.label} must be text.")
    return text
