"""Forms. The compose form's fields come from ml.generation.request.CONTROLS; services check what is sent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pretty_midi
from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS
from django.forms.utils import ErrorDict

from compositions import runtime
from compositions.auth import login_locked_for
from ml.generation.request import CONTROLS, DEFAULTS, Control, style_label

PITCH_CHOICES = [(str(p), f"{pretty_midi.note_number_to_name(p)} ({p})") for p in range(128)]
# Shown in the empty form where the request's default is "none given".
SUGGESTED = {"seconds": 30}


class ThrottledAuthenticationForm(AuthenticationForm):
    """The login form; after too many failures it says so instead of "wrong password"."""

    def clean(self) -> dict[str, Any]:
        wait = login_locked_for(self.request, self.data.get("username"))
        if wait:
            raise forms.ValidationError(f"Too many failed sign-ins. Try again in {wait // 60 or 1} minutes.")
        return super().clean()


def _field(name: str, control: Control) -> forms.Field:
    """A form field that shows `control`; values arrive as strings and the service checks them."""
    initial = SUGGESTED.get(name, DEFAULTS[name])
    label = f"{control.label} ({control.unit})" if control.unit else control.label
    common: dict[str, Any] = {"label": label, "help_text": control.help, "required": False, "initial": initial}
    if control.kind == "style":
        return forms.ChoiceField(choices=(), **{**common, "required": True})
    if control.kind in ("choice", "time_signature"):
        choices = control.choices
        if control.nullable:  # a control whose default depends on the style
            choices = (("", control.none_label.capitalize()), *choices)
            common["initial"] = "" if initial is None else initial
        return forms.ChoiceField(choices=choices, **common)
    if control.kind == "pitch":
        return forms.ChoiceField(choices=PITCH_CHOICES, **common)
    if control.kind == "text":
        placeholder = {"placeholder": "C Am F G7, or I vi IV V7 in the key"} if name == "chords" else {}
        return forms.CharField(max_length=int(control.maximum or 0), widget=forms.TextInput(attrs=placeholder),
                               **common)
    if control.kind == "bool":
        # A checkbox sends nothing when unticked: the service would take the default (on), so the
        # form sends "false" explicitly through a select.
        return forms.ChoiceField(choices=(("true", "On"), ("false", "Off")), **{**common, "initial": "true"})
    attrs: dict[str, Any] = {"step": "any" if control.kind == "float" else "1"}
    if control.minimum is not None and not control.above_minimum:
        attrs["min"] = control.minimum
    if control.maximum is not None:
        attrs["max"] = control.maximum
    if control.nullable and name not in SUGGESTED:
        attrs["placeholder"] = control.none_label
    return forms.CharField(widget=forms.NumberInput(attrs=attrs), **common)


class CompositionForm(forms.Form):
    """What to compose: one field per control, and a MIDI file to continue.

    The form is not validated by Django: `request_params()` hands the raw values to
    services.composition_request, and `show_errors` puts its field errors back on the page.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, control in CONTROLS.items():
            self.fields[name] = _field(name, control)
        self.fields["primer"] = forms.FileField(
            required=False, label="Continue a MIDI file",
            help_text=f"Optional, up to {settings.PRIMER_MAX_BYTES / (1024 * 1024):g} MB: the piece continues "
                      "from its end.",
            widget=forms.ClearableFileInput(attrs={"accept": ".mid,.midi,audio/midi"}),
        )
        self.fields["harmonise"] = forms.BooleanField(
            required=False, label="Harmonise this melody instead of continuing it",
            help_text="The file's top line is kept note for note as the top voice; the model writes the voices "
                      "under it (chorale or string quartet suit it best).",
        )
        # Why composing is impossible right now (no model file, no SoundFont), shown above the form.
        styles, self.model_problem = runtime.composing_state()
        self.fields["style"].choices = [(style, style_label(style)) for style in styles]

    def basic_fields(self) -> list[forms.BoundField]:
        return [self[name] for name, control in CONTROLS.items() if not control.advanced]

    def advanced_fields(self) -> list[forms.BoundField]:
        return [self[name] for name, control in CONTROLS.items() if control.advanced] + [self["primer"],
                                                                                          self["harmonise"]]

    def request_params(self) -> dict[str, Any]:
        """The submitted controls as they came (strings); empty ones take the request's defaults."""
        params: dict[str, Any] = {name: self.data[name] for name in CONTROLS if name in self.data}
        if self.data.get("harmonise"):  # a ticked checkbox; unticked, it sends nothing
            params["harmonise"] = True
        return params

    def show_errors(self, errors: Mapping[str, list[str]]) -> None:
        """Show the service's field errors on their fields (unknown names above the form)."""
        self._errors = ErrorDict()
        self.cleaned_data: dict[str, Any] = {}
        for field, messages in errors.items():
            for message in messages:
                self.add_error(field if field in self.fields else NON_FIELD_ERRORS, message)


class ApiTokenForm(forms.Form):
    """A new API token's name: the device or program that will use it."""

    name = forms.CharField(max_length=100, label="Name", help_text="The device or program that will use it.",
                           widget=forms.TextInput(attrs={"placeholder": "Alice's phone"}))


class EmailForm(forms.Form):
    """The address password reset e-mails go to, confirmed with the password."""

    email = forms.EmailField(required=False, label="E-mail address",
                             help_text="Where a password reset link is sent. Leave it empty for none.")
    password = forms.CharField(strip=False, label="Your password", widget=forms.PasswordInput)


class AccountDeleteForm(forms.Form):
    """Deleting the account is confirmed with the password."""

    password = forms.CharField(strip=False, label="Your password", widget=forms.PasswordInput)
