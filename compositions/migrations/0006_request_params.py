"""A composition's request moves from one column per control into one JSON field (`params`)."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

# The columns as 0002 left them, and how each value is written in GenerationRequest.to_dict().
MOVED = ("seconds", "notes", "tempo_bpm", "time_signature", "key", "mode", "pitch_low", "pitch_high",
         "temperature", "timing_temperature", "top_k", "top_p", "seed", "dynamics", "instrument", "variations")


def columns_to_params(apps: Any, schema_editor: Any) -> None:
    Composition = apps.get_model("compositions", "Composition")
    for row in Composition.objects.all().iterator():
        row.params = {"style": row.style, **{name: getattr(row, name) for name in MOVED}}
        row.save(update_fields=["params"])


def params_to_columns(apps: Any, schema_editor: Any) -> None:
    Composition = apps.get_model("compositions", "Composition")
    for row in Composition.objects.all().iterator():
        for name in MOVED:
            if name in row.params:
                setattr(row, name, row.params[name])
        row.save(update_fields=list(MOVED))


class Migration(migrations.Migration):
    dependencies = [("compositions", "0005_api_token")]

    operations = [
        migrations.AddField(model_name="composition", name="params", field=models.JSONField(default=dict)),
        migrations.RunPython(columns_to_params, params_to_columns),
        *[migrations.RemoveField(model_name="composition", name=name) for name in MOVED],
    ]
