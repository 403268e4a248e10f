from django.db import migrations, models


class Migration(migrations.Migration):
    """Model files and uploaded data sets go into the site's storage (shared by every host)."""

    dependencies = [
        ("compositions", "0016_hashed_api_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="musicmodel",
            name="file",
            field=models.FileField(blank=True, upload_to="models/"),
        ),
        migrations.AlterField(
            model_name="musicmodel",
            name="path",
            field=models.CharField(
                blank=True, max_length=500,
                help_text="Path of the .keras file on the worker machines, where there is no stored file.",
            ),
        ),
        migrations.AddField(
            model_name="trainingdataset",
            name="archive",
            field=models.FileField(blank=True, upload_to="datasets/"),
        ),
    ]
