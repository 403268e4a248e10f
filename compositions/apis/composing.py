"""Composing: the styles and controls, primer uploads, requesting a piece, following it, retrying, deleting."""

from __future__ import annotations

import uuid
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiRequest, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from compositions import runtime, selectors
from compositions.apis.exception_handlers import ErrorSerializer
from compositions.services.composing import (
    composition_cancel,
    composition_delete,
    composition_request,
    composition_retry,
    primer_upload,
)
from ml.generation.request import CONTROLS, DEFAULTS, Control


def _control_field(name: str, control: Control, *, output: bool) -> serializers.Field:
    """The schema of one control: its type, range and choices (enums), from ml.generation.request."""
    common: dict[str, Any] = {"help_text": control.help}
    if output:
        common["allow_null"] = control.nullable
    else:
        common.update(required=name == "style", allow_null=control.nullable)
    if control.kind == "choice" and name != "instrument":
        return serializers.ChoiceField(choices=[value for value, _ in control.choices], **common)
    if control.kind == "text":
        return serializers.CharField(max_length=int(control.maximum or 0), allow_blank=True, **common)
    if control.kind == "bool":
        return serializers.BooleanField(**common)
    if control.kind in ("style", "time_signature"):
        if control.kind == "time_signature":
            common["help_text"] += (" Null or absent: one of the style's metres (its time_signatures), drawn as "
                                    "often as its pieces use it.")
        return serializers.CharField(**common)
    bounds: dict[str, Any] = {"max_value": control.maximum}
    if control.minimum is not None and not control.above_minimum:
        bounds["min_value"] = control.minimum
    if control.kind == "float":
        return serializers.FloatField(**common, **bounds)
    if name == "instrument":
        bounds = {"min_value": 0, "max_value": 127}
    return serializers.IntegerField(**common, **bounds)


@extend_schema_field(OpenApiTypes.BINARY)
class MidiFileField(serializers.FileField):
    """A MIDI file, as a multipart part (binary in the schema: drf-spectacular would say uri, as for an answer)."""


def _midi_file(field: str) -> dict[str, dict[str, str]]:
    """The multipart encoding of a form field that carries a MIDI file."""
    return {field: {"contentType": "audio/midi"}}


# Built from the one definition of the controls; they document the API (the schema), while
# services.composing.composition_request checks what is sent.
CompositionRequestSerializer = type("CompositionRequestSerializer", (serializers.Serializer,), {
    **{name: _control_field(name, control, output=False) for name, control in CONTROLS.items()},
    "primer": MidiFileField(required=False, help_text="A MIDI file to continue (multipart only)"),
    "primer_id": serializers.UUIDField(required=False, help_text="Or the id of a file sent to primers/ before"),
    "harmonise": serializers.BooleanField(required=False, default=False,
                                          help_text="Harmonise the MIDI file's melody (its top line, kept as the "
                                                    "top voice) instead of continuing it"),
})
CompositionSettingsSerializer = type("CompositionSettingsSerializer", (serializers.Serializer,), {
    **{name: _control_field(name, control, output=True) for name, control in CONTROLS.items()},
    "continues_midi": serializers.BooleanField(),
})


class CompositionStatusSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    message = serializers.CharField()
    error = serializers.CharField()
    mp3_url = serializers.CharField(allow_null=True)
    midi_url = serializers.CharField(allow_null=True)


class PhraseSerializer(serializers.Serializer):
    letter = serializers.CharField(help_text="Phrases with one letter are the same music")
    start_s = serializers.FloatField()
    end_s = serializers.FloatField()
    first_bar = serializers.IntegerField()
    last_bar = serializers.IntegerField()
    repeat_of = serializers.IntegerField(allow_null=True, help_text="Index of the phrase this one repeats")
    varied = serializers.BooleanField(help_text="A repeat with an ending of its own, or ornamented")
    ornamented = serializers.BooleanField(
        required=False, help_text="A return whose strong beats are its model's and whose notes between them are new")
    cadence = serializers.BooleanField(help_text="The phrase closes on a cadence")
    section = serializers.IntegerField(required=False, help_text="Its section (a long piece is planned in sections)")
    key = serializers.IntegerField(required=False,
                                   help_text="Semitones from the home tonic to its section's tonic (0: at home)")


