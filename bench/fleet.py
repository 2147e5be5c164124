"""`make bench` sections for a fleet of workers (issue 12): each prints a ratio in one run.

    dispatcher   statements and milliseconds per sync_dispatch_due tick, 10,000 connections
                 against 100 (no worker: the tick itself)
    recovery     a worker SIGKILLed mid-sync: seconds until the other worker resumes it
    interactive  portal exchanges over HTTP (gunicorn: log in, get-link-token, Link,
                 store-token -> the status URL says connected) while big initial syncs
                 run: separate queues against everything on one queue
    scaling      4 connections' initial syncs with 1 worker process and with 2

They run real Celery workers (tests/plugins/worker.py) on Redis (REDIS_URL), each section
on queues of its own (a CELERY_QUEUE_PREFIX), against the bench's database and sandbox.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.__main__ import API_KEY, _env_int, make_connection, sandbox_connection


class _TmpDirs:
    """What WorkerFactory wants of pytest's tmp_path_factory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dockside-bench-"))

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=name, dir=self.root))


def _workers(base_url: str, dirs: _TmpDirs) -> Any:
    from tests.plugins.worker import WorkerFactory

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "TRACKSTAR_BASE_URL": base_url,
        "TRACKSTAR_API_KEY": API_KEY,
        "DOCKSIDE_VAR_DIR": str(dirs.mktemp("var")),
        "PYTHONUNBUFFERED": "1",
    }
    factory = WorkerFactory(env, dirs)
    factory.route_here()
    return factory


def _wait(condition, *, timeout: float, what: str, workers=()) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    logs = "\n".join(w.log() for w in workers)
    raise SystemExit(f"Timed out after {timeout:.0f} s waiting for {what}\n{logs}")


def _purge(factory) -> None:
    """Drop what a section left on its queues (the dispatcher's messages, for one)."""
    from config.celery_app import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in ("interactive", "webhooks", "sync", "default"):
            channel.queue_purge(factory.queue(name))


# --- dispatcher -------------------------------------------------------------------------


def _dispatcher_fleet(customer, n: int, tag: str) -> list[int]:
    """n active connections, every resource synced once and due on its slot of the
    interval, as after a day of running: each tick finds about 1/15 of the fast ones due."""
    from django.utils import timezone

    from connections.models import Connection, ResourceSync
    from connections.sync.schedule import slot_phase, sync_interval_seconds, sync_resources_for

    connections = Connection.objects.bulk_create(
        [
            Connection(
                customer=customer,
                trackstar_connection_id=f"disp-{tag}-{i}",
                integration_name="sandbox",
                access_token=f"tok-{tag}-{i}",
                status=Connection.Status.ACTIVE,
                source=Connection.Source.STAFF,
            )
            for i in range(n)
        ],
        batch_size=1000,
    )
    now = timezone.now()
    rows = []
    for connection in connections:
        for resource in sync_resources_for(connection):
            interval = sync_interval_seconds(resource)
            phase = slot_phase(connection.pk, resource, interval)
            rows.append(
                ResourceSync(
                    connection=connection,
                    resource=resource,
                    history_ready=True,
                    interval_seconds=interval,
                    last_success_at=now - timedelta(seconds=interval),
                    high_water_mark=now - timedelta(seconds=interval),
                    next_sync_at=now + timedelta(seconds=phase),
                )
            )
    ResourceSync.objects.bulk_create(rows, batch_size=2000)
    return [c.pk for c in connections]


