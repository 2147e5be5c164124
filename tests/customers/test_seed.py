from django.core.management import call_command

from customers.models import Membership


def test_the_demo_portal_users_are_owners_even_after_a_reseed(db):
    """The demo's portal logins connect and disconnect, which only owners may."""
    call_command("seed_demo")
    Membership.objects.update(role=Membership.Role.MEMBER)  # a database seeded long ago

    call_command("seed_demo")

    roles = dict(Membership.objects.values_list("user__username", "role"))
    assert roles == {"acme": "owner", "bright": "owner"}
