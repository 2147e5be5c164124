# AuditEntry moved to the audit app. Its table keeps its name (connections_auditentry) and
# its rows: connections forgets the model here, audit 0001 takes it up; no SQL runs.
# https://docs.djangoproject.com/en/5.2/ref/migration-operations/#separatedatabaseandstate

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("connections", "0015_record_search_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEntry")],
            database_operations=[],
        ),
    ]