def _ticks(ids: list[int], ticks: int, limit: int | None) -> dict:
    """`ticks` minutes of the dispatcher over this fleet. Between ticks the runs take their
    requests and move their rows to the next slot, as workers keeping up would."""
    from django.db import connection as db_connection
    from django.db.models import DateTimeField, ExpressionWrapper, F, Value
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from connections.models import Connection, ResourceSync
    from connections.sync import schedule as sync

    Connection.objects.exclude(pk__in=ids).update(status=Connection.Status.DISCONNECTED)
    Connection.objects.filter(pk__in=ids).update(status=Connection.Status.ACTIVE)
    with db_connection.cursor() as cursor:
        cursor.execute("ANALYZE connections_resourcesync; ANALYZE connections_connection")
    publishing = [0.0]
    enqueue = sync.sync_send

    def timed_enqueue(*args, **kwargs):
        began = time.perf_counter()
        try:
            return enqueue(*args, **kwargs)
        finally:
            publishing[0] += time.perf_counter() - began

    sync.sync_send = timed_enqueue  # type: ignore[assignment]
    start = timezone.now()
    statements, millis, publish, dispatched, due = [], [], [], [], []
    mine = ResourceSync.objects.filter(connection_id__in=ids)
    try:
        for k in range(1, ticks + 1):
            now = start + timedelta(seconds=60 * k)
            due.append(mine.filter(next_sync_at__lte=now, requested_at__isnull=True).count())
            publishing[0] = 0.0
            with CaptureQueriesContext(db_connection) as captured:
                began = time.perf_counter()
                dispatched.append(sync.sync_dispatch_due(now=now, limit=limit))
                millis.append((time.perf_counter() - began) * 1000)
            statements.append(len(captured.captured_queries))
            publish.append(publishing[0] * 1000)
            mine.filter(requested_at__isnull=False).update(
                requested_at=None,
                requested_kind="",
                request_sends=0,
                request_resend_at=None,
                next_sync_at=ExpressionWrapper(
                    Value(now, output_field=DateTimeField())
                    + F("interval_seconds") * Value(timedelta(seconds=1)),
                    output_field=DateTimeField(),
                ),
            )
    finally:
        sync.sync_send = enqueue  # type: ignore[assignment]
    Connection.objects.filter(pk__in=ids).update(status=Connection.Status.DISCONNECTED)
    return {
        "statements": max(statements),
        "ms": statistics.median(millis),
        "publish_ms": statistics.median(publish),
        "due": statistics.median(due),
        "dispatched": statistics.median(dispatched),
        "backlog": due[-1] - dispatched[-1],
    }


