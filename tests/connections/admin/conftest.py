import pytest
from django.contrib.auth.models import Permission

from tests.builders import make_user


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


def staff_with(*codenames: str, username: str = "limited-staff"):
    """A staff account with only these connections permissions (not a superuser)."""
    user = make_user(username=username, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="connections", codename__in=codenames)
    )
    return user


@pytest.fixture
def viewer(client, db):
    client.force_login(staff_with("view_connection", "view_magiclink", username="viewer"))
    return client
