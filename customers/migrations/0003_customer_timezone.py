import customers.models
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0002_customer_members_can_connect"),
    ]

    operations = [
        migrations.AddField(
            model_name="customer",
            name="timezone",
            field=models.CharField(
                choices=customers.models.timezone_choices,
                default="UTC",
                help_text="Times in the portal are shown in this time zone.",
                max_length=64,
            ),
        ),
    ]
