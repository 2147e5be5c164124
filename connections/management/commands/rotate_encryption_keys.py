from django.core.management.base import BaseCommand
from django.db import connection as db_connection

from connections.crypto import encrypt, encrypted_fields, fernet


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of FIELD_ENCRYPTION_KEYS. "
        "Run after putting a new key first; then the old keys can be removed."
    )

    def handle(self, *args, **options):
        total = 0
        for model, fields in encrypted_fields():
            count = 0
            for field_name in fields:
                count += _rotate(model, model._meta.get_field(field_name).column)
            total += count
            self.stdout.write(
                f"{model._meta.label}: {count} values re-encrypted ({', '.join(fields)})"
            )
        self.stdout.write(self.style.SUCCESS(f"Done: {total} values."))


def _rotate(model, column: str) -> int:
    """Compare-and-set, value by value: UPDATE … SET col = new WHERE pk = … AND col = old.
    A disconnect or reconnect that changed the value meanwhile is never undone (the old
    ciphertext no longer matches, so the row is left as that change made it)."""
    ops = db_connection.ops
    table, col, pk = (
        ops.quote_name(model._meta.db_table),
        ops.quote_name(column),
        ops.quote_name(model._meta.pk.column),
    )
    with db_connection.cursor() as cursor:
        cursor.execute(f"SELECT {pk}, {col} FROM {table} WHERE {col} <> ''")  # noqa: S608
        rows = cursor.fetchall()
    rotated = 0
    for row_pk, old in rows:
        new = encrypt(fernet().decrypt(old.encode()).decode())
        with db_connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {col} = %s WHERE {pk} = %s AND {col} = %s",  # noqa: S608
                [new, row_pk, old],
            )
            rotated += cursor.rowcount
    return rotated
