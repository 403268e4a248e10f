"""The reconciler runs every minute on the cluster's schedule."""

from __future__ import annotations

from typing import Any

from django.db import migrations

NAME = "Reconcile compositions"


def add_schedule(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={"func": "compositions.tasks.composition_reconcile", "schedule_type": "I", "minutes": 1,
                  "repeats": -1},
    )


def remove_schedule(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("compositions", "0003_reliability"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
