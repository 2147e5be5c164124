from django.core.management.base import BaseCommand
from django.db import transaction

from connections.crypto import encrypted_fields


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of FIELD_ENCRYPTION_KEYS. "
        "Run after putting a new key first; then the old keys can be removed."
    )

    def handle(self, *args, **options):
        total = 0
        for model, fields in encrypted_fields():
            count = 0
            # Loading decrypts with any key; saving encrypts with the first one.
            for obj in model._default_manager.only("pk", *fields).iterator(chunk_size=500):
                with transaction.atomic():
                    obj.save(update_fields=fields)
                count += 1
            total += count
            self.stdout.write(
                f"{model._meta.label}: {count} rows re-encrypted ({', '.join(fields)})"
            )
        self.stdout.write(self.style.SUCCESS(f"Done: {total} rows."))
