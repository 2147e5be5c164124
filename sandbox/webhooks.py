"""Svix-style webhook delivery from a background thread, retried with the same svix-id.

Signature per https://docs.svix.com/receiving/verifying-payloads/how-manual (API.md §8).
"""

import base64
import hashlib
import heapq
import hmac
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable

import orjson
import requests

log = logging.getLogger("sandbox.webhooks")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookSender:
    def __init__(self, get_secret: Callable[[], str], get_retry_delays: Callable[[], list]):
        self._get_secret = get_secret
        self._get_retry_delays = get_retry_delays
        self._queue: list = []  # heap of (due, seq, job)
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._session = requests.Session()
        self._generation = 0
        self.log: list[dict] = []  # recent deliveries, for /_sandbox/webhooks
        threading.Thread(target=self._run, name="webhooks", daemon=True).start()

    def send(self, url: str | None, payload: dict, delay: float = 0.0) -> str | None:
        if not url:
            return None
        msg_id = "msg_" + secrets.token_hex(12)
        job = {"id": msg_id, "url": url, "body": orjson.dumps(payload), "attempt": 0}
        job["generation"] = self._generation
        with self._cond:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), job))
            self._cond.notify()
        return msg_id

    def clear(self) -> None:
        # /_sandbox/reset: drop pending deliveries, including retries in flight.
        with self._cond:
            self._queue.clear()
            self._generation += 1
            self.log.clear()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue or self._queue[0][0] > time.monotonic():
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(timeout)
                _, _, job = heapq.heappop(self._queue)
                if job["generation"] != self._generation:
                    continue
            self._deliver(job)

    def _deliver(self, job: dict) -> None:
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "svix-id": job["id"],
            "svix-timestamp": str(timestamp),
            "svix-signature": sign(self._get_secret(), job["id"], timestamp, job["body"]),
        }
        status: int | str
        try:
            response = self._session.post(job["url"], data=job["body"], headers=headers, timeout=5)
            status = response.status_code
            ok = 200 <= status < 300
        except requests.RequestException as e:
            status, ok = type(e).__name__, False
        job["attempt"] += 1
        self.log.append({"id": job["id"], "attempt": job["attempt"], "status": status})
        del self.log[:-200]
        delays = self._get_retry_delays()
        if not ok and job["attempt"] <= len(delays):
            with self._cond:
                if job["generation"] == self._generation:
                    due = time.monotonic() + delays[job["attempt"] - 1]
                    heapq.heappush(self._queue, (due, next(self._seq), job))
                    self._cond.notify()
        elif not ok:
            log.warning("webhook %s to %s failed after %s attempts", job["id"], job["url"], status)