class FormSerializer(serializers.Serializer):
    form = serializers.CharField(required=False, help_text='The plan, e.g. "AABB", or "through"')
    bars = serializers.IntegerField(required=False)
    key = serializers.CharField(required=False, help_text='The key it was written in, e.g. "D minor"')
    time_signature = serializers.CharField(required=False, help_text='The metre it was written in, e.g. "4/2"')
    tempo_bpm = serializers.FloatField(required=False, help_text="The tempo it was written at")
    phrases = PhraseSerializer(many=True, required=False)


class ConstraintCheckSerializer(serializers.Serializer):
    control = serializers.CharField(help_text='The control the user set, e.g. "key", "chords", "passage"')
    asked = serializers.CharField(help_text="What was asked")
    did = serializers.CharField(help_text="What the piece did, measured on its notes")
    met = serializers.BooleanField(allow_null=True, help_text="Whether it was met (null: nothing to measure)")


class LoudnessSerializer(serializers.Serializer):
    integrated_lufs = serializers.FloatField(help_text="Integrated loudness of the MP3 (EBU R 128), LUFS")
    true_peak_dbtp = serializers.FloatField(help_text="Its true peak, dBTP")
    range_lu = serializers.FloatField(help_text="Its loudness range, LU")


class ScoreSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["ready", "pending", "none", "not written"],
                                    help_text="ready; pending (the piece is done, its score follows in a moment); "
                                              "none (see reason); not written (the piece is not done)")
    reason = serializers.CharField(help_text="Why the piece has no score (state none)")
    svg_url = serializers.CharField(allow_null=True, help_text="The engraved score (SVG), once ready")
    musicxml_url = serializers.CharField(allow_null=True, help_text="The score as MusicXML, once ready")
    bar_times = serializers.ListField(child=serializers.FloatField(),
                                      help_text="Seconds where each bar starts, to follow playback")


class CompositionDetailSerializer(CompositionStatusSerializer):
    version = serializers.IntegerField(help_text="The number of the current version, the one described here")
    versions_url = serializers.CharField(help_text="The piece's versions")
    model_name = serializers.CharField()
    duration_seconds = serializers.FloatField(allow_null=True)
    settings = CompositionSettingsSerializer()
    chords = serializers.ListField(
        child=serializers.ListField(), help_text="[start_seconds, chord name or null] at each chord change"
    )
    form = FormSerializer(help_text="The form the piece was written to, and its key; empty until it is done")
    constraints = ConstraintCheckSerializer(many=True, help_text="What was asked and what the piece did, one "
                                                                 "check per control; empty until it is done")
    loudness = LoudnessSerializer(allow_null=True, help_text="The MP3 as measured (ffmpeg ebur128); null until "
                                                             "it is done")
    score = ScoreSerializer(help_text="The piece as sheet music")


class StylesApi(APIView):
    """The active model's styles and every control's type, range and default: an app builds its form from this."""

    permission_classes = [AllowAny]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 401: ErrorSerializer, 503: ErrorSerializer})
    def get(self, request: Request) -> Response:
        generator = runtime.get_generator()
        styles = [{"name": style, "default_tempo": generator.default_tempo(style),
                   "default_time_signature": "/".join(str(n) for n in generator.style_metre(style)),
                   "time_signatures": ["/".join(str(n) for n in metre) for metre, _ in sorted(
                       generator.style_metres(style).items(), key=lambda item: -item[1])]}
                  for style in runtime.model_styles()]
        controls = {}
        for name, control in CONTROLS.items():
            controls[name] = {
                "kind": control.kind, "label": control.label, "help": control.help, "nullable": control.nullable,
                "default": DEFAULTS[name],
                "minimum": control.minimum, "maximum": control.maximum, "above_minimum": control.above_minimum,
                "choices": [{"value": value, "label": label} for value, label in control.choices] or None,
            }
        return Response({"styles": styles, "controls": controls})


