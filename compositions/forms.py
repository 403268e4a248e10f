"""The compose form. Ranges are not repeated here: ml.generate.GenerationRequest validates them."""

from __future__ import annotations

from typing import Any

import pretty_midi
from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm

from compositions import engine
from compositions.auth import login_locked_for
from ml.notes import MODES

KEY_CHOICES = [("any", "Any key")] + [
    (name, name) for name in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
]
MODE_CHOICES = [(mode, mode.title()) for mode in MODES]
TIME_SIGNATURE_CHOICES = [(sig, sig) for sig in ("4/4", "3/4", "2/4", "6/8", "3/8", "2/2", "5/4", "7/8")]
DYNAMICS_CHOICES = [
    ("medium", "Medium"),
    ("soft", "Soft"),
    ("loud", "Loud"),
    ("crescendo", "Crescendo (getting louder)"),
    ("diminuendo", "Diminuendo (getting softer)"),
]
INSTRUMENT_CHOICES = [(program, pretty_midi.program_to_instrument_name(program)) for program in range(128)]


def pitch_label(pitch: int) -> str:
    """ "C4 (60)": the note name musicians read, and the MIDI number the API takes."""
    return f"{pretty_midi.note_number_to_name(pitch)} ({pitch})"


PITCH_CHOICES = [(pitch, pitch_label(pitch)) for pitch in range(128)]


class ThrottledAuthenticationForm(AuthenticationForm):
    """The login form; after too many failures it says so instead of "wrong password"."""

    def clean(self) -> dict[str, Any]:
        wait = login_locked_for(self.request, self.data.get("username"))
        if wait:
            raise forms.ValidationError(f"Too many failed sign-ins. Try again in {wait // 60 or 1} minutes.")
        return super().clean()


class CompositionForm(forms.Form):
    """What to compose. `generation_request` and `primer_midi` are set once the form is valid."""

    style = forms.ChoiceField(choices=())
    seconds = forms.FloatField(
        label="Length (seconds)",
        initial=30,
        required=False,
        help_text="Or give the length in notes instead.",
        widget=forms.NumberInput(attrs={"step": "any"}),
    )
    notes = forms.IntegerField(
        label="Length (notes)",
        required=False,
        help_text="8 to 4000; leave the seconds empty.",
        widget=forms.NumberInput(attrs={"placeholder": "instead of seconds"}),
    )
    tempo_bpm = forms.FloatField(
        label="Tempo (BPM)",
        required=False,
        help_text="Leave empty for the style's usual tempo.",
        widget=forms.NumberInput(attrs={"step": "any", "placeholder": "style default"}),
    )
    time_signature = forms.ChoiceField(choices=TIME_SIGNATURE_CHOICES, required=False, initial="4/4")
    key = forms.ChoiceField(choices=KEY_CHOICES, required=False, initial="any")
    mode = forms.ChoiceField(choices=MODE_CHOICES, required=False, initial="major")
    temperature = forms.FloatField(
        initial=1.0,
        required=False,
        help_text="Higher is more adventurous; up to 3.",
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )
    seed = forms.IntegerField(required=False, help_text="The same seed and settings give the same piece.")
    variations = forms.IntegerField(initial=1, required=False, help_text="1 to 4 pieces from one request.")
    pitch_low = forms.TypedChoiceField(
        choices=PITCH_CHOICES, coerce=int, required=False, initial=21, label="Lowest note"
    )
    pitch_high = forms.TypedChoiceField(
        choices=PITCH_CHOICES, coerce=int, required=False, initial=108, label="Highest note",
        help_text="At least an octave above the lowest note.",
    )
    instrument = forms.TypedChoiceField(choices=INSTRUMENT_CHOICES, coerce=int, required=False, initial=0)
    dynamics = forms.ChoiceField(choices=DYNAMICS_CHOICES, required=False, initial="medium")
    timing_temperature = forms.FloatField(
        initial=1.0, required=False, label="Rhythm temperature", widget=forms.NumberInput(attrs={"step": "0.05"})
    )
    top_k = forms.IntegerField(initial=0, required=False, label="Top-k", help_text="0 turns it off.")
    top_p = forms.FloatField(
        initial=1.0, required=False, label="Top-p", widget=forms.NumberInput(attrs={"step": "0.01"})
    )
    primer = forms.FileField(
        required=False,
        label="Continue a MIDI file",
        help_text="Optional: the piece continues from its end.",
        widget=forms.ClearableFileInput(attrs={"accept": ".mid,.midi,audio/midi"}),
    )

    ADVANCED_FIELDS = (
        "pitch_low", "pitch_high", "instrument", "dynamics", "timing_temperature", "top_k", "top_p", "primer",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Why composing is impossible right now (no model file), shown instead of "no such style".
        self.model_problem = ""
        try:
            styles = engine.model_styles()
        except engine.CompositionFailed as exc:
            styles, self.model_problem = [], exc.reason
        tools = engine.rendering_problems()
        if tools and not self.model_problem:
            self.model_problem = tools[0]
        self.fields["style"].choices = [(style, style.replace("_", " ").title()) for style in styles]
        limit_mb = settings.PRIMER_MAX_BYTES / (1024 * 1024)
        self.fields["primer"].help_text = f"Optional, up to {limit_mb:g} MB: the piece continues from its end."
        self.generation_request = None
        self.primer_midi: bytes | None = None
        self.primer_notes = None

    def basic_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name not in self.ADVANCED_FIELDS]

    def advanced_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.ADVANCED_FIELDS]

    def clean_primer(self) -> bytes | None:
        upload = self.cleaned_data.get("primer")
        if not upload:
            return None
        try:
            data, self.primer_notes = engine.primer_from_upload(upload)
        except ValueError as exc:  # ml.notes.MidiError says what is wrong in plain words
            raise forms.ValidationError(str(exc)) from exc
        return data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.model_problem:
            raise forms.ValidationError(f"{self.model_problem}; composing is not possible right now.")
        if self.errors:
            return cleaned
        # Empty optional fields fall back to GenerationRequest's defaults.
        params = {
            name: value
            for name, value in cleaned.items()
            if name in engine.REQUEST_FIELDS and value not in (None, "")
        }
        self.primer_midi = cleaned.get("primer")
        primer = self.primer_notes if self.primer_midi else None
        try:
            self.generation_request = engine.build_request(params, primer=primer)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc
        except engine.CompositionFailed as exc:
            raise forms.ValidationError(exc.reason) from exc
        return cleaned
