"""The one definition of a request: every control's type, range and default, checked in one place."""

from __future__ import annotations

from typing import Any

import pytest

from ml.generation.request import CONTROLS, GenerationRequest, RequestError


def test_every_field_of_the_request_but_the_primer_is_a_control() -> None:
    assert set(CONTROLS) == set(GenerationRequest.__dataclass_fields__) - {"primer"}


@pytest.mark.parametrize(("text", "expected"), [("3/4", (3, 4)), (" 6 / 8 ", (6, 8)), ("12/8", (12, 8))])
def test_time_signatures_parse(text: str, expected: tuple[int, int]) -> None:
    assert GenerationRequest.from_dict({"style": "x", "time_signature": text}).time_signature == expected


@pytest.mark.parametrize("text", ["4", "4-4", "three/four", "3/4/4"])
def test_malformed_time_signatures_are_explained(text: str) -> None:
    with pytest.raises(RequestError, match="is not like 4/4, 3/4 or 6/8") as error:
        GenerationRequest.from_dict({"style": "x", "time_signature": text})
    assert list(error.value.errors) == ["time_signature"]


def test_a_request_survives_a_round_trip_through_json() -> None:
    request = GenerationRequest.from_dict({"style": "x", "notes": 64, "time_signature": "5/4", "pitch_low": "E2"})
    stored = request.to_dict()
    assert (stored["time_signature"], stored["notes"], stored["seconds"], stored["pitch_low"]) == ("5/4", 64, None, 40)
    assert GenerationRequest.from_dict(stored) == request


def test_form_strings_and_json_values_mean_the_same() -> None:
    strings = {"style": "x", "seconds": "12.5", "seed": "7", "top_k": "3", "instrument": "40", "key": "Db"}
    values = {"style": "x", "seconds": 12.5, "seed": 7, "top_k": 3, "instrument": 40, "key": "C#"}
    assert GenerationRequest.from_dict(strings) == GenerationRequest.from_dict(values)


def test_empty_values_take_the_defaults() -> None:
    request = GenerationRequest.from_dict({"style": "x", "seconds": "", "tempo_bpm": "", "seed": None, "key": " "})
    assert (request.seconds, request.tempo_bpm, request.seed, request.key) == (30.0, None, None, "any")


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"seconds": 1000}, "seconds", "Length must be between 5 and 600 seconds."),
        ({"seconds": "five"}, "seconds", "Length must be a number."),
        ({"notes": 5.5}, "notes", "Length must be a whole number."),
        ({"key": "H"}, "key", "Unknown key 'H'"),
        ({"mode": "lydian"}, "mode", "Unknown mode 'lydian'"),
        ({"instrument": 128}, "instrument", "Instrument must be a General MIDI program between 0 and 127."),
        ({"top_p": 1.5}, "top_p", "Top-p must be above 0 and at most 1."),
        ({"temperature": 0}, "temperature", "Temperature must be above 0 and at most 3."),
        ({"variations": 5}, "variations", "Variations must be between 1 and 4."),
        ({"seed": -1}, "seed", "Seed must be between 0 and 4294967295."),
        ({"seconds": 20, "notes": 100}, "notes", "Give the length either in seconds or in notes, not both."),
        ({"pitch_low": 60, "pitch_high": 64}, "pitch_high", "at least an octave"),
        ({"pitch_low": "Q9"}, "pitch_low", "neither a MIDI note number nor a note name"),
        ({"time_signature": "4/3"}, "time_signature", "must be like 4/4"),
        ({"dynamics": "shouty"}, "dynamics", "Unknown dynamics 'shouty'"),
        ({"loudness": 3}, "loudness", "There is no setting called 'loudness'."),
        ({"seconds": True}, "seconds", "Length must be a number."),
    ],
)
def test_each_bad_value_is_reported_on_its_own_field(data: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(RequestError) as error:
        GenerationRequest.from_dict({"style": "x", **data})
    assert list(error.value.errors) == [field]
    assert message in error.value.errors[field][0]


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(RequestError) as error:
        GenerationRequest.from_dict({"style": "x", "seconds": "long", "top_k": "many", "mode": "lydian"})
    assert set(error.value.errors) == {"seconds", "top_k", "mode"}


def test_the_settings_table_shows_values_as_musicians_read_them() -> None:
    assert CONTROLS["pitch_low"].display(60) == "C4 (60)"
    assert CONTROLS["instrument"].display(40) == "Violin"
    assert CONTROLS["tempo_bpm"].display(None) == "style default"
    assert CONTROLS["seed"].display(None) == "random"


def test_the_settings_table_names_a_style_as_a_title_does() -> None:
    assert CONTROLS["style"].display("string-quartet") == "String quartet"
    assert CONTROLS["instrument"].display(None) == "the style's own"
