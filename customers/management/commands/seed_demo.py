from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from customers.models import Customer, Membership

STAFF = ("staff", "dockside-staff")
CUSTOMERS = [
    # (name, slug, contact email, portal username)
    ("Acme Outdoor", "acme-outdoor", "ops@acme-outdoor.example", "acme"),
    ("Bright Botanicals", "bright-botanicals", "it@brightbotanicals.example", "bright"),
]
PORTAL_PASSWORD = "dockside-demo"


class Command(BaseCommand):
    help = "Create the demo's staff user, customers and portal users. Safe to run again."

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        staff, created = User.objects.get_or_create(
            username=STAFF[0],
            defaults={"is_staff": True, "is_superuser": True, "email": "staff@dockside.local"},
        )
        if created:
            staff.set_password(STAFF[1])
            staff.save()
        for name, slug, email, username in CUSTOMERS:
            customer, _ = Customer.objects.get_or_create(
                slug=slug, defaults={"name": name, "contact_email": email}
            )
            user, created = User.objects.get_or_create(
                username=username, defaults={"email": email, "first_name": name.split()[0]}
            )
            if created:
                user.set_password(PORTAL_PASSWORD)
                user.save()
            # An owner, so the demo login connects, reconnects and disconnects (a member
            # only reads), also in a database seeded before roles were enforced.
            Membership.objects.update_or_create(
                user=user, customer=customer, defaults={"role": Membership.Role.OWNER}
            )
        self.stdout.write(self.style.SUCCESS("Demo data is in place."))
