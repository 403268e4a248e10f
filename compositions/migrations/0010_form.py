from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("compositions", "0009_training_status_time")]

    operations = [
        migrations.AddField(
            model_name="composition",
            name="form_json",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