def section_dispatcher(base_url: str) -> None:
    from django.conf import settings

    from customers.models import Customer

    big = _env_int("BENCH_DISPATCHER_CONNECTIONS", 10_000)
    sizes = (100, big)
    ticks = 5
    dirs = _TmpDirs()
    factory = _workers(base_url, dirs)  # its queues take the messages; nobody reads them
    customer, _ = Customer.objects.get_or_create(
        slug="bench-dispatch", defaults={"name": "Bench", "contact_email": "b@example.com"}
    )
    print(f"==> dispatcher: {ticks} ticks a minute apart, each resource due on its slot")
    results = {}
    batch = settings.SYNC_DISPATCH_BATCH
    try:
        # As shipped (SYNC_DISPATCH_BATCH), then with a batch that holds a minute's due
        # rows; a fleet of its own each, so that no backlog carries over.
        for n, limit in ((sizes[0], batch), (big, batch), (big, 5000)):
            began = time.perf_counter()
            fleet = _dispatcher_fleet(customer, n, f"{n}-{limit}")
            print(f"    {n:,} connections made in {time.perf_counter() - began:.1f} s", flush=True)
            results[(n, limit)] = _ticks(fleet, ticks, limit)
            _purge(factory)
    finally:
        factory.close()
    print(
        "\n| connections | batch | due per tick | enqueued per tick | left behind after "
        f"{ticks} ticks | statements per tick | ms per tick | of which publishing |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (n, limit), r in results.items():
        print(
            f"| {n:,} | {limit:,} | {r['due']:.0f} | {r['dispatched']:.0f} | {r['backlog']:,} | "
            f"{r['statements']} | {r['ms']:.0f} | {r['publish_ms']:.0f} |"
        )
    small, large = results[(sizes[0], batch)], results[(big, 5000)]
    print(
        f"\nRatio {big:,} / {sizes[0]:,} connections: statements per tick "
        f"{large['statements'] / small['statements']:.2f}; SQL ms per enqueued sync "
        f"{(large['ms'] - large['publish_ms']) / max(large['dispatched'], 1):.2f} against "
        f"{(small['ms'] - small['publish_ms']) / max(small['dispatched'], 1):.2f}",
        flush=True,
    )


# --- recovery -----------------------------------------------------------------------------


def section_recovery(base_url: str) -> None:
    orders = 30_000
    from connections.models import SyncRun
    from connections.sync.tasks import sync_resource as sync_resource_task

    print("==> recovery: a worker SIGKILLed mid-sync, the other worker (with beat) resumes")
    dirs = _TmpDirs()
    factory = _workers(base_url, dirs)
    # Settings as shipped (lease, resume interval, visibility timeout); only the token
    # bucket is slowed to 4 pages/s so that the kill lands mid-sync.
    env = {"TRACKSTAR_GET_RATE": "4", "TRACKSTAR_GET_BURST": "1"}
    try:
        first = factory(concurrency=1, **env)
        connection = make_connection(sandbox_connection(base_url, orders=orders))
        sync_resource_task.apply_async(
            (connection.pk, "orders", "initial", False), queue=factory.queue("sync")
        )
        run = _wait(
            lambda: SyncRun.objects.filter(connection=connection, pages__gte=2).first(),
            timeout=60,
            what="the sync's first pages",
            workers=[first],
        )
        second = factory(concurrency=1, beat=True, **env)  # already running, as in a fleet
        first.kill_group()
        killed = time.monotonic()
        run.refresh_from_db()
        at_kill = run.pages
        _wait(
            lambda: SyncRun.objects.filter(pk=run.pk, pages__gt=at_kill).exists(),
            timeout=300,
            what="another worker to resume the run",
            workers=[second],
        )
        resumed = time.monotonic() - killed
        _wait(
            lambda: SyncRun.objects.filter(pk=run.pk, status="succeeded").exists(),
            timeout=120,
            what="the run to finish",
            workers=[second],
        )
        run.refresh_from_db()
    finally:
        factory.close()
    print(f"    killed at page {at_kill}; resumed after {resumed:.1f} s; finished with")
    print(f"    {run.records:,} records in {run.pages} pages ({run.attempts} attempts)")
    print(f"\nRecovery: {resumed:.1f} s (target < 45 s; ratio to target {resumed / 45:.2f})")


# --- interactive ----------------------------------------------------------------------------


class _Web:
    """The portal as customers meet it: gunicorn (2 processes, as the README's production
    section runs it) on the bench's database, publishing to the section's queues."""

    def __init__(self, factory) -> None:
        import socket
        import subprocess
        import sys

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {**factory.worker_env, "CELERY_QUEUE_PREFIX": factory.prefix}
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.proc = subprocess.Popen(  # noqa: S603 - our own venv's gunicorn
            [str(gunicorn), "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "--threads", "4"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import requests

        def up() -> bool:
            try:
                return requests.get(self.url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        _wait(up, timeout=60, what="gunicorn")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


def _portal_user(n: int):
    """A customer of its own with an owner who logs in (one session per arriving customer,
    so no per-user limit is shared)."""
    from django.contrib.auth import get_user_model

    from customers.models import Customer, Membership

    tag = f"{time.monotonic_ns()}-{n}"
    customer = Customer.objects.create(
        slug=f"bench-portal-{tag}", name=f"P {n}", contact_email="p@example.com"
    )
    user = get_user_model().objects.create_user(f"bench-{tag}", password="bench-password-1")
    Membership.objects.create(customer=customer, user=user, role=Membership.Role.OWNER)
    return user.username, "bench-password-1"


def _exchange_latency(base_url: str, web_url: str, username: str, password: str) -> float:
    """One customer's connect over HTTP, as connect.js does it: log in, get-link-token,
    Link's authorize (the sandbox), then store-token timed until the exchange status says
    succeeded with an active connection."""
    import requests

    session = requests.Session()
    session.get(web_url + "/portal/login/", timeout=30)
    login = session.post(
        web_url + "/portal/login/",
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": web_url + "/portal/login/"},
        timeout=30,
    )
    assert login.url.rstrip("/").endswith("/portal"), login.url
    headers = {"X-CSRFToken": str(session.cookies["csrftoken"]), "Referer": web_url + "/portal/"}
    link_token = session.post(
        web_url + "/portal/get-link-token", json={}, headers=headers, timeout=30
    ).json()["link_token"]
    auth_code = requests.post(
        base_url + "/_sandbox/link/authorize",
        json={"link_token": link_token, "integration_name": "sandbox", "credentials": {}},
        timeout=10,
    ).json()["auth_code"]
    began = time.monotonic()
    answer = session.post(
        web_url + "/portal/store-token",
        json={"auth_code": auth_code, "integration_name": "sandbox", "link_token": link_token},
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    status_url = answer.json()["status_url"]

    def ended() -> dict | None:
        body = session.get(web_url + status_url, timeout=30).json()
        if body["status"] == "failed":
            return body
        active = (body["connection"] or {}).get("status") == "active"
        return body if body["status"] == "succeeded" and active else None

    body = _wait(ended, timeout=900, what="an exchange")
    if body["status"] == "failed":
        # Waited out the auth code's life (10 minutes) behind the syncs: the customer's
        # connect failed ("auth_code has expired"). Counted as never connected.
        return math.inf
    return time.monotonic() - began


def _interactive_run(base_url: str, *, separate: bool, syncs: int, orders: int, n: int) -> dict:
    from connections.models import SyncRun
    from connections.sync.tasks import sync_resource as sync_resource_task

    dirs = _TmpDirs()
    factory = _workers(base_url, dirs)
    web = _Web(factory)
    try:
        if separate:
            workers = [
                factory(queues=["sync", "default"], concurrency=2),
                factory(queues=["interactive", "webhooks"], concurrency=1),
            ]
        else:
            workers = [factory(concurrency=2)]
        big = [make_connection(sandbox_connection(base_url, orders=orders)) for _ in range(syncs)]
        for connection in big:
            sync_resource_task.apply_async(
                (connection.pk, "orders", "initial", False), queue=factory.queue("sync")
            )
        _wait(
            lambda: SyncRun.objects.filter(connection__in=big, pages__gte=1).count() == syncs,
            timeout=120,
            what="the big syncs to start",
            workers=workers,
        )
        logins = [_portal_user(i) for i in range(n)]
        began = time.monotonic()

        def arrive(login: tuple[str, str]) -> tuple[float, bool]:
            from django.db import connection as db_connection

            try:
                latency = _exchange_latency(base_url, web.url, *login)
                running = SyncRun.objects.filter(connection__in=big, status="running").exists()
                return latency, running
            finally:
                db_connection.close()

        # A customer a second, each on a page of their own, whether or not the last is done.
        with ThreadPoolExecutor(max_workers=n) as pool:
            futures = []
            for login in logins:
                futures.append(pool.submit(arrive, login))
                time.sleep(1)
            outcomes = [future.result() for future in futures]
        latencies = [latency for latency, _ in outcomes]
        during = sum(running for _, running in outcomes)
        syncing = _wait(
            lambda: SyncRun.objects.filter(connection__in=big, status="succeeded").count() == syncs,
            timeout=900,
            what="the big syncs to finish",
            workers=workers,
        )
        assert syncing
        total = time.monotonic() - began
    finally:
        web.close()
        factory.close()
    latencies.sort()
    return {
        "p50": statistics.median(latencies),
        "p95": latencies[max(0, round(0.95 * len(latencies)) - 1)],
        "max": latencies[-1],
        "failed": sum(math.isinf(latency) for latency in latencies),
        "during": during,
        "total": total,
    }


def _seconds(value: float) -> str:
    return "failed" if math.isinf(value) else f"{value:.2f}"


def section_interactive(base_url: str) -> None:
    syncs = _env_int("BENCH_INTERACTIVE_SYNCS", 2)
    orders = _env_int("BENCH_INTERACTIVE_ORDERS", 1_000_000)
    n = _env_int("BENCH_INTERACTIVE_EXCHANGES", 20)
    print(
        f"==> interactive: {n} portal exchanges, one a second, while {syncs} initial "
        f"syncs of {orders:,} orders run"
    )
    results = {}
    for separate in (True, False):
        label = "separate queues" if separate else "one queue"
        results[label] = r = _interactive_run(
            base_url, separate=separate, syncs=syncs, orders=orders, n=n
        )
        print(
            f"    {label}: p50 {_seconds(r['p50'])} s, p95 {_seconds(r['p95'])} s, "
            f"{r['failed']} of {n} failed ({r['during']} of {n} ended during the syncs)",
            flush=True,
        )
    workers = {
        "separate queues": "sync+default ×2, interactive+webhooks ×1",
        "one queue": "all queues ×2",
    }
    print(
        "\n| queues | worker slots | p50 s | p95 s | max s | failed "
        "(auth code expired) | ended during the syncs |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        print(
            f"| {label} | {workers[label]} | {_seconds(r['p50'])} | {_seconds(r['p95'])} | "
            f"{_seconds(r['max'])} | {r['failed']} of {n} | {r['during']} of {n} |"
        )
    sep, one = results["separate queues"], results["one queue"]
    ratio = one["p95"] / sep["p95"]
    print(
        f"\np95 one queue / separate: {'infinite' if math.isinf(ratio) else f'{ratio:.0f}x'}"
        f" (target p95 < 5 s with separate queues: {'met' if sep['p95'] < 5 else 'not met'})"
    )


# --- scaling ------------------------------------------------------------------------------


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _scaling_run(
    base_url: str, *, processes: int, connections: int, orders: int
) -> tuple[float, float]:
    from connections.models import SyncRun
    from connections.sync.tasks import sync_resource as sync_resource_task

    dirs = _TmpDirs()
    factory = _workers(base_url, dirs)
    try:
        worker = factory(queues=["sync", "default"], concurrency=processes)
        fleet = [
            make_connection(sandbox_connection(base_url, orders=orders)) for _ in range(connections)
        ]
        began = time.monotonic()
        busy_before, total_before = _cpu_ticks()
        for connection in fleet:
            sync_resource_task.apply_async(
                (connection.pk, "orders", "initial", False), queue=factory.queue("sync")
            )
        _wait(
            lambda: (
                SyncRun.objects.filter(connection__in=fleet, status="succeeded").count()
                == connections
            ),
            timeout=1800,
            what="the syncs",
            workers=[worker],
        )
        elapsed = time.monotonic() - began
        busy_after, total_after = _cpu_ticks()
        records = sum(
            SyncRun.objects.filter(connection__in=fleet).values_list("records", flat=True)
        )
        assert records == connections * orders, records
    finally:
        factory.close()
    return records / elapsed, (busy_after - busy_before) / (total_after - total_before)


def section_scaling(base_url: str) -> None:
    connections = _env_int("BENCH_SCALING_CONNECTIONS", 4)
    orders = _env_int("BENCH_SCALING_ORDERS", 100_000)
    print(
        f"==> scaling: {connections} connections × {orders:,} orders, initial syncs, "
        "1 worker process then 2 (limits lifted)"
    )
    rates, busy = {}, {}
    for processes in (1, 2):
        load = os.getloadavg()[0]
        rates[processes], busy[processes] = _scaling_run(
            base_url, processes=processes, connections=connections, orders=orders
        )
        print(
            f"    {processes} process(es): {rates[processes]:,.0f} records/s (load {load:.1f} "
            f"before; all CPUs {busy[processes]:.0%} busy during)",
            flush=True,
        )
    print("\n| worker processes | records/s | machine's CPUs busy |")
    print("|---:|---:|---:|")
    for processes, r in rates.items():
        print(f"| {processes} | {r:,.0f} | {busy[processes]:.0%} |")
    print(f"\nRatio 2 / 1: {rates[2] / rates[1]:.2f} (target ≥ 1.6)")


SECTIONS = {
    "dispatcher": section_dispatcher,
    "recovery": section_recovery,
    "interactive": section_interactive,
    "scaling": section_scaling,
}
