"""The audit log is its own app, on the table connections made: the migration state matches
the models, and staff who could read the log before the move still can."""

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command

from audit.models import AuditEntry
from tests.builders import make_user

moved = importlib.import_module("audit.migrations.0002_content_type_from_connections")


@pytest.mark.django_db
def test_the_migrations_match_the_models():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_the_log_keeps_the_table_connections_made():
    assert AuditEntry._meta.app_label == "audit"
    assert AuditEntry._meta.db_table == "connections_auditentry"


@pytest.fixture
def content_types():
    ContentType.objects.clear_cache()
    yield
    ContentType.objects.clear_cache()


def test_a_group_that_read_the_log_as_connections_reads_it_as_audit(db, content_types):
    # The database as it was before the move: the log's content type was connections'.
    ContentType.objects.filter(app_label="audit", model="auditentry").delete()
    old = ContentType.objects.create(app_label="connections", model="auditentry")
    view = Permission.objects.create(
        content_type=old, codename="view_auditentry", name="Can view audit entry"
    )
    readers = Group.objects.create(name="Support")
    readers.permissions.add(view)
    reader = make_user(username="support", is_staff=True)
    reader.groups.add(readers)

    moved.forwards(apps, schema_editor=None)

    reader = type(reader).objects.get(pk=reader.pk)  # no cached permissions
    assert reader.has_perm("audit.view_auditentry")
    assert not reader.has_perm("connections.view_auditentry")
    assert ContentType.objects.get_for_model(AuditEntry).pk == old.pk


def test_when_both_content_types_exist_the_grants_move_to_the_new_one(db, content_types):
    # A process made audit's content type (and its ungranted permissions) before the
    # migration ran: the old grants must not be left on the row that goes.
    old = ContentType.objects.create(app_label="connections", model="auditentry")
    view = Permission.objects.create(
        content_type=old, codename="view_auditentry", name="Can view audit entry"
    )
    readers = Group.objects.create(name="Support")
    readers.permissions.add(view)
    direct = make_user(username="auditor", is_staff=True)
    direct.user_permissions.add(view)
    reader = make_user(username="support", is_staff=True)
    reader.groups.add(readers)

    moved.forwards(apps, schema_editor=None)

    for user in (reader, direct):
        user = type(user).objects.get(pk=user.pk)  # no cached permissions
        assert user.has_perm("audit.view_auditentry")
    assert not ContentType.objects.filter(app_label="connections", model="auditentry").exists()


def test_staff_with_the_view_permission_read_the_log_from_the_customer_page(client, customer):
    reader = make_user(username="support", is_staff=True)
    reader.user_permissions.add(
        Permission.objects.get(content_type__app_label="audit", codename="view_auditentry"),
        Permission.objects.get(content_type__app_label="customers", codename="view_customer"),
    )
    client.force_login(reader)

    page = client.get(f"/admin/customers/customer/{customer.pk}/change/").content.decode()

    assert f'href="/admin/audit/auditentry/?customer__id__exact={customer.pk}"' in page
    assert client.get("/admin/audit/auditentry/").status_code == 200
