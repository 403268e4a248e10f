"""The compose form. Ranges are not repeated here: ml.generate.GenerationRequest validates them."""

from __future__ import annotations

from typing import Any

import pretty_midi
from django import forms

from compositions import engine

MAX_PRIMER_BYTES = 2 * 1024 * 1024

KEY_CHOICES = [("any", "Any key")] + [
    (name, name) for name in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
]
MODE_CHOICES = [("major", "Major"), ("minor", "Minor")]
DYNAMICS_CHOICES = [
    ("medium", "Medium"),
    ("soft", "Soft"),
    ("loud", "Loud"),
    ("crescendo", "Crescendo (getting louder)"),
    ("diminuendo", "Diminuendo (getting softer)"),
]
INSTRUMENT_CHOICES = [(program, pretty_midi.program_to_instrument_name(program)) for program in range(128)]


class CompositionForm(forms.Form):
    """What to compose. `generation_request` and `primer_midi` are set once the form is valid."""

    style = forms.ChoiceField(choices=())
    seconds = forms.FloatField(label="Length (seconds)", initial=30, widget=forms.NumberInput(attrs={"step": "any"}))
    tempo_bpm = forms.FloatField(
        label="Tempo (BPM)",
        required=False,
        help_text="Leave empty for the style's usual tempo.",
        widget=forms.NumberInput(attrs={"step": "any", "placeholder": "style default"}),
    )
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
        help_text="Optional, up to 2 MB: the piece continues from its end.",
        widget=forms.ClearableFileInput(attrs={"accept": ".mid,.midi,audio/midi"}),
    )

    ADVANCED_FIELDS = ("instrument", "dynamics", "timing_temperature", "top_k", "top_p", "primer")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["style"].choices = [(style, style.replace("_", " ").title()) for style in engine.available_styles()]
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
        if upload.size > MAX_PRIMER_BYTES:
            raise forms.ValidationError("The MIDI file is larger than 2 MB.")
        data = upload.read()
        try:
            self.primer_notes = engine.primer_from_midi(data)
        except ValueError as exc:  # ml.notes.MidiError says what is wrong in plain words
            raise forms.ValidationError(str(exc)) from exc
        return data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.fields["style"].choices:
            raise forms.ValidationError("No music model is available right now; please try again later.")
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
        return cleaned
