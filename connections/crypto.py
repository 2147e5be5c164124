"""Secrets at rest: a model field encrypted with MultiFernet (DESIGN.md §9).

FIELD_ENCRYPTION_KEYS is a list: the first key encrypts, every key decrypts, so keys rotate
without downtime (add a new key in front, run `rotate_encryption_keys`, drop the old one).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@lru_cache(maxsize=1)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty: secrets cannot be stored.")
    try:
        return MultiFernet([Fernet(key.strip().encode()) for key in keys])
    except ValueError as e:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must hold url-safe base64 Fernet keys "
            "(generate one with `python manage.py generate_encryption_key`)."
        ) from e


def fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.FIELD_ENCRYPTION_KEYS))


def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "FIELD_ENCRYPTION_KEYS":
        _fernet_for.cache_clear()


setting_changed.connect(_clear_cache)


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as e:
        # Never fall back to returning the stored text: it would pass ciphertext off as
        # the secret (and send it to Trackstar as a token).
        raise DecryptionError(
            "A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS: "
            "was a key removed before rotate_encryption_keys ran?"
        ) from e


def mask(secret: str, *, visible: int = 4) -> str:
    if not secret:
        return ""
    if len(secret) <= visible * 3:
        return "•" * 8
    return f"{secret[:visible]}••••••••{secret[-visible:]}"


class EncryptedTextField(models.TextField):
    """Stores Fernet ciphertext; Python code sees the plaintext.

    Ciphertext is randomised, so the column cannot be filtered on: keep a hash beside it
    when a lookup is needed (see AuthCodeExchange.auth_code_hash)."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """Every concrete model with encrypted fields, for key rotation."""
    from django.apps import apps

    found = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names:
            found.append((model, names))
    return found