class PrimerCreateApi(APIView):
    """Upload a MIDI file to continue later (`primer_id` in a composition request)."""

    parser_classes = [MultiPartParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "upload"

    class PrimerUploadSerializer(serializers.Serializer):
        file = MidiFileField(help_text="A MIDI file: its notes are what a piece will continue")

    class PrimerSerializer(serializers.Serializer):
        id = serializers.UUIDField(source="public_id")
        notes = serializers.IntegerField()
        seconds = serializers.FloatField()

    @extend_schema(
        request={"multipart/form-data": OpenApiRequest(PrimerUploadSerializer, encoding=_midi_file("file"))},
        responses={201: PrimerSerializer, 400: ErrorSerializer, 401: ErrorSerializer, 415: ErrorSerializer,
                   429: ErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        primer = primer_upload(user=request.user, upload=request.FILES.get("file"))
        return Response(self.PrimerSerializer(primer).data, status=status.HTTP_201_CREATED)


class CompositionCreateApi(APIView):
    """Request a piece, or up to 4 variations of one request."""

    # JSON, or multipart when a MIDI file to continue comes along as `primer`.
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "compose"

    class CreatedSerializer(serializers.Serializer):
        status_url = serializers.CharField()
        compositions = CompositionStatusSerializer(many=True)

    @extend_schema(
        request={
            "application/json": CompositionRequestSerializer,
            "multipart/form-data": OpenApiRequest(CompositionRequestSerializer, encoding=_midi_file("primer")),
            "application/x-www-form-urlencoded": CompositionRequestSerializer,
        },
        responses={202: CreatedSerializer, 400: ErrorSerializer, 401: ErrorSerializer, 415: ErrorSerializer,
                   429: ErrorSerializer, 503: ErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        params = {name: value for name, value in request.data.items() if name not in ("primer", "primer_id")}
        primer: Any = request.FILES.get("primer")
        if request.data.get("primer_id"):
            primer = selectors.primer_bytes(user=request.user, primer_id=str(request.data["primer_id"]))
        compositions = composition_request(user=request.user, params=params, primer=primer)
        status_url = reverse("api:composition-detail", args=[compositions[0].public_id])
        data = {
            "status_url": status_url,
            "compositions": [selectors.composition_status(composition=c, for_api=True) for c in compositions],
        }
        return Response(
            self.CreatedSerializer(data).data, status=status.HTTP_202_ACCEPTED, headers={"Location": status_url}
        )


class CompositionDetailApi(APIView):
    """One piece, yours or a public one: its current version's status, settings, harmony and file URLs."""

    permission_classes = [AllowAny]

    @extend_schema(responses={200: CompositionDetailSerializer, 401: ErrorSerializer, 404: ErrorSerializer})
    def get(self, request: Request, public_id: uuid.UUID) -> Response:
        composition = selectors.composition_get_for_viewer(user=request.user, public_id=public_id)
        return Response(CompositionDetailSerializer(selectors.composition_detail(composition=composition)).data)


class CompositionDeleteApi(APIView):
    """Delete one of your pieces and its files."""

    @extend_schema(responses={204: None, 401: ErrorSerializer, 404: ErrorSerializer})
    def delete(self, request: Request, public_id: uuid.UUID) -> Response:
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        composition_delete(composition=composition)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CompositionCancelApi(APIView):
    """Stop a piece of yours that is queued or being written: its worker drops it at its next progress
    write while it generates, or at its next heartbeat while it renders, and keeps no file of it."""

    @extend_schema(request=None, responses={200: CompositionStatusSerializer, 401: ErrorSerializer,
                                            404: ErrorSerializer, 409: ErrorSerializer})
    def post(self, request: Request, public_id: uuid.UUID) -> Response:
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        composition = composition_cancel(composition=composition)
        return Response(CompositionStatusSerializer(selectors.composition_status(composition=composition,
                                                                                 for_api=True)).data)


class CompositionRetryApi(APIView):
    """Queue a failed, cancelled or stalled piece of yours again."""

    @extend_schema(request=None, responses={202: CompositionStatusSerializer, 401: ErrorSerializer,
                                            404: ErrorSerializer, 409: ErrorSerializer, 429: ErrorSerializer})
    def post(self, request: Request, public_id: uuid.UUID) -> Response:
        composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
        composition = composition_retry(composition=composition)
        return Response(CompositionStatusSerializer(selectors.composition_status(composition=composition,
                                                                                 for_api=True)).data,
                        status=status.HTTP_202_ACCEPTED)
