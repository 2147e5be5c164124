from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="customer",
            name="members_can_connect",
            field=models.BooleanField(
                default=False,
                help_text="Let portal users with the member role connect a new WMS. Only "
                "owners reconnect and disconnect.",
            ),
        ),
    ]
