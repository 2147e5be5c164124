"""Helpers for the JSON endpoints: parse a body strictly, answer errors as JSON."""

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse, RawPostDataException

MAX_JSON_BODY = 16 * 1024  # an auth code and a slug; anything bigger is not ours


class BadRequest(Exception):
    def __init__(self, message: str, *, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def error(message: str, *, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def json_body(request: HttpRequest, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object, whatever the Content-Type (the seed's frontend sends
    text/plain). Raises BadRequest with a message for the user."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > MAX_JSON_BODY:
        raise BadRequest("The request body is too large.", status=413)
    try:
        raw = request.body
    except RequestDataTooBig as e:
        raise BadRequest("The request body is too large.", status=413) from e
    except RawPostDataException as e:
        # A multipart body: the CSRF check has already read it as a form upload.
        raise BadRequest("The request body must be JSON, not a form upload.", status=415) from e
    if len(raw) > MAX_JSON_BODY:
        raise BadRequest("The request body is too large.", status=413)
    if not raw.strip():
        if required:
            raise BadRequest("The request body must be a JSON object.")
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # 5,000 nested arrays…
        raise BadRequest("The request body is not valid JSON.") from e
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return data


def string_field(
    data: dict[str, Any], name: str, *, required: bool = True, max_length: int = 512
) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"'{name}' is required.")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string.")
    if len(value) > max_length:
        raise BadRequest(f"'{name}' is too long.")
    if "\x00" in value or not _encodable(value):
        # PostgreSQL stores no NUL in text, and a lone surrogate is not UTF-8 at all.
        raise BadRequest(f"'{name}' contains characters that are not allowed.")
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def required_string(data: dict[str, Any], name: str, *, max_length: int = 512) -> str:
    value = string_field(data, name, required=True, max_length=max_length)
    assert value is not None  # string_field raised otherwise
    return value


def is_id(value: object) -> bool:
    """A database id as a request may send one: digits only, and short enough for a bigint."""
    text = str(value) if isinstance(value, (int, str)) else ""
    return text.isascii() and text.isdigit() and len(text) <= 18
