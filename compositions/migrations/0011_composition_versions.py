"""A piece's music moves into versions: CompositionVersion, and the piece's current version."""

import uuid

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("compositions", "0010_form")]

    operations = [
        migrations.CreateModel(
            name="CompositionVersion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("number", models.PositiveSmallIntegerField()),
                ("kind", models.CharField(choices=[("original", "Original"), ("continue", "Continued"),
                                                   ("regenerate", "Passage regenerated"), ("harmonise", "Harmonised")],
                                          default="original", max_length=16)),
                ("change", models.CharField(blank=True, max_length=200)),
                ("batch_id", models.UUIDField(db_index=True, default=uuid.uuid4, editable=False)),
                ("status", models.CharField(choices=[("pending", "Queued"), ("generating", "Generating"),
                                                     ("rendering", "Rendering"), ("done", "Done"),
                                                     ("failed", "Failed"), ("cancelled", "Cancelled")],
                                            db_index=True, default="pending", max_length=16)),
                ("progress", models.PositiveSmallIntegerField(default=0)),
                ("status_message", models.CharField(blank=True, max_length=200)),
                ("error", models.CharField(blank=True, max_length=300)),
                ("error_detail", models.TextField(blank=True)),
                ("claim", models.UUIDField(blank=True, editable=False, null=True)),
                ("claimed_by", models.CharField(blank=True, max_length=200)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("queue_count", models.PositiveSmallIntegerField(default=0)),
                ("queued_at", models.DateTimeField(blank=True, null=True)),
                ("params", models.JSONField(default=dict)),
                ("seed", models.PositiveBigIntegerField(blank=True, null=True)),
                ("primer_file", models.FileField(blank=True, upload_to="primers/")),
                ("model_name", models.CharField(blank=True, max_length=200)),
                ("model_path", models.CharField(blank=True, max_length=500)),
                ("midi_file", models.FileField(blank=True, upload_to="midi/")),
                ("mp3_file", models.FileField(blank=True, upload_to="mp3/")),
                ("duration_seconds", models.FloatField(blank=True, null=True)),
                ("notes_json", models.JSONField(blank=True, default=list)),
                ("primer_end", models.FloatField(blank=True, null=True)),
                ("chords_json", models.JSONField(blank=True, default=list)),
                ("form_json", models.JSONField(blank=True, default=dict)),
                ("detected_key", models.CharField(blank=True, max_length=16)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("composition", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                                  related_name="versions", to="compositions.composition")),
                ("source", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                             related_name="+", to="compositions.compositionversion")),
            ],
            options={"ordering": ["composition_id", "number"]},
        ),
        migrations.AddConstraint(
            model_name="compositionversion",
            constraint=models.UniqueConstraint(fields=("composition", "number"), name="one_version_per_number"),
        ),
        migrations.AddField(
            model_name="composition",
            name="current_version",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    related_name="+", to="compositions.compositionversion"),
        ),
    ]
