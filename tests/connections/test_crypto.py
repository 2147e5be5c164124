import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection as db_connection

from connections.crypto import DecryptionError, mask
from connections.models import Connection
from tests.builders import make_connection

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def _raw_token(conn: Connection) -> str:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM connections_connection WHERE id = %s", [conn.pk])
        return cursor.fetchone()[0]


@pytest.fixture
def old_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]


def test_round_trip_and_column_holds_no_plaintext(customer, old_key):
    conn = make_connection(customer=customer, access_token="trackstar_eyPLAINTEXT")

    assert Connection.objects.get(pk=conn.pk).access_token == "trackstar_eyPLAINTEXT"
    raw = _raw_token(conn)
    assert "PLAINTEXT" not in raw
    assert Fernet(OLD_KEY.encode()).decrypt(raw.encode()) == b"trackstar_eyPLAINTEXT"


def test_wrong_key_raises_instead_of_returning_ciphertext(customer, settings, old_key):
    conn = make_connection(customer=customer, access_token="trackstar_secret")
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]

    with pytest.raises(DecryptionError):
        Connection.objects.get(pk=conn.pk)


def test_rotation_reencrypts_under_the_first_key(customer, settings, old_key):
    conn = make_connection(customer=customer, access_token="trackstar_rotate_me")
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    call_command("rotate_encryption_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115

    raw = _raw_token(conn)
    assert Fernet(NEW_KEY.encode()).decrypt(raw.encode()) == b"trackstar_rotate_me"
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]  # the old key can now be dropped
    assert Connection.objects.get(pk=conn.pk).access_token == "trackstar_rotate_me"


def test_mask_never_shows_the_whole_secret():
    assert mask("trackstar_eyABCDEFGHIJKLMNOP") == "trac••••••••MNOP"
    assert "short" not in mask("short")
    assert mask("") == ""


def test_rotation_never_undoes_a_change_made_while_it_runs(
    customer, settings, old_key, monkeypatch
):
    """A disconnect (token erased) that lands between rotation's read and its write must
    stay: rotation writes only where the old ciphertext is still there."""
    from connections import crypto

    conn = make_connection(customer=customer, access_token="trackstar_still_mine")
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    real_encrypt = crypto.encrypt

    def encrypt_while_disconnected(plaintext):
        Connection.objects.filter(pk=conn.pk).update(access_token="")  # the concurrent change
        return real_encrypt(plaintext)

    monkeypatch.setattr(crypto, "encrypt", encrypt_while_disconnected)
    from connections.management.commands import rotate_encryption_keys

    monkeypatch.setattr(
        rotate_encryption_keys, "encrypt", encrypt_while_disconnected, raising=False
    )

    call_command("rotate_encryption_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115

    assert _raw_token(conn) == ""
