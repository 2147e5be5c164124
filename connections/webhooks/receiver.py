"""POST /webhooks/trackstar/: verify the Svix signature on the raw body, store the event
once, answer fast. A task applies it (webhook_service)."""

import json
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from svix.webhooks import Webhook, WebhookVerificationError

from connections.json_requests import error
from connections.webhooks import services as webhook_service

logger = logging.getLogger(__name__)


@csrf_exempt  # Svix signs the request; there is no browser session to protect
@require_POST
def trackstar_webhook(request: HttpRequest) -> HttpResponse:
    try:
        body = request.body
    except RequestDataTooBig:
        return error("The request body is too large.", status=413)
    headers = {
        "svix-id": request.headers.get("svix-id", ""),
        "svix-timestamp": request.headers.get("svix-timestamp", ""),
        "svix-signature": request.headers.get("svix-signature", ""),
    }
    if not all(headers.values()):
        return error("Missing Svix signature headers.", status=400)
    try:
        # Checks the HMAC over "id.timestamp.body" and that the timestamp is within 5 min.
        Webhook(settings.TRACKSTAR_WEBHOOK_SECRET).verify(body, headers)
    except (WebhookVerificationError, ValueError, TypeError, RecursionError) as e:
        # A malformed header is a client error too, never a 500.
        logger.warning("Webhook signature refused: %s", e)
        return error("Invalid webhook signature.", status=400)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return error("The body is not valid JSON.", status=400)
    if not isinstance(payload, dict):
        return error("The body must be a JSON object.", status=400)
    # Signed by Trackstar, so stored whatever its text holds: a NUL (PostgreSQL's jsonb has
    # none) or a lone surrogate (not UTF-8) would otherwise make every retry a 500.
    try:
        payload = _storable(payload)
    except RecursionError:
        return error("The body is nested too deeply.", status=400)
    svix_id = _storable(headers["svix-id"][:128])
    event, created = webhook_service.webhook_receive(svix_id=svix_id, payload=payload)
    return JsonResponse({"received": True, "duplicate": not created})


def _storable(value):
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value
