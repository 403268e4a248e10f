"""API tokens kept as SHA-256 digests instead of in the clear, each with a name and an expiry.

The keys people already have keep working: each is hashed into a row of the new table, with its
first characters as the row's prefix, exactly as compositions.auth hashes a key it is shown.
They get the lifetime of a new token (API_TOKEN_DAYS) from the day of the migration.

A new table replaces the old one (the primary key changes from the key to an id); going back
cannot recover the keys from their digests, so it leaves the old table empty and everyone signs
in again.
"""

import hashlib
from datetime import timedelta

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

PREFIX_LENGTH = 10  # ApiToken.PREFIX_LENGTH when this was written


def hash_the_keys(apps, schema_editor):
    Old = apps.get_model("compositions", "ApiToken")
    New = apps.get_model("compositions", "HashedApiToken")
    days = getattr(settings, "API_TOKEN_DAYS", 365)
    expires_at = timezone.now() + timedelta(days=days) if days else None
    New.objects.bulk_create(
        (
            New(
                user_id=old.user_id, name="API token", prefix=old.key[:PREFIX_LENGTH],
                digest=hashlib.sha256(old.key.encode()).hexdigest(),
                password_fingerprint=old.password_fingerprint, created=old.created, expires_at=expires_at,
            )
            for old in Old.objects.iterator()
        ),
        batch_size=500,
    )


class Migration(migrations.Migration):

    dependencies = [
        ("compositions", "0015_version_loudness_and_score"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="HashedApiToken",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("prefix", models.CharField(db_index=True, max_length=10)),
                ("digest", models.CharField(max_length=64, unique=True)),
                ("password_fingerprint", models.CharField(max_length=64)),
                # Not auto_now_add yet, so that the copied rows keep when they were made.
                ("created", models.DateTimeField()),
                ("expires_at", models.DateTimeField(blank=True, null=True)),
                ("last_used_at", models.DateTimeField(blank=True, null=True)),
                # No reverse accessor while the old model still holds `api_tokens`.
                ("user", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                           to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.RunPython(hash_the_keys, migrations.RunPython.noop),
        migrations.DeleteModel(name="ApiToken"),
        migrations.RenameModel(old_name="HashedApiToken", new_name="ApiToken"),
        migrations.AlterModelOptions(name="apitoken", options={"verbose_name": "API token"}),
        migrations.AlterField(
            model_name="apitoken", name="created", field=models.DateTimeField(auto_now_add=True),
        ),
        migrations.AlterField(
            model_name="apitoken",
            name="user",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="api_tokens",
                                    to=settings.AUTH_USER_MODEL),
        ),
    ]
