"""pg_trgm indexes for the portal's contains-search on SKU and name (inventory) and on order
number and reference (orders). PostgreSQL only: on SQLite (the demo) the indexes are in
the migration state, so makemigrations stays quiet, but nothing is created.

Built CONCURRENTLY, so a table of a million rows keeps taking syncs while it is indexed
(hence atomic = False)."""

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations


class TrigramExtensionOnPostgres(TrigramExtension):
    # CreateExtension already does nothing outside PostgreSQL. Going back leaves pg_trgm
    # installed: something else in the database may use it.
    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass


class AddIndexOnPostgres(AddIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def _trigram(field, name):
    return django.contrib.postgres.indexes.GinIndex(
        django.contrib.postgres.indexes.OpClass(
            django.db.models.functions.text.Upper(field), name="gin_trgm_ops"
        ),
        name=name,
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("connections", "0014_link_token_actors_and_held_connections"),
    ]

    operations = [
        TrigramExtensionOnPostgres(),
        AddIndexOnPostgres(model_name="inventoryitem", index=_trigram("sku", "inventory_sku_trgm")),
        AddIndexOnPostgres(
            model_name="inventoryitem", index=_trigram("name", "inventory_name_trgm")
        ),
        AddIndexOnPostgres(model_name="order", index=_trigram("order_number", "order_number_trgm")),
        AddIndexOnPostgres(
            model_name="order", index=_trigram("reference_id", "order_reference_trgm")
        ),
    ]
