# The audit log's content type was connections' (connections | audit entry). Renaming that
# row keeps its permissions (view_auditentry, ...) and every user's and group's grant of
# them, so staff who read the audit log still do, now as audit.view_auditentry. Left
# alone, Django would make a new content type with new, ungranted permissions.

from django.db import migrations


def _relabel(apps, *, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    moved = ContentType.objects.filter(app_label=old, model="auditentry")
    # A fresh database has neither yet (post_migrate makes content types after migrating);
    # one that already has the new row keeps it, and remove_stale_contenttypes the old.
    if not ContentType.objects.filter(app_label=new, model="auditentry").exists():
        moved.update(app_label=new)
    ContentType.objects.clear_cache()


def forwards(apps, schema_editor):
    _relabel(apps, old="connections", new="audit")


def backwards(apps, schema_editor):
    _relabel(apps, old="audit", new="connections")


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
    ]
