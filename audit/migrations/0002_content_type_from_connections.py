# The audit log's content type was connections' (connections | audit entry). Renaming that
# row keeps its permissions (view_auditentry, ...) and every user's and group's grant of
# them, so staff who read the audit log still do, now as audit.view_auditentry. Left
# alone, Django would make a new content type with new, ungranted permissions.

from django.db import migrations


def _relabel(apps, *, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    moved = ContentType.objects.filter(app_label=old, model="auditentry").first()
    # A fresh database has neither yet (post_migrate makes content types after migrating).
    if moved is None:
        return
    kept = ContentType.objects.filter(app_label=new, model="auditentry").first()
    if kept is None:
        moved.app_label = new
        moved.save(update_fields=["app_label"])
    else:
        # Both exist (a process made the new one before this ran): the grants move to the
        # new permissions, so nobody loses the audit log, and the old rows go.
        for old_permission in Permission.objects.filter(content_type=moved):
            new_permission, _ = Permission.objects.get_or_create(
                content_type=kept,
                codename=old_permission.codename,
                defaults={"name": old_permission.name},
            )
            new_permission.user_set.add(*old_permission.user_set.all())
            new_permission.group_set.add(*old_permission.group_set.all())
        moved.delete()
    ContentType.objects.clear_cache()


def forwards(apps, schema_editor):
    _relabel(apps, old="connections", new="audit")


def backwards(apps, schema_editor):
    _relabel(apps, old="audit", new="connections")


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards),
    ]
